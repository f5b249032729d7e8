"""Where trtprof's per-inference cost goes, measured piece by piece on the machine that runs it.

    python3 scripts/bench_hooks.py [--out reports/bench]

1. Python cost of the hooks alone: the CPU stand-in runtime (tests/fake_trt) with the same
   instrumentation code, per inference, with and without capture (no GPU involved), 2 engines and 1
   fallback (like the two-engine test model).
2. CUDA event record cost (torch.cuda.Event.record on a given stream), NVTX push/pop cost, and
   torch.cuda.current_stream() cost, when CUDA is there.
Medians over many repetitions; one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STANDIN = r"""
import sys, time, statistics, json, tempfile
sys.path[:0] = [{fake!r}, {tests!r}, {root!r}]
import torch, trtprof
from cpu_models import partitioned
res = {{}}
for rt in ("cpp", "python"):
    m = partitioned(rt); x = torch.randn(2, 8)
    def run(n):
        t = []
        for _ in range(n):
            t0 = time.perf_counter_ns(); m(x); t.append(time.perf_counter_ns() - t0)
        return statistics.median(t) / 1000
    run(500)
    from trtprof.capture import state
    base, prof, idle = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(6):
            base.append(run(2000))
            s = trtprof.Session(tmp + f"/c{{i}}", gpu=False, nvtx=False).start()
            s.instrument(m)
            prof.append(run(2000))
            ins, state.ACTIVE = state.ACTIVE, None
            idle.append(run(2000))  # hooks installed, recording off: the pass-through cost
            state.ACTIVE = ins
            s.stop()
    res[rt] = {{"base_us": statistics.median(base), "captured_us": statistics.median(prof),
               "installed_idle_us": statistics.median(idle)}}
print(json.dumps(res))
"""


def standin() -> dict:
    code = STANDIN.format(fake=str(ROOT / "tests/fake_trt"), tests=str(ROOT / "tests"), root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode:
        return {"error": out.stderr[-500:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    for v in res.values():
        v["hook_cost_us_per_inference"] = round(v["captured_us"] - v["base_us"], 2)
        v["pass_through_us_per_inference"] = round(v["installed_idle_us"] - v["base_us"], 2)
    return res


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
    out["gpu"] = torch.cuda.get_device_name(0)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/bench")
    args = p.parse_args()
    res = {"standin_hooks": standin(), "cuda": cuda_costs()}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "hooks.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
