"""Where trtprof's per-inference cost goes, measured piece by piece on the machine that runs it.

    python3 bench/bench_hooks.py [--out reports/bench]

The floor a recorded range cannot go below: CUDA event record cost (torch.cuda.Event.record on a
given stream and on the current one), event query, NVTX push/pop, and torch.cuda.current_stream();
and what trtprof's hot path calls instead: GpuClock.record (a pooled event through the C-level
record, then recycled) and GpuClock.current_stream (the raw stream handle, cached).
Medians over many repetitions; one run. The hooks' own cost per inference, with the real runtime, is
what bench_overhead.py (paired on/off) and profile_capture.py (where it goes) measure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # trtprof from this tree

def cuda_costs(n: int = 20000) -> dict:
    import torch
    if not torch.cuda.is_available():
        return {"cuda": "not available"}
    s = torch.cuda.current_stream()
    evs = [torch.cuda.Event(enable_timing=True) for _ in range(n)]

    def per_call(fn, reps=n):
        t0 = time.perf_counter_ns()
        for i in range(reps):
            fn(i)
        return (time.perf_counter_ns() - t0) / reps / 1000

    out = {}
    out["event_record_given_stream_us"] = statistics.median(per_call(lambda i: evs[i].record(s)) for _ in range(3))
    torch.cuda.synchronize()
    out["event_record_current_stream_us"] = statistics.median(per_call(lambda i: evs[i].record()) for _ in range(3))
    torch.cuda.synchronize()
    out["current_stream_us"] = statistics.median(per_call(lambda i: torch.cuda.current_stream()) for _ in range(3))
    out["event_query_us"] = statistics.median(per_call(lambda i: evs[i].query()) for _ in range(3))
    try:
        import nvtx
        d = nvtx.get_domain("trtprof-bench")
        a = d.get_event_attributes(message="x", color=0xFF00FF00)

        def pp(i):
            d.push_range(a)
            d.pop_range()
        out["nvtx_push_pop_us"] = statistics.median(per_call(pp) for _ in range(3))
        out["nvtx_domain"] = type(d).__name__
    except ImportError:
        out["nvtx_push_pop_us"] = None
    # what the hot path really calls: GpuClock.record (pooled event, the C-level record) and
    # GpuClock.current_stream (the raw handle, torch.cuda.current_stream() only for a new stream)
    from trtprof.capture.events import GpuClock
    clock = GpuClock(torch)
    clock.anchor()
    cs = clock.current_stream()

    def rec(i):
        clock.recycle(clock.record(cs))
    out["gpuclock_record_recycle_us"] = statistics.median(per_call(rec) for _ in range(3))
    torch.cuda.synchronize()
    out["gpuclock_current_stream_us"] = statistics.median(per_call(lambda i: clock.current_stream()) for _ in range(3))
    t = time.perf_counter_ns
    out["perf_counter_ns_us"] = statistics.median(per_call(lambda i: t()) for _ in range(3))
    out["gpu"] = torch.cuda.get_device_name(0)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/bench")
    args = p.parse_args()
    res = {"cuda": cuda_costs()}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "hooks.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
