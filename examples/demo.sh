#!/usr/bin/env bash
# The main job on a fresh machine: install trtprof, then capture the tutorial's BERT with it.
#   bash examples/demo.sh [--python-runtime ...]   (options for examples/bert_prealloc.py)
# With a GPU and torch_tensorrt this compiles BERT-base and records every engine call. On a machine
# without them the script runs BERT eagerly, trtprof says in one line what it could not record, and
# examples/gpu_example.py renders the report of a GPU capture committed under reports/cases/ instead.
# TRTPROF_DEMO_NO_INSTALL=1 skips the installation (trtprof already on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TRTPROF_DEMO_NO_INSTALL:-}" != 1 ]; then
  if ! python3 -c "import torch" 2>/dev/null; then
    python3 -m pip install -q --disable-pip-version-check "torch==2.13.0"  # the CPU build on CPU machines
  fi
  python3 -m pip install -q --disable-pip-version-check -e ".[demo]" 2>&1 | grep -v "^WARNING" || true
fi
out="reports/demo-$(date +%Y%m%d-%H%M%S)"
set +e
trtprof capture -o "$out" examples/bert_prealloc.py "$@"
rc=$?
set -e
python3 examples/gpu_example.py "$out"
exit "$rc"
