#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine: graphviz's `dot` (Debian package), a
# virtual environment in .venv, and this package (with the test tools when called with --test).
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v dot >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing graphviz (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
      || echo "setup: could not install graphviz; pictures will be written as .dot only" >&2
  else
    echo "setup: graphviz's 'dot' is missing; install it (e.g. 'sudo apt-get install graphviz') for images" >&2
  fi
fi

# The tests of the interactive HTML view drive Debian's Chromium headless (through Playwright, which is
# pointed at /usr/bin/chromium: `playwright install` is never run).
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium for the browser tests (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; tests/test_viz_html.py will fail" >&2
  else
    echo "setup: /usr/bin/chromium is missing; install it (e.g. 'sudo apt-get install chromium') for the browser tests" >&2
  fi
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
