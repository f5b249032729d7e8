"""A small model to try trtprof on any machine: `trtprof capture examples/infer.py --batch 8`, or as a
module from the repository root, `trtprof capture -m examples.infer --batch 8`.

With CUDA and torch_tensorrt it compiles a three-layer MLP (one engine) and runs it; otherwise it
runs the same model eagerly on the CPU and says so, so every command of the README works anywhere
(the capture then holds no engine rows).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

import torch


def build(device: str) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval().to(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=50)
    args = p.parse_args(argv)
    gpu = torch.cuda.is_available() and importlib.util.find_spec("torch_tensorrt") is not None
    model = build("cuda" if gpu else "cpu")
    x = torch.randn(args.batch, 64, device="cuda" if gpu else "cpu")
    if gpu:
        import torch_tensorrt

        model = torch_tensorrt.compile(model, ir="dynamo", inputs=[x])
    with torch.no_grad():
        for _ in range(args.iters):
            model(x)
    if gpu:
        torch.cuda.synchronize()
    print(f"ran {args.iters} inferences of batch {args.batch} "
          + ("on the compiled engine" if gpu else "eagerly on the CPU (no CUDA or no torch_tensorrt: no engine)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
