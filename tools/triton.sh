#!/usr/bin/env bash
# Creates .triton-venv: the tritonserver binary that the nvidia-pytriton wheel ships, and the
# Python environment its python backend runs models in (tools/triton-requirements.txt). Kept
# apart from .venv because pytriton's Python side caps numpy<2. Does nothing when the
# environment is already there for the same requirements.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TRITON_VENV:-.triton-venv}
PYTHON=${PYTHON:-python3}
REQUIREMENTS=tools/triton-requirements.txt
STAMP="$VENV/.installed"
if [ -f "$STAMP" ] && cmp -s "$REQUIREMENTS" "$STAMP"; then
  exit 0
fi
echo "installing Triton Inference Server (nvidia-pytriton) in $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -r "$REQUIREMENTS"
server="$("$VENV/bin/python" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent / "tritonserver/bin/tritonserver")')"
test -x "$server" || { echo "the nvidia-pytriton wheel has no tritonserver at $server" >&2; exit 1; }
cp "$REQUIREMENTS" "$STAMP"
