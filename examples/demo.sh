#!/usr/bin/env bash
# The main job on a fresh machine: install trtprof, then capture the tutorial's BERT with it.
# On a GPU machine with torch_tensorrt this compiles BERT-base and records every engine call; on a
# CPU-only machine the script runs BERT eagerly and trtprof says what it could not record.
#   bash examples/demo.sh [extra trtprof capture options, e.g. --python-runtime is a script flag: see below]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import torch" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check "torch==2.13.0"  # the CPU build on CPU machines
fi
python3 -m pip install -q --disable-pip-version-check -e ".[demo]" 2>&1 | grep -v "^WARNING" || true
exec trtprof capture examples/bert_prealloc.py "$@"
