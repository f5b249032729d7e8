#!/usr/bin/env bash
# On the GPU machine: try Torch-TensorRT 2.13's Python package as a PYTHON_ONLY build (its Python files
# without libtorchtrt*.so, so `ENABLED_FEATURES.torch_tensorrt_runtime` is False and the Python
# `TRTEngine` runs under `tensorrt::execute_engine`) on the machine's torch, and capture the two-engine
# workload through it. Each step's exit status and output go to OUTDIR/python-only.txt; a failure is a
# finding, not an error of this script.
#   source .trtbundle/activate.sh && bash scripts/try_python_only.sh TGZ OUTDIR
# TGZ: the torch_tensorrt package directory of the torch-tensorrt-rtx 2.13.0 wheel with lib/, bin/,
# include/ and _C*.so removed (`pip download torch-tensorrt-rtx==2.13.0 --no-deps`, then unzip).
set -uo pipefail
cd "$(dirname "$0")/.."
tgz=$1; out=$2; mkdir -p "$out"; log=$out/python-only.txt
site=$(mktemp -d); tar xzf "$tgz" -C "$site"
export PYTHONPATH=$site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
step() { echo "== $1" >> "$log"; shift; timeout 240 "$@" >> "$log" 2>&1; echo "== rc=$?" >> "$log"; }
step import python3 -c "
import torch, torch_tensorrt as t, tensorrt
print('torch', torch.__version__, 'torch_tensorrt', t.__version__, 'from', t.__file__)
print('tensorrt', getattr(tensorrt, '_package_name', '?'), tensorrt.__version__)
print(t.ENABLED_FEATURES)
import torch_tensorrt.dynamo.runtime as r
print('runtime classes', [n for n in dir(r) if 'Module' in n or 'Engine' in n])
print('execute_engine op', hasattr(torch.ops.tensorrt, 'execute_engine'))"
step capture python3 -m trtprof capture -o "$out/python-only-cap" support/gpu/two_engines.py cpp "$out/sched.json"
step rows python3 -c "
import sys, trtprof
c = trtprof.load_capture(sys.argv[1])
print('capture_path', c.meta.get('capture_path'), 'torch_tensorrt', c.meta.get('torch_tensorrt'))
print(c.timeline.groupby(['event', 'subgraph'], dropna=False).size().to_string())
print('notes', c.meta.get('notes'))" "$out/python-only-cap"
tail -c 6000 "$log"
