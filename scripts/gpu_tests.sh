#!/usr/bin/env bash
# On the GPU machine (after `source .trtbundle/activate.sh`): run the GPU tests, then capture the
# tutorial's BERT on both runtimes. Results and logs go to OUTDIR (default $OUT, else /tmp/trtprof-gpu).
#   source .trtbundle/activate.sh && bash scripts/gpu_tests.sh [OUTDIR]
# GPU_PYTEST_ARGS replaces the test selection (node ids, -o faulthandler_timeout=N for a hang's stacks).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/trtprof-gpu}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 - <<'PY' 2>&1 | tee "$out/env.txt"
import importlib, torch
for m in ("pandas", "pyarrow", "click", "plotly", "nvtx", "pytest", "transformers", "torch_tensorrt", "hypothesis"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "?"))
    except Exception as e:
        print(m, "MISSING", type(e).__name__, e)
print("gpu", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
rc=0
python3 -m pytest -m gpu -q -p no:cacheprovider ${GPU_PYTEST_ARGS:-tests/gpu} 2>&1 | tee "$out/gpu_tests.log" || rc=1
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
for rt in ${BERT_RUNTIMES-python cpp}; do
  flag=""; [ "$rt" = python ] && flag="--python-runtime"
  python3 -m trtprof capture -o "$out/bert-$rt" examples/bert_prealloc.py $flag --iters 200 --warmup 20 \
    2>&1 | tee "$out/bert-$rt.txt" || rc=1
done
exit $rc
