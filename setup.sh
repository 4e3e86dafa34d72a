#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine: graphviz's `dot` (Debian package), a
# virtual environment in .venv, and this package (with the test tools when called with --test).
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

# debian_install PACKAGE PURPOSE: install a Debian package as root (apt-get update at most once per run);
# elsewhere, or when it fails, say what is missing and what it is for, and go on.
apt_updated=""
debian_install() {
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing $1 (apt-get) $2" >&2
    { [ -n "$apt_updated" ] || { apt-get update -qq && apt_updated=1; }; } \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null \
      || echo "setup: could not install $1; it is needed $2" >&2
  else
    echo "setup: $1 is missing; install it (e.g. 'sudo apt-get install $1'); it is needed $2" >&2
  fi
}

if ! command -v dot >/dev/null 2>&1; then
  debian_install graphviz "for images (without it pictures are written as .dot only)"
fi

# The tests of the interactive HTML view drive Debian's Chromium headless (through Playwright, which is
# pointed at /usr/bin/chromium: `playwright install` is never run).
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  debian_install chromium "for the browser tests (tests/test_viz_html.py)"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extra=""
if [ "${1:-}" = "--test" ]; then extra="[test]"; fi
# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel from this machine's local wheel folder.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra}" 2>&1 \
  | grep -v -e "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import builder, torch, onnx, onnxruntime" \
  || { echo "setup: installation failed" >&2; exit 1; }
