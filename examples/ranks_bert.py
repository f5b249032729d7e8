"""The tutorial's BERT served by several ranks, each with its own Torch-TensorRT engine, stepping together.

Run it under a launcher through trtprof, one capture per rank:
    torchrun --standalone --nproc-per-node 2 -m trtprof capture -o reports/ranks examples/ranks_bert.py

Each rank uses cuda:(LOCAL_RANK mod the GPUs it sees), so two ranks on a one-GPU machine share
cuda:0, each with its own engine. After every inference the ranks meet (`--sync`): a gloo barrier
(works whatever the devices), an NCCL all-reduce of one number (one GPU per rank: NCCL refuses two
ranks on one device), or nothing. The meeting is outside the timed call, so the straggler view shows
how far apart the ranks' latencies were at each step. Without CUDA or torch_tensorrt it says so and
exits 0.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bert_models import bert_inputs, build_bert, compile_bert  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20, help="inferences before the timed ones (recorded too)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--python-runtime", action="store_true", help="use the Python runtime module")
    p.add_argument("--sync", choices=("gloo", "nccl", "none"), default="gloo")
    args = p.parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not torch.cuda.is_available() or importlib.util.find_spec("torch_tensorrt") is None:
        print(f"rank {rank}: no CUDA or no torch_tensorrt: nothing to compile, nothing run")
        return 0
    device = int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count()
    torch.cuda.set_device(device)
    model = build_bert("cuda", half=True)
    if model is None:
        print("transformers is not installed: cannot build BERT", file=sys.stderr)
        return 2
    inputs = bert_inputs(args.batch, args.seq_len)
    trt_model = compile_bert(model, args.batch, args.seq_len, python_runtime=args.python_runtime)
    dist = None
    if world > 1 and args.sync != "none":
        import torch.distributed as dist

        extra = {"device_id": torch.device("cuda", device)} if args.sync == "nccl" else {}
        dist.init_process_group(args.sync, **extra)
    one = torch.ones(1, device="cuda")

    def meet():
        if dist is not None:
            dist.all_reduce(one) if args.sync == "nccl" else dist.barrier()

    meet()  # every rank compiled: inference 0 starts together
    with torch.no_grad():
        for _ in range(args.warmup + args.iters):
            trt_model(*inputs)
            torch.cuda.synchronize()
            meet()
    if dist is not None:
        dist.destroy_process_group()
    print(f"rank {rank} of {world} on cuda:{device} ({torch.cuda.get_device_name(device)}): "
          f"{args.warmup + args.iters} inferences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
