"""bench/clock_drift.py: the slope of the end event's lead over the last kernel end, fitted per
process, on a frame built with a known drift (and rows it must leave out)."""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

_spec = importlib.util.spec_from_file_location("clock_drift", Path(__file__).parent.parent / "bench" / "clock_drift.py")
clock_drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(clock_drift)


def _rows(pid, n, slope_us_per_s, start_ns=10**12):
    t = start_ns + np.arange(n, dtype=np.int64) * 10_000_000  # a call every 10 ms
    last = t + 500_000
    lead_ns = 3_000 + (slope_us_per_s * 1e3 * (t - t[0]) / 1e9).round().astype(np.int64)
    return pd.DataFrame({"pid": pid, "event": "exec", "subgraph_kind": "engine", "host_start_ns": t,
                         "kernel_last_ns": last, "gpu_end_ns": last + lead_ns})


def test_slope_per_process_and_rows_left_out():
    a, b = _rows(1, 200, 2.2), _rows(2, 100, -1.0)
    waited = _rows(1, 5, 0.0).assign(gpu_end_ns=lambda d: d["kernel_last_ns"] + 80_000)  # behind later work
    fallback = _rows(1, 5, 50.0).assign(subgraph_kind="fallback")
    got = {r["pid"]: r for r in clock_drift.drift(pd.concat([a, b, waited, fallback], ignore_index=True))}
    assert got[1]["rows"] == 200 and got[1]["of"] == 205
    assert abs(got[1]["slope_us_per_s"] - 2.2) < 0.01 and abs(got[2]["slope_us_per_s"] + 1.0) < 0.01
    assert got[1]["lead_first_us"] < got[1]["lead_last_us"]
