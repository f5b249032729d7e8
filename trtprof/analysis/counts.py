"""Exact medians from value counts: a column's values kept as (group, value, how many), which
chunks of a capture add up, and the median read off them.

Why counts rather than the values: a per-subgraph median over a 100 M-row capture needs every value
of the group, but the values are integer nanoseconds (and counts) with far fewer distinct values
than rows, so their counts are small, add up exactly across chunks, and give the same median as the
values themselves: the middle value, or the mean of the two middle ones (pandas' and numpy's rule).
The report's per-subgraph table computes its medians this way for a whole frame and for a capture
read in chunks alike, so there is one implementation of them; `Counted` gives a comparison's
medians and bootstrap intervals from counts (`analysis/compare_streamed.py`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def value_counts(frame: pd.DataFrame, keys: list[str], columns) -> pd.DataFrame:
    """Long form: keys..., stat (the column), value, n; NaN values left out, as a median skips them."""
    parts = []
    for c in columns:
        if c not in frame or not len(frame):
            continue
        v = frame[keys + [c]]
        v = v[v[c].notna().to_numpy(bool)]
        if len(v):
            n = v.groupby(keys + [c], sort=False, observed=True).size()
            parts.append(n.reset_index(name="n").rename(columns={c: "value"}).assign(stat=c))
    if not parts:
        return pd.DataFrame({**{k: pd.Series(dtype=object) for k in keys}, "value": pd.Series(dtype=float),
                             "n": pd.Series(dtype="int64"), "stat": pd.Series(dtype=object)})
    out = pd.concat(parts, ignore_index=True)
    out["value"] = out["value"].astype(float)
    return out


def combine(parts: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """Counts of several chunks as one: the same (keys, stat, value) added up."""
    parts = [p for p in parts if len(p)]
    if len(parts) <= 1:
        return parts[0] if parts else value_counts(pd.DataFrame(), keys, [])
    c = pd.concat(parts, ignore_index=True)
    return c.groupby(keys + ["stat", "value"], sort=False, observed=True)["n"].sum().reset_index()


def medians(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per group of `keys` (index), one column per stat: the median of its values."""
    if not len(counts):
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=keys))
    gid, groups = pd.MultiIndex.from_frame(counts[keys + ["stat"]]).factorize()
    v, n = counts["value"].to_numpy(float), counts["n"].to_numpy(np.int64)
    order = np.lexsort((v, gid))
    gid, v, n = gid[order], v[order], n[order]
    cum = np.cumsum(n)
    first = np.r_[True, gid[1:] != gid[:-1]]
    base = (cum - n)[first]  # values before each group
    total = np.add.reduceat(n, np.flatnonzero(first))
    lo = v[np.searchsorted(cum, base + (total - 1) // 2, side="right")]
    hi = v[np.searchsorted(cum, base + total // 2, side="right")]
    med = (lo + hi) / 2  # the middle value when total is odd (lo == hi)
    idx = groups[gid[first]]
    long = pd.DataFrame(list(idx), columns=keys + ["stat"]).assign(median=med)
    return long.pivot(index=keys, columns="stat", values="median")


class Counted:
    """The values a count table holds for one group, in order, without expanding them: what
    `bootstrap.diff_medians` needs of a sample (its size, its q-quantile, its i-th smallest value)
    and gives the figures of the values themselves (numpy's linear quantile, on the two values it
    falls between)."""

    def __init__(self, values, n):
        v, n = np.asarray(values, dtype=float), np.asarray(n, dtype=np.int64)
        keep = ~np.isnan(v) & (n > 0)
        order = np.argsort(v[keep], kind="stable")
        self.values, self.cum = v[keep][order], np.cumsum(n[keep][order])

    def __len__(self) -> int:
        return int(self.cum[-1]) if len(self.cum) else 0

    def order_stat(self, i) -> np.ndarray:
        """The i-th smallest values (0-based; an array of positions)."""
        return self.values[np.searchsorted(self.cum, i, side="right")]


def counted(counts: pd.DataFrame, keys: list[str], stat: str) -> dict:
    """{group key tuple: Counted} of one stat of a count table (`value_counts` long form)."""
    c = counts[counts["stat"] == stat]
    if not len(c):
        return {}
    out = {}
    for key, g in c.groupby(keys, sort=False, observed=True):
        out[key if isinstance(key, tuple) else (key,)] = Counted(g["value"].to_numpy(), g["n"].to_numpy())
    return out
