"""How close are trtprof's CUDA-event GPU times to the kernel times Nsight Systems sees? (GPU machine)

For BERT-base single-engine ("small") and graph-broken BERT ("breaks": GELU left to PyTorch, one
fallback per layer), runs `trtprof capture --nsys` on examples/bert_cases.py (the capture is imported
automatically), then compares per subgraph, median per call over the timed inferences (warm-up left
out): CUDA-event GPU time against nsys's GPU busy time (union of the call's kernels) and span (first
kernel start to last kernel end). The issue's bar: within 5 % of the kernel time.

    source .trtbundle/activate.sh
    python3 bench/nsys_accuracy.py --out /tmp/acc                 # small and breaks, C++ runtime
    python3 bench/nsys_accuracy.py --out /tmp/acc --runtimes cpp python --cases small

Prints one table per run and writes OUT/nsys_accuracy.json. Every run is time-boxed (its whole process
group is killed at the limit); a run that fails is reported and the others go on. Exit code: 0 when
every run produced a comparison, 1 otherwise, 2 without nsys or CUDA. Note what is compared: the
events bracket the call on its stream, so they include the GPU's wait for the host to launch the
first kernel (lead) and for the end event (tail); busy excludes gaps between kernels too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOLERANCE_PCT = 5.0
ITERS = {"small": 200, "breaks": 100}
WARMUP = 20


def run_capture(case: str, runtime: str, out: Path, iters: int, timeout: int, nsys: bool = True,
                extra: tuple = (), nsys_args: str = "") -> tuple[int | None, str]:
    under = ["--nsys", *(["--nsys-args", nsys_args] if nsys_args else [])] if nsys else []
    cmd = [sys.executable, "-m", "trtprof", "capture", *under, "--no-report", "-o", str(out),
           str(ROOT / "examples" / "bert_cases.py"), case, "--iters", str(iters), "--warmup", str(WARMUP), *extra]
    if runtime == "python":
        cmd.append("--python-runtime")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    print(f"$ {' '.join(cmd)}", flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         start_new_session=True)  # its own group: nsys and the python under it die together
    try:
        text, _ = p.communicate(timeout=timeout)
        return p.returncode, text
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        text, _ = p.communicate()
        return None, (text or "") + f"\n[killed after {timeout} s]"


def compare_run(folder: Path) -> dict:
    import trtprof
    from trtprof.nsys.join import compare
    from trtprof.nsys.store import read_import

    cap = trtprof.load_capture(folder)
    got = read_import(folder)
    if got is None:
        raise RuntimeError("no nsys import in the capture (nsys.parquet missing): see the run's output")
    rows, summary = got
    df = cap.timeline[cap.timeline["inference"] >= WARMUP]  # the timed loop only
    cmp_ = compare(df, rows)
    if cmp_.empty:
        raise RuntimeError("no call has both CUDA-event times and nsys kernels")
    parts = cmp_[cmp_["kind"] != "model"]
    ev, busy, span = parts["event_us"].sum(), parts["busy_us"].sum(), parts["span_us"].sum()
    subgraphs = cmp_.to_dict(orient="records")
    for r in subgraphs:
        r["within"] = bool(abs(r["diff_busy_pct"]) <= TOLERANCE_PCT)
    keys = ("rows", "matched_nvtx", "matched_window", "unmatched", "nsys_ranges", "nsys_ranges_unmatched",
            "clock", "start_spread", "end_spread", "notes")
    return {"import": {k: summary.get(k) for k in keys}, "subgraphs": subgraphs,
            "sum_of_medians_us": {"events": ev, "busy": busy, "span": span,
                                  "diff_busy_pct": (ev - busy) / busy * 100 if busy else None,
                                  "diff_span_pct": (ev - span) / span * 100 if span else None},
            "within_5pct": {"subgraphs": int(sum(r["within"] for r in subgraphs if r["kind"] != "model")),
                            "of": int(len(parts)),
                            "sum": bool(busy and abs(ev - busy) / busy * 100 <= TOLERANCE_PCT)}}


def show(case: str, runtime: str, res: dict) -> None:
    imp = res["import"]
    print(f"\n== {case} / {runtime}: {imp['matched_nvtx']} of {imp['rows']} rows paired, start spread "
          f"{imp['start_spread'].get('mad_ns', float('nan')) / 1e3:.2f} us MAD")
    print(f"  {'subgraph':<18}{'kind':<9}{'calls':>6}{'events':>9}{'busy':>9}{'span':>9}{'ev-busy':>9}"
          f"{'ev-span':>9}{'lead':>8}{'tail':>8}  within 5 %")
    for r in res["subgraphs"]:
        print(f"  {str(r['subgraph'])[:17]:<18}{r['kind']:<9}{r['calls']:>6}{r['event_us']:>9.1f}{r['busy_us']:>9.1f}"
              f"{r['span_us']:>9.1f}{r['diff_busy_pct']:>8.1f}%{r['diff_span_pct']:>8.1f}%{r['lead_us']:>8.1f}"
              f"{r['tail_us']:>8.1f}  {'yes' if r['within'] else 'NO'}")
    s, w = res["sum_of_medians_us"], res["within_5pct"]
    print(f"  engines+fallbacks, sum of medians: events {s['events']:.1f} us, busy {s['busy']:.1f} us "
          f"({s['diff_busy_pct']:+.1f} %), span {s['span']:.1f} us ({s['diff_span_pct']:+.1f} %); "
          f"{w['subgraphs']} of {w['of']} subgraphs within 5 %")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--cases", nargs="+", default=["small", "breaks"], choices=["small", "breaks"])
    p.add_argument("--runtimes", nargs="+", default=["cpp"], choices=["cpp", "python"])
    p.add_argument("--iters", type=int, default=None, help="inferences per run (default: small 200, breaks 100)")
    p.add_argument("--timeout", type=int, default=280, help="seconds per run (compile included)")
    a = p.parse_args(argv)
    if shutil.which("nsys") is None:
        print("nsys is not on PATH (source .trtbundle/activate.sh): nothing to measure", file=sys.stderr)
        return 2
    import torch
    if not torch.cuda.is_available():
        print("no CUDA here: this benchmark runs on the GPU machine", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    results, ok = [], True
    for case in a.cases:
        for rt in a.runtimes:
            folder = a.out / f"{case}-{rt}-{time.strftime('%H%M%S')}"
            t0 = time.monotonic()
            rc, text = run_capture(case, rt, folder, a.iters or ITERS[case], a.timeout)
            (a.out / f"{folder.name}.log").write_text(text)
            entry = {"case": case, "runtime": rt, "capture": str(folder), "exit_code": rc,
                     "seconds": round(time.monotonic() - t0, 1)}
            try:
                if rc != 0:
                    raise RuntimeError(f"capture exit code {rc}; last lines: " + " | ".join(text.strip().splitlines()[-3:]))
                entry.update(compare_run(folder))
                show(case, rt, entry)
            except Exception as e:  # noqa: BLE001 - one failed run must not hide the others
                ok = False
                entry["error"] = f"{type(e).__name__}: {e}"
                print(f"\n== {case} / {rt}: FAILED: {entry['error']}", flush=True)
            results.append(entry)
            (a.out / "nsys_accuracy.json").write_text(json.dumps({"tolerance_pct": TOLERANCE_PCT, "warmup": WARMUP,
                                                                  "runs": results}, indent=2, default=str))
    print(f"\nwritten: {a.out / 'nsys_accuracy.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
