"""cProfile of BERT inference on the GPU machine with recording on and off in one capture: which
functions take the extra time per inference (run it there: the host CPU decides this cost).

    source .trtbundle/activate.sh && python3 bench/profile_capture.py [--runtime cpp|python]
        [--level full|minimal] [--graph-breaks] [--sample N]

Prints, per function, the extra own time per inference (on minus off), largest first.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))  # bert_models
from bert_models import bert_inputs, build_bert, compile_bert  # noqa: E402

import trtprof  # noqa: E402
from trtprof.capture import state  # noqa: E402


def profiled(trt, x, iters):
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(iters):
        trt(*x)
        torch.cuda.synchronize()
    pr.disable()
    return {f"{k[0].rsplit('/', 2)[-1]}:{k[1]}({k[2]})": (v[0], v[2]) for k, v in pstats.Stats(pr).stats.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", choices=["cpp", "python"], default="cpp")
    p.add_argument("--level", choices=["full", "minimal"], default="full")
    p.add_argument("--graph-breaks", action="store_true")
    p.add_argument("--sample", type=int, default=1, help="record 1 inference in N (trtprof capture --sample)")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    trt = compile_bert(build_bert(), python_runtime=args.runtime == "python", graph_breaks=args.graph_breaks)
    x = bert_inputs()
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for _ in range(20):
            trt(*x)
        s = trtprof.Session(Path(tmp) / "c", level=args.level, sample=args.sample).start()
        s.instrument(trt)
        for _ in range(20):
            trt(*x)
        torch.cuda.synchronize()
        ins = state.ACTIVE
        state.ACTIVE = None
        off = profiled(trt, x, args.iters)
        state.ACTIVE = ins
        on = profiled(trt, x, args.iters)
        s.stop()
    n = args.iters
    rows = []
    for k in set(on) | set(off):
        c1, t1 = on.get(k, (0, 0.0))
        c0, t0 = off.get(k, (0, 0.0))
        rows.append(((t1 - t0) / n * 1e6, (c1 - c0) / n, k))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"{args.runtime} {args.level} sample={args.sample} breaks={args.graph_breaks}: extra own time {total:.1f} us/inference "
          "(under cProfile)")
    print("  extra us/inf  extra calls/inf  function")
    for dt, dc, k in rows[:args.top]:
        print(f"  {dt:12.2f}  {dc:15.2f}  {k}")


if __name__ == "__main__":
    main()
