"""Per-subgraph summary of a timeline: the numbers `trtprof capture` prints at the end.

Stateless DataFrame -> DataFrame, like HTA's analyzers: no I/O, no printing. Rows marked `exclude`
are left out of the medians (they are counted in `calls`).
"""
from __future__ import annotations

import pandas as pd

COLUMNS = ["model", "subgraph", "kind", "runtime", "calls", "gpu_ms_median", "host_ms_median",
           "alloc_us_median", "allocs_before_exec", "allocs_after_enqueue", "calls_preallocated",
           "calls_new_outputs", "shape_changes"]


def _median_ms(start: pd.Series, end: pd.Series) -> float:
    d = (end - start).dropna()
    return float(d.median()) / 1e6 if len(d) else float("nan")


def by_subgraph(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, subgraph): calls, median GPU/host time, allocations, shape changes."""
    out = []
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    keep = ~df["exclude"].fillna(False).astype(bool)
    for (model, sub), g in df.groupby(["model", "subgraph"], sort=False, dropna=False):
        kind = g["subgraph_kind"].iloc[0]
        kind = kind if isinstance(kind, str) else "unknown"  # a frame built in memory may hold nulls
        sub = sub if isinstance(sub, str) else ""
        main_event = {"engine": "call", "fallback": "fallback", "model": "inference"}.get(kind, "call")
        calls = g[g["event"] == main_event]
        timed = g[(g["event"] == ("exec" if kind == "engine" else main_event)) & keep.loc[g.index]]
        allocs = g[(g["event"] == "alloc") & keep.loc[g.index]]
        out.append({
            "model": model, "subgraph": sub, "kind": kind, "runtime": g["runtime"].iloc[0],
            "calls": len(calls),
            "gpu_ms_median": _median_ms(timed["gpu_start_ns"].astype("Float64"), timed["gpu_end_ns"].astype("Float64")),
            "host_ms_median": _median_ms(calls["host_start_ns"], calls["host_end_ns"]),
            "alloc_us_median": _median_ms(allocs["host_start_ns"], allocs["host_end_ns"]) * 1e3,
            "allocs_before_exec": int((allocs["alloc_phase"] == "before_exec").sum()),
            "allocs_after_enqueue": int((allocs["alloc_phase"] == "after_enqueue").sum()),
            "calls_preallocated": int((calls["outputs"] == "preallocated").sum()),
            "calls_new_outputs": int((calls["outputs"] == "new").sum()),
            "shape_changes": int(calls["shape_changed"].fillna(False).astype(bool).sum()),
        })
    res = pd.DataFrame(out, columns=COLUMNS)
    order = {"model": 0, "engine": 1, "fallback": 1}
    res["_o"] = res["kind"].map(order).fillna(2)
    res["_n"] = res["subgraph"].str.extract(r"_(\d+)$", expand=False).astype(float)
    return res.sort_values(["model", "_o", "_n", "subgraph"]).drop(columns=["_o", "_n"]).reset_index(drop=True)
