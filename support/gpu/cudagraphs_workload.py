"""GPU test workload: the issue's CUDA-graph run on a two-engine model (a graph break: whole-graph
mode) or a single-engine one (per-engine mode), on either runtime.

Usage: python cudagraphs_workload.py {python|cpp} {two|single} RESULT_JSON
Runs 10 plain inferences, 30 under `torch_tensorrt.runtime.enable_cudagraphs`, then 5 plain, each
checked against eager PyTorch, and writes what ran (the wrapper's class, the mode inside) to RESULT_JSON.
"""
import json
import sys

import torch
import torch_tensorrt
from gpu_models import OneEngine, TwoEngines

runtime, kind, out = sys.argv[1], sys.argv[2], sys.argv[3]
model = (TwoEngines() if kind == "two" else OneEngine()).eval().cuda().half()
x = torch.randn(8, 256, device="cuda", dtype=torch.half)
extra = {"torch_executed_ops": {"torch.ops.aten.sigmoid.default"}} if kind == "two" else {}
trt = torch_tensorrt.compile(model, ir="dynamo", inputs=[x], min_block_size=1,
                             use_python_runtime=(runtime == "python"), **extra)
ref = model(x).float()


def check(y):
    err = (y.float() - ref).abs().max().item()
    assert err < 5e-2, err


with torch.no_grad():
    for _ in range(10):
        check(trt(x))
    with torch_tensorrt.runtime.enable_cudagraphs(trt) as cg:
        wrapper = type(cg).__name__
        mode = int(torch_tensorrt.runtime._cudagraphs._PY_RT_CUDAGRAPHS)
        for _ in range(30):
            check(cg(x))
    for _ in range(5):
        check(trt(x))
torch.cuda.synchronize()
json.dump({"runtime": runtime, "kind": kind, "wrapper": wrapper, "mode": mode,
           "children": [n for n, _ in trt.named_children()]}, open(out, "w"))
print("ran 45 calls;", wrapper, "mode", mode)
