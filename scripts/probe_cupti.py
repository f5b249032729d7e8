"""Device probe for kernel truth (issue 16): CUPTI activity through trtprof's KernelActivity on a small
torch workload, attributed to CUDA-event windows by trtprof.timeline.kernels.attribute.

    source .trtbundle/activate.sh && python3 scripts/probe_cupti.py --out reports/probe_cupti.json

Phases (the JSON is rewritten after each, so a crash keeps what came before):
  same_stream    events and work on the current (default) stream; windows carry the CUPTI id of that
                 stream (KernelActivity.stream_id), so kernels should match by stream
  engine_stream  events on the caller stream, work on a side stream (as the C++ runtime's pool stream):
                 kernels should match by time ("window on any stream")
  sampled        started paused; resume() before 1 call in --sample, pause() as soon as the call returns
                 (before the GPU is done): recorded calls keep all their kernels, the others have none
  restart        stop(), then a new KernelActivity start()s and collects again
  torch_profiler start() inside torch.profiler (CUPTI taken: expect False and a one-line reason, and
                 torch.profiler still sees its kernels), then start() after it exited
  finalize       stop(finalize=True), then start() again
Per call: kernels, busy (union), span (first start to last end), event bracket, and where the kernels
sit inside the bracket (negative lead/tail beyond the clock error would mean the clock conversion is off).
Exit: 0 every check passed; 1 a check failed (listed under "failed" and on stderr); 2 no torch/CUDA;
3 KernelActivity could not start (under nsys that is the expected answer: the reason says so).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


PHASES = ("same_stream", "engine_stream", "sampled", "restart", "torch_profiler", "finalize")


def die(code, msg, out=None, res=None):
    print(f"probe_cupti: {msg}", file=sys.stderr)
    if out and res is not None:
        res["fatal"] = msg
        Path(out).write_text(json.dumps(res, indent=2, default=str))
    sys.exit(code)


class Clock:
    """CUDA events on the host clock (perf_counter_ns): one reference event bracketed by host reads."""

    def __init__(self, torch):
        best = None
        for _ in range(5):
            ev = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            lo = time.perf_counter_ns()
            ev.record()
            while True:                                  # done after the last query that said no
                tq = time.perf_counter_ns()
                if ev.query():
                    hi = time.perf_counter_ns()
                    break
                lo = max(lo, tq)
            if best is None or hi - lo < best[2] - best[1]:
                best = (ev, lo, hi)
        self.ref, lo, hi = best
        self.host0, self.error_ns = (lo + hi) // 2, (hi - lo) // 2

    def host(self, ev):
        return self.host0 + round(self.ref.elapsed_time(ev) * 1e6)


def _median(rows, key):
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else None


def summarise(recs, win, meta, sid, expect_by, tol_us):
    """One phase's figures and checks from flushed records, the calls' windows (host clock) and
    per call (recorded, host ns); pure, so that the CPU tests can run it."""
    from trtprof.timeline.kernels import attribute
    att = attribute(recs, win)
    is_kernel = recs["kind"] == "kernel"
    per = []
    for i, (recorded, host_ns) in enumerate(meta):
        row = att.rows.iloc[i]
        n = int(row.kernel_count)
        start, end = win["start_ns"][i], win["end_ns"][i]
        d = {"call": int(win["seq"][i]), "recorded": recorded, "kernels": n, "host_us": host_ns / 1e3,
             "bracket_us": (end - start) / 1e3}
        if n:
            first, last = int(row.kernel_first_ns), int(row.kernel_last_ns)
            d.update(busy_us=int(row.kernel_busy_ns) / 1e3, span_us=(last - first) / 1e3,
                     lead_us=(first - start) / 1e3, tail_us=(end - last) / 1e3)
        per.append(d)
    kern = int(is_kernel.sum())
    attributed = int(((att.index >= 0) & is_kernel).sum())
    timed = [p for p in per if "busy_us" in p]
    first_call = (att.index == 0) & is_kernel
    ph = {"records": {k: int((recs["kind"] == k).sum()) for k in ("kernel", "memcpy", "memset")},
          "counts": att.counts, "stream_id": sid, "record_streams": sorted(set(recs["stream"].tolist())),
          "attributed_fraction": attributed / kern if kern else None,
          "median": {k: _median(per, k) for k in ("kernels", "busy_us", "span_us", "bracket_us", "lead_us",
                                                  "tail_us", "host_us")},
          "min_lead_us": min((p["lead_us"] for p in timed), default=None),
          "min_tail_us": min((p["tail_us"] for p in timed), default=None),
          "first_call_kernels": sorted(set(recs["name"][first_call].tolist()))[:8],
          "clock_tolerance_us": tol_us, "calls": per}
    checks = {"kernel_records": kern > 0,
              "every_recorded_call_has_kernels": all(p["kernels"] > 0 for p in per if p["recorded"]),
              "all_kernels_attributed": kern > 0 and attributed / kern >= 0.99,
              "busy_le_span": all(p["busy_us"] <= p["span_us"] + 1e-3 for p in timed),
              "span_inside_bracket": all(p["lead_us"] >= -tol_us and p["tail_us"] >= -tol_us for p in timed)}
    if expect_by == "stream":
        checks["matched_by_stream"] = (sid is not None and att.counts["by_time"] == 0
                                       and att.counts["by_stream"] > 0)
    elif expect_by == "time":
        checks["matched_by_time"] = att.counts["by_time"] > 0
    ph["checks"] = checks
    return ph


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--calls", type=int, default=100, help="calls per phase")
    ap.add_argument("--sample", type=int, default=10, help="record 1 call in N in the sampled phase")
    ap.add_argument("--size", type=int, default=1024, help="square fp16 matmul size")
    ap.add_argument("--phases", default=",".join(PHASES), help="comma-separated, in this order")
    args = ap.parse_args()
    out, res, failed = Path(args.out), {"args": vars(args)}, []
    out.parent.mkdir(parents=True, exist_ok=True)
    phases = args.phases.split(",")
    if set(phases) - set(PHASES):
        die(2, f"unknown phase(s) {', '.join(sorted(set(phases) - set(PHASES)))}; known: {', '.join(PHASES)}",
            out, res)
    try:
        import torch
    except Exception as e:
        die(2, f"torch does not import: {e}", out, res)
    if not torch.cuda.is_available():
        die(2, "CUDA is not available: run this on the GPU machine", out, res)
    from trtprof.capture.kernels import KernelActivity

    res["device"] = torch.cuda.get_device_name()
    res["versions"] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    dev = torch.device("cuda")
    a = torch.randn(args.size, args.size, device=dev, dtype=torch.half)
    b = torch.randn_like(a)
    host_buf = torch.randn(1 << 18).pin_memory()
    dev_buf = torch.empty_like(host_buf, device=dev)
    caller, side = torch.cuda.current_stream(), torch.cuda.Stream()

    def work():
        c = torch.relu(a @ b)
        dev_buf.copy_(host_buf, non_blocking=True)      # a memcpy HtoD
        return c.sum()

    def calls(n, ev_stream, work_stream, ka=None, sample=0):
        rows = []
        for i in range(n):
            rec = not sample or i % sample == 0
            if sample and rec:
                ka.resume()
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter_ns()
            e0.record(ev_stream)
            work_stream.wait_stream(ev_stream)
            with torch.cuda.stream(work_stream):
                work()
            ev_stream.wait_stream(work_stream)
            e1.record(ev_stream)
            if sample and rec:
                ka.pause()                               # before the GPU is done, as a hook would
            t1 = time.perf_counter_ns()
            torch.cuda.synchronize()
            rows.append((i, e0, e1, rec, t1 - t0))
        return rows

    def analyse(name, ka, clock, rows, ev_stream, expect_by):
        torch.cuda.synchronize()
        recs = ka.flush()
        sid = ka.stream_id(ev_stream.cuda_stream)
        win = {"seq": [r[0] for r in rows], "stream": [sid if sid is not None else -1] * len(rows),
               "start_ns": [clock.host(r[1]) for r in rows], "end_ns": [clock.host(r[2]) for r in rows]}
        ph = summarise(recs, win, [(r[3], r[4]) for r in rows], sid, expect_by,
                       (clock.error_ns + ka.clock["error_ns"]) / 1e3 + 2.0)
        failed.extend(f"{name}: {k}" for k, ok in ph["checks"].items() if not ok)
        res[name] = ph
        return ph

    def save():
        res["failed"] = failed
        out.write_text(json.dumps(res, indent=2, default=str))

    for _ in range(20):                                   # warm up cuBLAS and the allocator first
        work()
    torch.cuda.synchronize()
    ka = KernelActivity()
    if not ka.start():
        die(3, f"KernelActivity did not start: {ka.reason}", out, res)
    try:
        from cupti import cupti
        res["cupti_minus_time_ns_us"] = statistics.median(
            [(cupti.get_timestamp() - time.time_ns()) / 1e3 for _ in range(9)])
    except Exception as e:
        res["cupti_minus_time_ns_us"] = f"{type(e).__name__}: {e}"
    res["clock"] = ka.clock
    res["stream_ids"] = {"caller": ka.stream_id(caller.cuda_stream), "side": ka.stream_id(side.cuda_stream)}
    base = {}

    def same_stream():
        base["kernels"] = analyse("same_stream", ka, Clock(torch), calls(args.calls, caller, caller), caller,
                                  "stream")["median"]["kernels"]

    def engine_stream():
        analyse("engine_stream", ka, Clock(torch), calls(args.calls, caller, side), caller, "time")

    def sampled():
        ka.pause()
        ka.flush()
        clock = Clock(torch)
        t = time.perf_counter_ns()
        ka.resume()
        ka.pause()
        res["resume_pause_us"] = (time.perf_counter_ns() - t) / 1e3
        ph = analyse("sampled", ka, clock, calls(args.calls, caller, caller, ka, args.sample), caller, "stream")
        rec = [p["kernels"] for p in ph["calls"] if p["recorded"]]
        more = {"unrecorded_calls_have_no_kernels": not any(p["kernels"] for p in ph["calls"] if not p["recorded"]),
                "paused_before_gpu_done_keeps_all_kernels": all(k == base.get("kernels", k) for k in rec)}
        ph["checks"].update(more)
        failed.extend(f"sampled: {k}" for k, ok in more.items() if not ok)
        ka.resume()

    def restart():
        kb = KernelActivity()
        if not kb.start():
            res["restart"] = {"started": False, "reason": kb.reason}
            failed.append("restart: started")
            return
        analyse("restart", kb, Clock(torch), calls(10, caller, caller), caller, "stream")
        kb.stop()

    def torch_profiler():
        from torch.profiler import ProfilerActivity, profile
        tp = res["torch_profiler"] = {}
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            calls(3, caller, caller)
            kc = KernelActivity()
            tp["started_inside"], tp["reason"] = kc.start(), kc.reason
            calls(5, caller, caller)
            torch.cuda.synchronize()
            tp["our_records_inside"] = len(kc.stop()["start_ns"])
        cuda_type = getattr(torch.autograd.DeviceType, "CUDA", None)
        tp["profiler_gpu_events"] = sum(1 for e in prof.events() if getattr(e, "device_type", None) == cuda_type)
        kd = KernelActivity()
        tp["started_after"], tp["reason_after"] = kd.start(), kd.reason
        if tp["started_after"]:
            calls(3, caller, caller)
            torch.cuda.synchronize()
            tp["records_after"] = len(kd.stop()["start_ns"])
        tp["checks"] = {"taken_detected": tp["started_inside"] is False,
                        "reason_is_one_line": "\n" not in str(tp["reason"]),
                        "profiler_kept_its_kernels": tp["profiler_gpu_events"] > 0}
        failed.extend(f"torch_profiler: {k}" for k, ok in tp["checks"].items() if not ok)

    def finalize():
        ke = KernelActivity()
        fz = res["finalize"] = {"started": ke.start(), "reason": ke.reason}
        if fz["started"]:
            calls(3, caller, caller)
            torch.cuda.synchronize()
            ke.stop(finalize=True)
            kf = KernelActivity()
            fz["started_after_finalize"], fz["reason_after"] = kf.start(), kf.reason
            if fz["started_after_finalize"]:
                calls(3, caller, caller)
                torch.cuda.synchronize()
                fz["records_after_finalize"] = len(kf.stop()["start_ns"])

    steps = {"same_stream": same_stream, "engine_stream": engine_stream, "sampled": sampled,
             "restart": restart, "torch_profiler": torch_profiler, "finalize": finalize}
    for name, fn in steps.items():
        if name not in phases:
            continue
        if name in ("restart", "torch_profiler", "finalize") and "info_first" not in res:
            res["info_first"] = ka.info()                 # the first source ends before these
            ka.stop()
        try:
            fn()
        except Exception as e:
            res.setdefault(name, {})["error"] = f"{type(e).__name__}: {e}"
            failed.append(f"{name}: raised {type(e).__name__}: {e}")
        save()
    if "info_first" not in res:
        res["info_first"] = ka.info()
        ka.stop()
    save()
    for f in failed:
        print(f"probe_cupti: check failed: {f}", file=sys.stderr)
    print(f"probe_cupti: {len(failed)} failed check(s); written {out}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
