"""Are trtprof's in-process kernel figures (CUPTI) what Nsight Systems sees? (GPU machine)

For BERT-base single-engine ("small") and graph-broken BERT ("breaks"), two runs of
examples/bert_cases.py with the same inputs: `trtprof capture` (kernel activity through CUPTI, in
process) and `trtprof capture --nsys` (CUPTI belongs to nsys there; its report is imported). Per
subgraph, the median per call over the timed inferences (warm-up left out) of trtprof's kernel busy
(union of the call's kernel intervals) and kernel span (first kernel start to last kernel end),
against nsys's busy and span of the same subgraph in the other run. The bar: within 5 %. Two runs are
two processes, so part of any difference is run-to-run variation, not measurement error: each subgraph's
host time per call in both runs (`host_diff_pct`) says how far the runs differed, which is what moves
the span of a launch-bound call (the GPU waits for the host's launches). `--batch 128` makes the
kernels outlast the host's launches (the GPU, not the host, sets the pace), so the spans of the two
runs measure the same thing and the comparison is of the measurement alone. The nsys run turns nsys's
CPU sampling and context-switch trace off (`--nsys-args`), which would slow its host further.

    source .trtbundle/activate.sh
    python3 bench/kernel_accuracy.py --out /tmp/kacc [--cases small breaks] [--runtimes cpp] [--batch 128]

Writes OUT/kernel_accuracy.json and prints one table per case. Exit 0 when every run produced a
comparison, 1 otherwise, 2 without nsys or CUDA.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nsys_accuracy import ITERS, TOLERANCE_PCT, WARMUP, run_capture  # noqa: E402

QUIET_HOST = "--sample=none --cpuctxsw=none"  # nsys's own host work kept to its CUDA and NVTX trace


def _medians(df, busy: str, first: str, last: str):
    import pandas as pd
    t = df[df["event"].isin(["exec", "fallback"]) & (df["inference"] >= WARMUP) & df[busy].notna()]
    t = t.assign(_b=t[busy].astype(float), _s=(t[last] - t[first]).astype(float),
                 _h=(t["host_end_ns"] - t["host_start_ns"]).astype(float))
    g = t.groupby(["subgraph", "subgraph_kind"], sort=False)
    return pd.DataFrame({"calls": g.size(), "busy_us": g["_b"].median() / 1e3, "span_us": g["_s"].median() / 1e3,
                         "host_us": g["_h"].median() / 1e3})


def compare(plain: Path, under_nsys: Path) -> dict:
    import trtprof
    from trtprof.nsys.store import read_import
    from trtprof.timeline.schema import sort_subgraphs

    a = trtprof.load_capture(plain)
    if not a.meta.get("kernels", {}).get("recorded"):
        raise RuntimeError(f"no kernel activity in the plain run: {a.meta.get('kernels')}")
    b = trtprof.load_capture(under_nsys)
    got = read_import(under_nsys)
    if got is None:
        raise RuntimeError("no nsys import in the nsys run")
    nb = b.timeline.merge(got[0], on="seq")
    ma = _medians(a.timeline, "kernel_busy_ns", "kernel_first_ns", "kernel_last_ns")
    mb = _medians(nb, "nsys_busy_ns", "nsys_gpu_start_ns", "nsys_gpu_end_ns")
    m = ma.join(mb, lsuffix="_trtprof", rsuffix="_nsys", how="inner").reset_index()
    m["busy_diff_pct"] = (m["busy_us_trtprof"] - m["busy_us_nsys"]) / m["busy_us_nsys"] * 100
    m["span_diff_pct"] = (m["span_us_trtprof"] - m["span_us_nsys"]) / m["span_us_nsys"] * 100
    # a launch-bound call's span follows the host's launch rate, which the tools slow unequally: the
    # host time per call of the two runs says how far the runs themselves differed
    m["host_diff_pct"] = (m["host_us_trtprof"] - m["host_us_nsys"]) / m["host_us_nsys"] * 100
    m = sort_subgraphs(m, by=("subgraph",))
    rows = m.to_dict(orient="records")
    for r in rows:
        r["within"] = bool(abs(r["busy_diff_pct"]) <= TOLERANCE_PCT and abs(r["span_diff_pct"]) <= TOLERANCE_PCT)
    sb = {k: float(m[f"busy_us_{k}"].sum()) for k in ("trtprof", "nsys")}
    ss = {k: float(m[f"span_us_{k}"].sum()) for k in ("trtprof", "nsys")}
    return {"subgraphs": rows, "kernels_meta": a.meta.get("kernels"),
            "sum_of_medians_us": {"busy": sb, "span": ss,
                                  "busy_diff_pct": (sb["trtprof"] - sb["nsys"]) / sb["nsys"] * 100 if sb["nsys"] else None,
                                  "span_diff_pct": (ss["trtprof"] - ss["nsys"]) / ss["nsys"] * 100 if ss["nsys"] else None},
            "within_5pct": {"subgraphs": int(sum(r["within"] for r in rows)), "of": len(rows)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--cases", nargs="+", default=["small", "breaks"], choices=["small", "breaks"])
    p.add_argument("--runtimes", nargs="+", default=["cpp"], choices=["cpp", "python"])
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--batch", type=int, default=1, help="inputs per inference (bert_cases.py --batch)")
    p.add_argument("--seq", type=int, default=128, help="sequence length (bert_cases.py --seq)")
    p.add_argument("--timeout", type=int, default=200, help="seconds per run (compile included)")
    p.add_argument("--nsys-args", default=QUIET_HOST,
                   help=f"extra nsys profile options of the nsys run (default {QUIET_HOST!r}: no CPU sampling "
                        "and no context-switch trace, which slow the host and so the span of launch-bound calls)")
    a = p.parse_args(argv)
    if shutil.which("nsys") is None:
        print("nsys is not on PATH (source .trtbundle/activate.sh)", file=sys.stderr)
        return 2
    import torch
    if not torch.cuda.is_available():
        print("no CUDA here: this benchmark runs on the GPU machine", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    res = {"machine": torch.cuda.get_device_name(0), "host": platform.node(), "date": time.strftime("%Y-%m-%d"),
           "torch": torch.__version__, "tolerance_pct": TOLERANCE_PCT, "warmup": WARMUP,
           "nsys_args": a.nsys_args, "runs": []}
    ok = True
    for case in a.cases:
        for rt in a.runtimes:
            entry = {"case": case, "runtime": rt, "batch": a.batch, "seq": a.seq}
            folders = {}
            shape = "" if (a.batch, a.seq) == (1, 128) else f"-b{a.batch}s{a.seq}"
            for nsys in (False, True):
                f = a.out / f"{case}{shape}-{rt}-{'nsys' if nsys else 'cupti'}"
                rc, text = run_capture(case, rt, f, a.iters or ITERS[case], a.timeout, nsys=nsys,
                                       extra=("--batch", str(a.batch), "--seq", str(a.seq)), nsys_args=a.nsys_args)
                (a.out / f"{f.name}.log").write_text(text)
                entry[f"exit_{'nsys' if nsys else 'cupti'}"] = rc
                folders[nsys] = f
            try:
                entry.update(compare(folders[False], folders[True]))
                s = entry["sum_of_medians_us"]
                print(f"== {case}/{rt} b{a.batch} s{a.seq}: busy trtprof {s['busy']['trtprof']:.1f} vs nsys {s['busy']['nsys']:.1f} us "
                      f"({s['busy_diff_pct']:+.1f} %), span {s['span']['trtprof']:.1f} vs {s['span']['nsys']:.1f} us "
                      f"({s['span_diff_pct']:+.1f} %); {entry['within_5pct']['subgraphs']} of "
                      f"{entry['within_5pct']['of']} subgraphs within 5 %", flush=True)
            except Exception as e:  # noqa: BLE001 - one failed case must not hide the others
                ok = False
                entry["error"] = f"{type(e).__name__}: {e}"
                print(f"== {case}/{rt}: FAILED: {entry['error']}", flush=True)
            res["runs"].append(entry)
            (a.out / "kernel_accuracy.json").write_text(json.dumps(res, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
