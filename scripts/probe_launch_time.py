"""Device probe (issues 16 and 22): can kernels be attributed to host ranges by CUPTI's launch-side
timestamps, with no CUDA event per range?

Why: a range's two CUDA events cost the recorded inference several microseconds each on the hot path,
and with kernel activity they serve only to attribute kernels. CUPTI's kernel records can carry
`queued` (when the launch entered the command buffer, on CUPTI's clock) and `submitted` once
`cuptiActivityEnableLatencyTimestamps(1)` is called. If `queued` lies inside the host window that
launched the kernel, a host timestamp per range edge is all attribution needs.

    source .trtbundle/activate.sh && python3 scripts/probe_launch_time.py --out OUT/launch_time.json

Phases (the JSON is rewritten after each; each window's edges are `cupti.get_timestamp()` reads):
  idle      two small kernels per window, a synchronize after each: queued/submitted inside the window?
  backlog   the same while the GPU is busy with earlier work (start long after the window)
  trt       a Torch-TensorRT engine (C++ runtime) per window, if torch_tensorrt imports
  graph     a CUDA graph replay per window: what queued says for graph kernels
  cost      interleaved blocks, launch-bound loop of small kernels: kernel activity off / on / on with
            latency timestamps; median per-iteration wall time of each
Exit 0 when it ran (the checks are data, in the JSON); 2 without CUDA or cupti-python.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--windows", type=int, default=400)
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--budget", type=float, default=170.0, help="seconds before the cost phase stops")
    args = ap.parse_args()
    try:
        import torch
        from cupti import cupti
    except Exception as e:  # noqa: BLE001
        print(f"probe_launch_time: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("probe_launch_time: no CUDA device", file=sys.stderr)
        return 2
    res: dict = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
                 "cupti_version": _try(getattr(cupti, "get_version", lambda: None)), "phases": {}}
    out = Path(args.out)

    def save():
        out.write_text(json.dumps(res, indent=2, default=str))

    recs: list = []
    kind_k = int(cupti.ActivityKind.CONCURRENT_KERNEL)

    def completed(acts):
        for a in acts:
            if int(a.kind) == kind_k:
                recs.append((int(a.correlation_id), int(a.start), int(a.end), int(getattr(a, "queued", 0)),
                             int(getattr(a, "submitted", 0)), int(a.stream_id), int(getattr(a, "graph_id", 0))))

    cupti.activity_register_callbacks(lambda: (8 << 20, 0), completed)
    lat = _try(cupti.activity_enable_latency_timestamps, 1)
    res["latency_enable"] = lat
    cupti.activity_enable(kind_k)
    ts = cupti.get_timestamp
    x = torch.ones(1024, device="cuda")

    def small():
        x.add_(1.0)
        x.mul_(0.5)

    def windows(fn, n, sync=True, before=None):
        recs.clear()
        torch.cuda.synchronize()
        cupti.activity_flush_all(1)
        recs.clear()
        wins = []
        for _ in range(n):
            if before is not None:
                before()
            a = ts()
            fn()
            b = ts()
            wins.append((a, b))
            if sync:
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        cupti.activity_flush_all(1)
        return wins, list(recs)

    def check(name, wins, rs):
        import bisect
        starts = [w[0] for w in wins]
        per = {"kernels": len(rs), "windows": len(wins)}
        for field, idx in (("queued", 3), ("submitted", 4), ("start", 1)):
            inside = unknown = 0
            leads = []
            counts = [0] * len(wins)
            for r in rs:
                v = r[idx]
                if v in (0, 2**64 - 1) or v < 0:
                    unknown += 1
                    continue
                i = bisect.bisect_right(starts, v) - 1
                if i >= 0 and v <= wins[i][1]:
                    inside += 1
                    counts[i] += 1
                    leads.append(v - wins[i][0])
            per[field] = {"inside": inside, "unknown": unknown, "outside": len(rs) - inside - unknown,
                          "per_window": dict(sorted(_hist(counts).items())),
                          "offset_from_window_start_ns_median": statistics.median(leads) if leads else None}
        def known(v):  # CUPTI_TIMESTAMP_UNKNOWN (0) and all ones are no time
            return 0 < v < 2**63
        per["queued_le_start"] = sum(1 for r in rs if known(r[3]) and r[3] <= r[1])
        per["queued_unknown"] = sum(1 for r in rs if not known(r[3]))
        lag = [r[4] - r[3] for r in rs if known(r[3]) and known(r[4])]  # none for CUDA-graph kernels (H100, 2026-12-08)
        per["submitted_minus_queued_ns_median"] = statistics.median(lag) if lag else None
        per["window_ns_median"] = statistics.median([b - a for a, b in wins]) if wins else None
        per["sample"] = rs[:6]
        res["phases"][name] = per
        save()
        print(name, json.dumps({k: v for k, v in per.items() if k != "sample"}), flush=True)

    t_end = time.monotonic() + args.budget
    for _ in range(20):
        small()
    check("idle", *windows(small, args.windows))
    big = torch.randn(4096, 4096, device="cuda")

    def busy():
        for _ in range(3):
            big @ big  # noqa: B018 - queues ~ms of GPU work ahead of the window
    check("backlog", *windows(small, args.windows // 4, sync=False, before=busy))

    try:
        import torch_tensorrt
        model = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Linear(1024, 1024), torch.nn.ReLU())])
        model = model.cuda().eval()
        inp = torch.randn(64, 1024, device="cuda")
        trt = torch_tensorrt.compile(model, ir="dynamo", inputs=[inp], min_block_size=1,
                                     use_python_runtime=False)
        with torch.no_grad():
            for _ in range(10):
                trt(inp)
            res["trt_version"] = torch_tensorrt.__version__
            check("trt", *windows(lambda: trt(inp), args.windows // 2))
            check("trt_nosync", *windows(lambda: trt(inp), args.windows // 2, sync=False))
    except Exception as e:  # noqa: BLE001
        res["phases"]["trt"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        save()

    try:
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            small()
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            small()
        check("graph", *windows(g.replay, args.windows // 4))
    except Exception as e:  # noqa: BLE001
        res["phases"]["graph"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        save()

    # cost: 40 small kernels an iteration, a synchronize after each; modes interleaved per block
    def loop(n=50):
        times = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            for _ in range(20):
                small()
            torch.cuda.synchronize()
            times.append(time.perf_counter_ns() - t0)
        return times

    def mode(m):
        cupti.activity_disable(kind_k)
        cupti.activity_flush_all(1)
        recs.clear()
        if m != "off":
            _try(cupti.activity_enable_latency_timestamps, 1 if m == "latency" else 0)
            cupti.activity_enable(kind_k)

    cost = {m: [] for m in ("off", "kernels", "latency")}
    for blk in range(args.blocks):
        if time.monotonic() > t_end:
            break
        order = list(cost)
        if blk % 2:
            order.reverse()
        for m in order:
            mode(m)
            cost[m] += loop()
    mode("off")
    med = {m: statistics.median(v) if v else None for m, v in cost.items()}
    res["phases"]["cost"] = {"iteration": "40 kernels then a synchronize", "median_ns": med,
                             "iterations": {m: len(v) for m, v in cost.items()},
                             "per_kernel_ns_vs_off": {m: (med[m] - med["off"]) / 40 for m in med if med[m] and med["off"]}}
    save()
    print("cost", json.dumps(res["phases"]["cost"]), flush=True)
    return 0


def _hist(counts):
    h: dict = {}
    for c in counts:
        h[c] = h.get(c, 0) + 1
    return h


def _try(fn, *a):
    try:
        r = fn(*a)
        return "ok" if r is None else r
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    sys.exit(main())
