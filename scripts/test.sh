#!/usr/bin/env bash
# Install trtprof with its test dependencies and run the CPU test suite (tests marked gpu are skipped
# without CUDA + torch_tensorrt). torch is pinned to 2.13.0 first: that version is the CPU build here,
# and installing it before the package keeps pip from pulling the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING" || true
python3 -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING" || true
python3 -c "import torch, trtprof; print('torch', torch.__version__, '| trtprof', trtprof.__version__)"
# Headless Chromium for tests/test_report_browser.py (required when CI=true, skipped elsewhere without it):
# Debian's package, installed only when missing and only where we can (root with apt-get).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium for the report browser test" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "could not install chromium: the browser test will fail in CI, skip elsewhere" >&2
fi
set +e
# pytest-xdist: one worker per core (most of the suite waits on subprocesses that import torch)
python3 -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-auto}" "$@"
rc=$?
set -e
# the browser checks' screenshots, one per page kind: the folder CI keeps as its artifacts
if [ -d build/screenshots ]; then
  echo "screenshots: build/screenshots/ ($(ls build/screenshots | tr '\n' ' '))" >&2
fi
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
