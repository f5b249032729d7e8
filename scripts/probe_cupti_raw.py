"""Device probe for the raw CUPTI handover (trtprof/capture/cupti_raw.py) beside cupti-python's own: the
same workload of small kernels under KernelActivity(handover=...), one process per run, then checks.

    source .trtbundle/activate.sh && python3 scripts/probe_cupti_raw.py --out reports/probe_cupti_raw.json

Why: cupti-python's callback interface cost 70-110 us a record on the H200 (docs/measurements.md); the
raw path reads CUPTI's buffers with numpy instead. This says what it costs there, and whether its records
are right: counts and names that must come out, and attribution to CUDA-event windows.

Runs (separate processes, so that no CUPTI state carries over from one to the next):
  raw        the raw path, trtprof's 64 MB buffers, drained by one forced flush at the end
  python     cupti-python's path, the same
  raw-small  the raw path with 256 KB buffers: many buffers, handed over on CUPTI's own thread as they fill
Per iteration: OPS single-kernel ops on a preallocated 4096-float tensor (add, relu_, mul_, sub_) and one
pinned host-to-device copy between two CUDA events, synchronized. Per run: records, handover time per record
(time inside activity_flush_all plus callbacks on CUPTI's thread, over records) and callback time per
record, the loop's time per iteration, kernels and copies per event window (trtprof.timeline.kernels.
attribute), the kernel names of a window. Checks: the path asked for ran, every window has OPS kernels and
1 copy, nothing outside the windows, nothing dropped, no callback error, the same kernel names (in the same
order) in every window and in every run. The whole probe keeps to --budget seconds; any failure is
written into the JSON. Exit: 0 all checks passed, 1 a check failed or a run failed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

OPS = 4                 # kernels per iteration: add, relu_, mul_, sub_
RUNS = {"raw": ("raw", None), "python": ("python", None), "raw-small": ("raw", 256 << 10)}


def child(run: str, iters: int) -> dict:
    """One run in this process: the workload under KernelActivity, the records attributed to windows."""
    import torch

    from probe_cupti import Clock
    from trtprof.capture import cupti_raw
    from trtprof.capture.kernels import KernelActivity
    from trtprof.timeline.kernels import attribute
    if not torch.cuda.is_available():
        return {"error": "CUDA is not available"}
    path, buffer_bytes = RUNS[run]
    res = {"run": run, "device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "versions": _versions()}
    a = torch.randn(4096, device="cuda")
    b, c, dst = torch.randn_like(a), torch.empty_like(a), torch.empty_like(a)
    host = torch.randn(4096).pin_memory()

    def step():
        torch.add(a, b, out=c)
        c.relu_()
        c.mul_(2.0)
        c.sub_(a)
        dst.copy_(host, non_blocking=True)
    for _ in range(50):                              # lazy initialisation happens before CUPTI starts
        step()
    torch.cuda.synchronize()
    ka = KernelActivity(handover=path, buffer_bytes=buffer_bytes)
    if not ka.start():
        return dict(res, error=f"KernelActivity did not start: {ka.reason}")
    res["mapped_libcupti"] = cupti_raw.mapped()
    clock = Clock(torch)
    events = []
    t0 = time.perf_counter_ns()
    for _ in range(iters):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        step()
        e1.record()
        torch.cuda.synchronize()
        events.append((e0, e1))
    res["loop_us_per_iter"] = (time.perf_counter_ns() - t0) / 1e3 / iters
    recs = ka.flush()
    info = ka.info()
    ka.stop()
    res["info"] = info
    sid = ka.stream_id(torch.cuda.current_stream().cuda_stream)
    win = {"seq": list(range(iters)), "stream": [sid if sid is not None else -1] * iters,
           "start_ns": [clock.host(e0) for e0, _ in events], "end_ns": [clock.host(e1) for _, e1 in events]}
    att = attribute(recs, win)
    res.update(_per_window(recs, att), records={k: int((recs["kind"] == k).sum()) for k in ("kernel", "memcpy")},
               counts=att.counts)
    h, n = info["handover"], max(1, info["handover"]["records"])
    res["handover_us_per_record"] = (h["flush_ns"] + h["cupti_thread_ns"]) / 1e3 / n
    res["callback_us_per_record"] = h["callback_ns"] / 1e3 / n
    return res


def _per_window(recs, att) -> dict:
    """Histograms of kernels and copies per window, and the distinct kernel-name sequences of windows."""
    from collections import Counter
    rows = att.rows
    seqs = Counter()
    kern = recs["kind"] == "kernel"
    order = recs["start_ns"].argsort(kind="stable")
    by_window: dict = {}
    for i in order.tolist():
        if kern[i] and att.index[i] >= 0:
            by_window.setdefault(int(att.index[i]), []).append(recs["name"][i])
    for names in by_window.values():
        seqs[tuple(names)] += 1
    return {"kernels_per_window": dict(Counter(str(int(v)) for v in rows.kernel_count.tolist())),
            "copies_per_window": dict(Counter(str(int(v)) for v in rows.copy_count.tolist())),
            "name_sequences": [[list(s), n] for s, n in seqs.most_common(3)], "distinct_sequences": len(seqs)}


def _versions() -> dict:
    from importlib import metadata
    out = {}
    for dist in ("cupti-python", "nvidia-cuda-cupti", "nvidia-cuda-cupti-cu13", "cuda-bindings"):
        try:
            out[dist] = metadata.version(dist)
        except Exception:
            pass
    return out


def compare(runs: dict, iters: int) -> dict:
    """Checks and the cost comparison from the runs' results (pure: the CPU tests run it)."""
    checks, seqs = {}, {}
    for run, r in runs.items():
        if "error" in r:
            checks[f"{run}: ran"] = False
            continue
        h = r["info"]["handover"]
        checks[f"{run}: path"] = h["path"] == RUNS[run][0]
        checks[f"{run}: kernels_per_window"] = r["kernels_per_window"] == {str(OPS): iters}
        checks[f"{run}: copies_per_window"] = r["copies_per_window"] == {"1": iters}
        checks[f"{run}: nothing_outside"] = r["counts"]["outside"] == 0 and r["records"]["kernel"] == OPS * iters
        checks[f"{run}: nothing_dropped"] = r["info"]["dropped"] == 0 and not h.get("cupti_dropped")
        checks[f"{run}: no_callback_errors"] = r["info"]["callback_errors"] == 0
        checks[f"{run}: one_name_sequence"] = r["distinct_sequences"] == 1
        if r["name_sequences"]:
            seqs[run] = r["name_sequences"][0][0]
    if len(seqs) > 1:
        checks["names_agree_across_runs"] = len({tuple(s) for s in seqs.values()}) == 1
    cost = {run: {"handover_us_per_record": r.get("handover_us_per_record"),
                  "callback_us_per_record": r.get("callback_us_per_record"),
                  "loop_us_per_iter": r.get("loop_us_per_iter")} for run, r in runs.items() if "error" not in r}
    if cost.get("raw", {}).get("handover_us_per_record") and cost.get("python", {}).get("handover_us_per_record"):
        cost["python_over_raw"] = cost["python"]["handover_us_per_record"] / cost["raw"]["handover_us_per_record"]
    return {"checks": checks, "failed": [k for k, ok in checks.items() if not ok], "cost": cost}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="JSON file to write (the parent's)")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--budget", type=float, default=110.0, help="seconds for the whole probe")
    ap.add_argument("--child", choices=sorted(RUNS), help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        try:
            r = child(args.child, args.iters)
        except Exception as e:
            r = {"run": args.child, "error": f"{type(e).__name__}: {e}"}
        Path(args.child_out).write_text(json.dumps(r, default=str))
        return 0
    if not args.out:
        ap.error("--out is required")
    deadline = time.monotonic() + args.budget
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = {"args": vars(args), "runs": {}}
    runs = [r for r in args.runs.split(",") if r]
    for run in runs:
        left = deadline - time.monotonic()
        if run not in RUNS or left < 10:
            res["runs"][run] = {"error": "unknown run" if run not in RUNS else "no time left"}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "run.json"
            t0 = time.monotonic()
            try:
                p = subprocess.run([sys.executable, __file__, "--child", run, "--iters", str(args.iters),
                                    "--child-out", str(f)], capture_output=True, text=True, timeout=left - 2)
                r = json.loads(f.read_text()) if f.exists() else \
                    {"error": f"exit {p.returncode} without a result: {p.stderr.strip()[-1500:]}"}
                if p.returncode:
                    r.setdefault("error", f"exit {p.returncode}: {p.stderr.strip()[-1500:]}")
            except subprocess.TimeoutExpired:
                r = {"error": f"timed out after {left - 2:.0f} s"}
            except Exception as e:
                r = {"error": f"{type(e).__name__}: {e}"}
            r["wall_s"] = round(time.monotonic() - t0, 1)
        res["runs"][run] = r
        print(f"probe_cupti_raw: {run}: " + json.dumps({k: r.get(k) for k in (
            "error", "records", "handover_us_per_record", "callback_us_per_record", "loop_us_per_iter",
            "kernels_per_window", "wall_s")}), file=sys.stderr, flush=True)
        out.write_text(json.dumps(res, indent=1, default=str))
    res.update(compare(res["runs"], args.iters))
    out.write_text(json.dumps(res, indent=1, default=str))
    for f in res["failed"]:
        print(f"probe_cupti_raw: check failed: {f}", file=sys.stderr)
    print(f"probe_cupti_raw: cost {json.dumps(res['cost'])}", file=sys.stderr)
    print(f"probe_cupti_raw: {len(res['failed'])} failed check(s); written {out}", file=sys.stderr)
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
