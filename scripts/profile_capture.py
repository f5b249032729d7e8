"""cProfile of trtprof's own hooks around BERT inference on the GPU machine: where the per-inference
cost goes (run it there: the host CPU decides this cost).

    source .trtbundle/activate.sh && python3 scripts/profile_capture.py [--runtime cpp|python]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bert_models import bert_inputs, build_bert, compile_bert  # noqa: E402

import trtprof  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", choices=["cpp", "python"], default="cpp")
    p.add_argument("--iters", type=int, default=500)
    args = p.parse_args()
    trt = compile_bert(build_bert(), python_runtime=args.runtime == "python")
    x = bert_inputs()
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for _ in range(20):
            trt(*x)
        s = trtprof.Session(Path(tmp) / "c").start()
        s.instrument(trt)
        for _ in range(20):
            trt(*x)
        torch.cuda.synchronize()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(args.iters):
            trt(*x)
            torch.cuda.synchronize()
        pr.disable()
        s.stop()
    out = io.StringIO()
    st = pstats.Stats(pr, stream=out)
    st.sort_stats("tottime").print_stats(30)
    st.sort_stats("cumulative").print_stats(30)
    print(out.getvalue())


if __name__ == "__main__":
    main()
