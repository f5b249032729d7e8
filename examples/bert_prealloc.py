"""The Torch-TensorRT "pre-allocated output buffer" tutorial as a runnable script.

BERT-base built from `transformers.BertConfig()` (random weights, the compute of bert-base-uncased;
no hub download), fp16, batch 1, sequence 128, compiled with `torch_tensorrt.compile(ir="dynamo")`.
Times normal and pre-allocated inference like the tutorial (median of timed iterations), then prints
both. Run it under trtprof to see why they differ:

    trtprof capture examples/bert_prealloc.py --python-runtime

Without CUDA or torch_tensorrt it runs BERT eagerly on the CPU for a few iterations and says what it
could not do (no engine to compile or profile).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import timeit

import torch

from bert_models import bert_inputs, build_bert, compile_bert


def perf(model, inputs, warmup: int, iters: int) -> float:
    """Median seconds per inference (the tutorial's test_module_perf, with settable counts)."""
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            model(*inputs)
        torch.cuda.synchronize()
        for _ in range(iters):
            t0 = timeit.default_timer()
            model(*inputs)
            torch.cuda.synchronize()
            times.append(timeit.default_timer() - t0)
    times.sort()
    return times[len(times) // 2]


def cpu_fallback(args) -> int:
    missing = "CUDA" if not torch.cuda.is_available() else "torch_tensorrt"
    model = build_bert("cpu", half=False)
    if model is None:
        print(f"no {missing} and no transformers: nothing to run (pip install -e '.[demo]' installs "
              "transformers)", file=sys.stderr)
        return 0
    ids = torch.randint(0, 5, (args.batch, args.seq_len))
    with torch.no_grad():
        t0 = timeit.default_timer()
        for _ in range(3):
            model(ids, torch.zeros_like(ids))
    print(f"no {missing}: ran BERT-base eagerly on the CPU, 3 iterations, "
          f"{(timeit.default_timer() - t0) / 3 * 1e3:.0f} ms each; nothing compiled, no engine to profile")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python-runtime", action="store_true", help="use PythonTorchTensorRTModule")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10, help="timed iterations per mode (the tutorial: 10)")
    p.add_argument("--graph-breaks", action="store_true", help="leave GELU to PyTorch: many engines")
    args = p.parse_args(argv)
    if not torch.cuda.is_available() or importlib.util.find_spec("torch_tensorrt") is None:
        return cpu_fallback(args)
    import torch_tensorrt

    model = build_bert("cuda", half=True)
    if model is None:
        print("transformers is not installed: cannot build BERT", file=sys.stderr)
        return 2
    inputs = bert_inputs(args.batch, args.seq_len)
    trt_model = compile_bert(model, args.batch, args.seq_len, python_runtime=args.python_runtime,
                             graph_breaks=args.graph_breaks)
    with torch_tensorrt.runtime.enable_pre_allocated_outputs(trt_model):
        trt_model(*inputs)
        trt_model(*inputs)  # subsequent inferences can use the pre-allocated buffers
    ctx = torch_tensorrt.runtime.enable_pre_allocated_outputs(trt_model)
    ctx.set_pre_allocated_output(True)
    time_opt = perf(trt_model, inputs, args.warmup, args.iters)
    ctx.set_pre_allocated_output(False)
    trt_model(*inputs)
    time_normal = perf(trt_model, inputs, args.warmup, args.iters)
    print(f"normal trt model time: {time_normal * 1e3:.3f} ms")
    print(f"pre-allocated output buffer model time: {time_opt * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
