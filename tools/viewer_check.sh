#!/usr/bin/env bash
# Fails when the viewer's committed files are not what its sources and lockfile build:
# the TypeScript generated from proto/ (viewer/src/gen) and the built page
# (orchestrator/api/web/static). Installs from viewer/package-lock.json with `npm ci`,
# builds into a temporary folder and compares byte for byte.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/viewer"
npm ci --no-audit --no-fund --loglevel=error
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
PATH="$root/.venv/bin:$PATH" buf generate -o "$work/generated"
diff -r "$work/generated/src/gen" src/gen || {
  echo "viewer/src/gen is stale: run 'make viewer'" >&2
  exit 1
}
npx tsc --noEmit
npx vite build --logLevel error --outDir "$work/static" --emptyOutDir
diff -r "$work/static" "$root/orchestrator/api/web/static" || {
  echo "orchestrator/api/web/static differs from a build of viewer/: run 'make viewer'" >&2
  exit 1
}
echo "viewer: generated code and built page match the sources and lockfile"
