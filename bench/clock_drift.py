#!/usr/bin/env python3
"""Benchmark: how far a capture's CUDA-event times drift from its CUPTI kernel times over the run.

Why: event times are converted to the host clock from one anchor (moved only where the GPU is idle,
`capture/events.py`), CUPTI's kernel times with a measured offset. An engine call's end event is
recorded right after its last kernel on the same stream, so on GPU-paced work (the GPU never waits
for the host) it completes a few microseconds after that kernel ends: its lead over the last kernel
end is nearly constant, and a slope in it over the run is the drift of the event conversion. This
reads the engine `exec` rows with kernels, keeps the leads under `--max-lead-us` (calls where the end
event did not wait behind later work), and fits the lead against the row's host start by least
squares, per process.

    python3 bench/clock_drift.py CAPTURE [--json out.json]

Prints per process: rows used, the run's length, the lead's median at the start and end tenth,
the slope (us per second), and the capture's own `gpu_clock_drift` block (fresh anchors taken).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # trtprof from this tree


def drift(df, max_lead_us: float = 20.0) -> list[dict]:
    import numpy as np

    ex = df[(df["event"] == "exec") & (df["subgraph_kind"] == "engine") & df["gpu_end_ns"].notna()
            & df["kernel_last_ns"].notna()]
    out = []
    for pid, g in ex.groupby("pid", sort=True):
        t = g["host_start_ns"].to_numpy(np.int64)
        lead = (g["gpu_end_ns"].to_numpy(np.int64) - g["kernel_last_ns"].to_numpy(np.int64)) / 1e3
        keep = (lead >= 0) & (lead < max_lead_us)
        t, lead = t[keep], lead[keep]
        row = {"pid": int(pid), "rows": int(len(t)), "of": int(len(g))}
        if len(t) >= 10:
            s = (t - t[0]) / 1e9
            order = np.argsort(s, kind="stable")
            s, lead = s[order], lead[order]
            tenth = max(len(s) // 10, 1)
            slope, icpt = np.polyfit(s, lead, 1)
            row.update(seconds=round(float(s[-1]), 3), lead_first_us=round(float(np.median(lead[:tenth])), 3),
                       lead_last_us=round(float(np.median(lead[-tenth:])), 3), slope_us_per_s=round(float(slope), 3))
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: python3 bench/clock_drift.py out/cap --json drift.json")
    ap.add_argument("capture")
    ap.add_argument("--max-lead-us", type=float, default=20.0)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import trtprof

    cap = trtprof.load_capture(a.capture)
    res = {"capture": a.capture, "per_process": drift(cap.timeline, a.max_lead_us),
           "gpu_clock_drift": cap.meta.get("gpu_clock_drift"),
           "machine": (cap.meta.get("environment") or {}).get("gpu")}
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
