"""Rows grouped by a few key columns without copying the table: one small integer key per row.

Why: the per-inference tables of a 100 M-row capture hold 14 M rows, and pandas' groupby took about
50 bytes a row for its codes and sorts; these take 2 to 16 (`latency.latency_summary`,
`prealloc.compare_modes`, `recommend`, `overlap.gap_summary`). The groups, their order and their
figures are pandas' (tests/test_latency_groups.py holds them to it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


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


def _codes(col: pd.Series) -> tuple[np.ndarray, int, object]:
    """Codes of a key column in sorted order (a category's order for a categorical, as groupby
    sorts it), -1 for a missing value, how many distinct values there are, and a function from
    codes back to a column of the key's own dtype."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats, dtype = col.cat.categories, col.dtype
        return (col.cat.codes.to_numpy(), len(cats),  # a byte or two a row, no copy
                lambda c: pd.Categorical.from_codes(c, dtype=dtype))
    codes, uniques = pd.factorize(col, sort=True, use_na_sentinel=True)
    return codes, len(uniques), lambda c: uniques.take(c, allow_fill=True)


def _key(frame: pd.DataFrame, by: list, spare: int = 0):
    """(one group key per row in the smallest integer that holds it, each column's (count of values
    + 1, codes -> column), how many keys there are): a missing value is its own code, after the
    others; `spare` keys are kept free after all groups."""
    dims = []
    for c in by:
        codes, k, back = _codes(frame[c])
        dims.append((codes, k + 1, back))  # + 1: a missing key, its own group, last
    total = int(np.prod([d for _, d, _ in dims], dtype=object)) + spare
    kt = np.int16 if total < 2**15 else np.int32 if total < 2**31 else np.int64
    key = np.zeros(len(frame), kt)
    for codes, d, _ in dims:
        key *= d
        key += np.where(codes < 0, d - 1, codes).astype(kt, copy=False)
    return key, [(d, back) for _, d, back in dims], total


def group_sizes(frame: pd.DataFrame, by: list, mask: np.ndarray | None = None) -> pd.DataFrame:
    """`frame[mask].groupby(by, observed=True).size()` as a frame (the keys, then `size`): groups
    with a missing key left out, in sorted order. Counted on one small integer key per row: no copy
    of the table's columns (a 100 M-row capture's 14 M inferences)."""
    key, dims, _ = _key(frame, by)
    if mask is not None:
        key = key[np.asarray(mask, bool)]
    present = np.unique(key)
    sizes = np.bincount(np.searchsorted(present, key), minlength=len(present)) if len(key) else np.zeros(0, np.int64)
    del key
    out, rest, complete = {}, present.astype(np.int64), np.ones(len(present), bool)
    for c, (d, _) in reversed(list(zip(by, dims))):
        code = rest % d
        rest //= d
        complete &= code < d - 1
        out[c] = code
    keep = np.flatnonzero(complete)
    cols = {c: back(out[c][keep]) for c, (_, back) in zip(by, dims)}
    return pd.DataFrame({**cols, "size": sizes[keep].astype(np.int64)})


def sorted_groups(frame: pd.DataFrame, by: list, value: str, mask: np.ndarray | None = None) -> Groups:
    """The rows of `frame` where `mask` holds, grouped by `by` (`Groups`), in about 16 bytes a row
    at the peak: one group key per row in the smallest integer that holds it, a stable sort of the
    keys (a radix sort for 16-bit keys), the values taken in that order, each group's values sorted
    in place. No copy of the frame's columns is made."""
    n = len(frame)
    key, _, total = _key(frame, by, spare=1)  # the spare key: rows left out, sorted after all groups
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
