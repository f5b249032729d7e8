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


class Groups:
    """Rows grouped as `groupby(by, sort=True, dropna=False, observed=True)` groups them: `keys` (a
    frame, one row per group, the columns' own dtypes), and per group its `start` in `values` (the
    group's values sorted, missing ones last), `size` (rows) and `count` (non-missing values)."""

    def __init__(self, keys, start, size, count, values):
        self.keys, self.start, self.size, self.count, self.values = keys, start, size, count, values

    def sorted_values(self, i: int) -> np.ndarray:
        """Group i's non-missing values in order: a view, not a copy."""
        s = int(self.start[i])
        return self.values[s:s + int(self.count[i])]


def _codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """Codes of a key column in sorted order (a category's order for a categorical, as groupby
    sorts it), -1 for a missing value, and how many distinct values there are."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(), len(col.cat.categories)  # a byte or two a row, no copy
    codes, uniques = pd.factorize(col, sort=True, use_na_sentinel=True)
    return codes, len(uniques)


def sorted_groups(frame: pd.DataFrame, by: list, value: str, mask: np.ndarray | None = None) -> Groups:
    """The rows of `frame` where `mask` holds, grouped by `by` (`Groups`), in about 16 bytes a row
    at the peak: one group key per row in the smallest integer that holds it, a stable sort of the
    keys (a radix sort for 16-bit keys), the values taken in that order, each group's values sorted
    in place. No copy of the frame's columns is made."""
    n = len(frame)
    dims = []
    for c in by:
        codes, k = _codes(frame[c])
        dims.append((codes, k + 1))  # + 1: a missing key, its own group, last
    total = int(np.prod([d for _, d in dims], dtype=object)) + 1  # + 1: rows left out, after all groups
    kt = np.int16 if total < 2**15 else np.int32 if total < 2**31 else np.int64
    key = np.zeros(n, kt)
    for codes, d in dims:
        key *= d
        key += np.where(codes < 0, d - 1, codes).astype(kt, copy=False)
    del dims, codes
    if mask is not None:
        key[~np.asarray(mask, bool)] = total - 1
    order = np.argsort(key, kind="stable")
    key = key[order]
    kept = int(np.searchsorted(key, total - 1)) if mask is not None else n
    key, order = key[:kept], order[:kept]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if kept else np.zeros(0, np.int64)
    del key
    vals = frame[value].to_numpy(np.float64, na_value=np.nan)[order]
    bounds = np.r_[start, kept]
    for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        vals[s:e].sort()  # missing values last, as a sort by group then value puts them
    size = np.diff(bounds)
    count = np.add.reduceat(~np.isnan(vals), start) if len(start) else np.zeros(0, np.int64)
    keys = frame[by].iloc[order[start]].reset_index(drop=True)
    return Groups(keys, start, size, count, vals)


def quantiles(v: np.ndarray, start: np.ndarray, count: np.ndarray, q: float, median: bool = False) -> np.ndarray:
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
