"""Latency per inference: from the call of the compiled model until both the host returned and the
GPU finished its work; and its median and percentiles per group. Stateless DataFrame -> DataFrame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis import overlap
from trtprof.analysis.groups import quantiles, sorted_groups


def dur(d: pd.DataFrame, start: str, end: str) -> pd.Series:
    """end - start as floats (NaN where either is null)."""
    return (d[end].astype("Float64") - d[start].astype("Float64")).astype(float)


def inference_latency(df: pd.DataFrame, infs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per inference: host time, GPU time and latency = from the call until both the host
    returned and the GPU finished its work (the host alone when there are no GPU times)."""
    cols = overlap.KEY + ["mode", "excluded", "raised", "input_shapes", "host_ns", "gpu_ns", "latency_ns"]
    rows = df[(df["event"] == "inference") & (df["inference"] >= 0)].drop_duplicates(overlap.KEY)
    if rows.empty:
        return pd.DataFrame(columns=cols)
    hs, he = rows["host_start_ns"].to_numpy(np.int64), rows["host_end_ns"].to_numpy(np.int64)
    gs = rows["gpu_start_ns"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    ge = rows["gpu_end_ns"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    out = rows[overlap.KEY + ["input_shapes"]].reset_index(drop=True)
    out["host_ns"] = (he - hs).astype(float)
    out["gpu_ns"] = ge - gs
    out["latency_ns"] = np.where(np.isnan(ge), he - hs, np.maximum(he, ge) - hs)
    infs = overlap.inferences(df) if infs is None else infs
    out = out.merge(infs[overlap.KEY + ["mode", "excluded", "raised"]], on=overlap.KEY, how="left")
    out["mode"] = out["mode"].fillna("none")
    out["excluded"] = out["excluded"].fillna(False).astype(bool)
    out["raised"] = out["raised"].fillna(False).astype(bool)
    return out[cols]


def latency_summary(lat: pd.DataFrame, by=("model", "mode")) -> pd.DataFrame:
    """n, median, p10, p90 (ms) of the included inferences per group (groups in sorted order, a
    missing key last; n counts an inference without a latency, the figures leave it out): pandas'
    groupby figures, computed by `sorted_groups` in a third of the memory (a 100 M-row capture has
    14 M inferences, and pandas' grouping took about 50 bytes each)."""
    by = list(by)
    cols = by + ["n", "median_ms", "p10_ms", "p90_ms"]
    if not len(lat):
        return pd.DataFrame(columns=cols)
    g = sorted_groups(lat, by, "latency_ns", ~lat["excluded"].astype(bool).to_numpy())
    if not len(g.size):
        return pd.DataFrame(columns=cols)
    v, start, count = g.values, g.start, g.count
    out = g.keys.assign(n=g.size, median_ms=quantiles(v, start, count, 0.5, median=True) / 1e6,
                        p10_ms=quantiles(v, start, count, 0.1) / 1e6, p90_ms=quantiles(v, start, count, 0.9) / 1e6)
    return out[cols]


def _firsts(lat: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(row positions of each model and process's inference 0, row positions of its first inference
    that did not raise: -1 where every one raised) in `lat`. Why past a raised one: Torch-TensorRT sets
    up the engines a failed call never reached on the first call that does reach them, so the cold
    start moves to the first inference that completes."""
    inf = lat["inference"].to_numpy()
    zero = np.flatnonzero(inf == 0)
    first = zero.copy()
    if "raised" not in lat:
        return zero, first
    raised = lat["raised"].to_numpy(bool)
    pids, models = lat["pid"].to_numpy(), lat["model"]
    for i in np.flatnonzero(raised[zero]):  # rare: a first inference that raised
        ok = ~raised & (pids == pids[zero[i]]) & (models == models.iloc[zero[i]]).to_numpy(bool)
        first[i] = np.flatnonzero(ok)[np.argmin(inf[ok])] if ok.any() else -1
    return zero, first


def first_inference_kept(lat: pd.DataFrame) -> tuple[bool, bool]:
    """(a model's first inference is left out, a model's first inference is kept in the statistics):
    the capture follows the cold-start rule, or predates it (both False without an inference 0). "First"
    is the first that did not raise (`_firsts`)."""
    if not len(lat) or "inference" not in lat:
        return False, False
    _, pos = _firsts(lat)
    first = lat["excluded"].to_numpy(bool)[pos[pos >= 0]]
    return bool(first.any()), bool(len(first) and not first.all())


def cold_starts(lat: pd.DataFrame) -> pd.DataFrame:
    """Per model and process whose first inference (index 0) was recorded: the cold start, i.e. that
    inference or, where it raised, the first that did not (`raised`: earlier ones raised; `inference`
    says which, NaN latency where every one raised); its latency, whether it is left out of the
    statistics (captures since the cold-start rule), and the median of the included inferences after
    it. Why apart: the first call sets Torch-TensorRT's engines up lazily, so it is the cold-start
    figure a user asks for, and no sample of the steady state."""
    cols = ["model", "pid", "inference", "latency_ms", "excluded", "raised", "median_ms"]
    if not len(lat) or "inference" not in lat:
        return pd.DataFrame(columns=cols)
    zero, pos = _firsts(lat)
    if not len(zero):
        return pd.DataFrame(columns=cols)
    raised = lat["raised"].to_numpy(bool)[zero] if "raised" in lat else np.zeros(len(zero), dtype=bool)
    # masks, not a copy of the included rows: a 100 M-row capture has 14 M inferences
    kept = ~lat["excluded"].to_numpy(bool)
    pids, v, inf = lat["pid"].to_numpy(), lat["latency_ns"].to_numpy(float), lat["inference"].to_numpy()
    anchor = np.where(pos >= 0, pos, zero)  # the group's inference 0 where none completed
    rows = []
    for i, a in enumerate(anchor):
        m, p, found = lat["model"].iloc[a], pids[a], pos[i] >= 0
        sel = v[kept & (inf > inf[a]) & (lat["model"] == m).to_numpy(bool) & (pids == p)]  # a categorical compares codes
        sel = sel[~np.isnan(sel)]
        rows.append((m, p, int(inf[a]) if found else None, v[a] / 1e6 if found else np.nan,
                     not kept[a] if found else True, bool(raised[i]),
                     float(np.median(sel)) / 1e6 if sel.size and found else np.nan))
    return pd.DataFrame(rows, columns=cols).astype({"model": object})
