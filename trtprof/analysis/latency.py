"""Latency per inference: from the call of the compiled model until both the host returned and the
GPU finished its work; and its median and percentiles per group. Stateless DataFrame -> DataFrame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis import overlap


def dur(d: pd.DataFrame, start: str, end: str) -> pd.Series:
    """end - start as floats (NaN where either is null)."""
    return (d[end].astype("Float64") - d[start].astype("Float64")).astype(float)


def inference_latency(df: pd.DataFrame, infs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per inference: host time, GPU time and latency = from the call until both the host
    returned and the GPU finished its work (the host alone when there are no GPU times)."""
    cols = overlap.KEY + ["mode", "excluded", "input_shapes", "host_ns", "gpu_ns", "latency_ns"]
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
    out = out.merge(infs[overlap.KEY + ["mode", "excluded"]], on=overlap.KEY, how="left")
    out["mode"] = out["mode"].fillna("none")
    out["excluded"] = out["excluded"].fillna(False).astype(bool)
    return out[cols]


def latency_summary(lat: pd.DataFrame, by=("model", "mode")) -> pd.DataFrame:
    """n, median, p10, p90 (ms) of the included inferences per group (groups in sorted order, a
    missing key last; n counts an inference without a latency, the figures leave it out): pandas'
    groupby figures, computed by `_sorted_groups` in a third of the memory (a 100 M-row capture has
    14 M inferences, and pandas' grouping took about 50 bytes each)."""
    by = list(by)
    cols = by + ["n", "median_ms", "p10_ms", "p90_ms"]
    # the columns read, of the included inferences: not a copy of every column
    ok = lat.loc[~lat["excluded"].astype(bool).to_numpy(), by + ["latency_ns"]] if len(lat) else lat
    if ok.empty:
        return pd.DataFrame(columns=cols)
    keys, start, size, count, v = _sorted_groups(ok, by, "latency_ns")
    out = keys.assign(n=size, median_ms=_quantile(v, start, count, 0.5, median=True) / 1e6,
                      p10_ms=_quantile(v, start, count, 0.1) / 1e6, p90_ms=_quantile(v, start, count, 0.9) / 1e6)
    return out[cols]


def _sorted_groups(frame: pd.DataFrame, by: list, value: str):
    """(group keys, first position, rows, non-missing values of each group, the values sorted by
    group then value) of `frame` grouped by `by` as `groupby(by, sort=True, dropna=False,
    observed=True)` groups it: one int64 key per row and one sort, instead of pandas' codes per key."""
    key = np.zeros(len(frame), np.int64)
    for c in by:
        codes, uniques = pd.factorize(frame[c], sort=True, use_na_sentinel=True)
        codes = np.where(codes < 0, len(uniques), codes)  # a missing key: its own group, last
        key *= len(uniques) + 1
        key += codes
        del codes
    vals = frame[value].to_numpy(np.float64, na_value=np.nan)
    order = np.lexsort((vals, key))  # by group, then value (missing values last in their group)
    key, vals = key[order], vals[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    size = np.diff(np.r_[start, len(key)])
    count = np.add.reduceat(~np.isnan(vals), start) if len(start) else np.zeros(0, np.int64)
    keys = frame[by].iloc[order[start]].reset_index(drop=True)
    return keys, start, size, count, vals


def _quantile(v: np.ndarray, start: np.ndarray, count: np.ndarray, q: float, median: bool = False) -> np.ndarray:
    """Per group (its `count` values sorted from `start`), pandas' linear q-quantile (or median:
    the middle value, or the mean of the two middle ones); NaN for a group without values."""
    m = np.maximum(count, 1)
    if median:
        lo, hi = v[start + (m - 1) // 2], v[start + m // 2]
        out = (lo + hi) / 2
    else:
        idx = q * (m - 1)
        below = idx.astype(np.int64)
        above = np.where(below < m - 1, below + 1, below)
        lo, hi = v[start + below], v[start + above]
        out = lo + (hi - lo) * (idx - below)
    return np.where(count > 0, out, np.nan)
