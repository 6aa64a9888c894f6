#!/usr/bin/env bash
# Installs Debian's chromium for the viewer's browser tests when it is missing (as root, or
# through sudo). Playwright drives this browser; its own browser download cannot work here.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
run() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
echo "installing Debian's chromium for the browser tests"
run apt-get update -qq
DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium
