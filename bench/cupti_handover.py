"""Where the time goes when CUPTI hands kernel records over, and what buffer size and flush period
cost: one BERT compile, then one capture per configuration, each inference timed from outside.

    python bench/cupti_handover.py --iters 400 --out OUT      (on the GPU machine)

Per configuration (forced-flush period, CUPTI buffer size): the wall time of the loop, the outside
latency median / p99 / max, the sum of latencies above 3x the median (the stalls), and meta.json's
`kernels.handover` (buffers, records, time in our callback, time inside activity_flush_all) plus
the time in writing kernel records. Why: a capture of BERT on the H200 showed 0.4-1.0 s pauses,
first inside inferences (CUPTI's full-buffer handover), then between them (the forced flush at a
safe point); this says which part costs and which setting removes it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

CONFIGS = {  # name: (forced-flush period in ns, None: trtprof's schedule; CUPTI buffer bytes)
    "adaptive-64MB": (None, 64 << 20),
    "flush100ms-8MB": (100_000_000, 8 << 20),
    "flush1s-8MB": (1_000_000_000, 8 << 20),
    "noforced-8MB": (10 ** 15, 8 << 20),
    "flush100ms-1MB": (100_000_000, 1 << 20),
    "noforced-1MB": (10 ** 15, 1 << 20),
    "flush1s-32MB": (1_000_000_000, 32 << 20),
    "noforced-64MB": (10 ** 15, 64 << 20),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args(argv)
    import torch

    import trtprof
    from trtprof.capture import kernels as K
    from trtprof.timeline import store
    from bert_models import bert_inputs, build_bert, compile_bert

    trt = compile_bert(build_bert())
    x = bert_inputs(1, 128)
    sink_ns = [0]
    write = store.CaptureWriter.write_kernels

    def timed_write(self, records):
        t0 = time.perf_counter_ns()
        write(self, records)
        sink_ns[0] += time.perf_counter_ns() - t0
    store.CaptureWriter.write_kernels = timed_write
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "torch_tensorrt": __import__("torch_tensorrt").__version__, "iters": args.iters, "configs": {}}
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            K.FLUSH_PERIOD_NS, K.BUFFER_BYTES = CONFIGS[name]
            sink_ns[0] = 0
            lat = []
            with trtprof.profile(out=Path(tmp) / name) as cap:
                for _ in range(args.warmup):
                    trt(*x)
                torch.cuda.synchronize()
                t_start = time.perf_counter()
                for _ in range(args.iters):
                    t0 = time.perf_counter()
                    trt(*x)
                    torch.cuda.synchronize()
                    lat.append(1000 * (time.perf_counter() - t0))
                wall = time.perf_counter() - t_start
            med = statistics.median(lat)
            s = sorted(lat)
            h = cap.meta.get("kernels", {}).get("handover", {})
            res["configs"][name] = {
                "wall_s": round(wall, 3), "median_ms": round(med, 4), "p99_ms": round(s[int(0.99 * len(s))], 3),
                "max_ms": round(s[-1], 2), "stall_ms": round(sum(v for v in lat if v > 3 * med), 1),
                "stalls": sum(v > 3 * med for v in lat), "write_kernels_ms": round(sink_ns[0] / 1e6, 1),
                "handover": h, "callback_us_per_record": round(h["callback_ns"] / 1e3 / h["records"], 2)
                if h.get("records") else None,
                "kernels_recorded": bool(cap.meta.get("kernels", {}).get("recorded"))}
            print(name, json.dumps(res["configs"][name]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cupti_handover.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
