"""A distributed run, rank by rank and across ranks: latency per rank, the straggler view, and each
rank's own analysis (per-subgraph table, allocations, gaps) for the merged report.

The straggler view asks, for every inference index that several ranks ran (ranks of one job run the
same script, so model0's inference 17 is the same step everywhere): how much slower was the slowest
rank than the fastest, and which rank was it? That spread is what a collective after the step, or a
client waiting for every shard, pays. Latency is each rank's own (call until host and GPU are done,
`latency.inference_latency`), so it needs no common clock; the finish skew (latest end minus earliest
end on the common clock, `timeline.ranks`) does, and is shown beside it. Inferences a rank marked
excluded (the cold start, the first after a pre-alloc flip, ...) are left out for that rank. Stateless: frames in, frames out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trtprof.analysis import report
from trtprof.analysis.latency import latency_summary
from trtprof.timeline.ranks import shifted

STRAGGLER_COLUMNS = ["model", "inference", "ranks", "fastest_rank", "slowest_rank", "fastest_ms", "slowest_ms",
                     "spread_ms", "finish_skew_ms"]
SUMMARY_COLUMNS = ["model", "inferences", "ranks", "median_spread_ms", "p90_spread_ms", "max_spread_ms",
                   "max_spread_inference", "max_spread_rank", "median_finish_skew_ms", "slowest_counts"]


@dataclass
class RankResults:
    """Everything the merged report shows."""
    per_rank: dict  # rank -> report.Results (the single-capture analysis of that rank)
    latency: pd.DataFrame  # rank, model, n, median_ms, p10_ms, p90_ms
    straggler: pd.DataFrame  # STRAGGLER_COLUMNS, one row per (model, inference) run by 2+ ranks
    summary: pd.DataFrame  # SUMMARY_COLUMNS, one row per model
    subgraphs: pd.DataFrame  # rank + the per-subgraph table's columns
    notes: list = field(default_factory=list)
    rows: dict = field(default_factory=dict)  # rank -> rows of its timeline
    readers: dict = field(default_factory=dict)  # rank -> keys -> (rows, allocs, gaps); every rank of a folder opened lazily


def end_times(rows: pd.DataFrame) -> pd.DataFrame:
    """model, inference, end_ns (host end or GPU end, the later) of inference rows, in their order."""
    he = rows["host_end_ns"].to_numpy(np.float64)
    ge = rows["gpu_end_ns"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    end = np.where(np.isnan(ge), he, np.fmax(he, ge))
    return pd.DataFrame({"model": rows["model"].to_numpy(object), "inference": rows["inference"].to_numpy(np.int64),
                         "end_ns": end})


def _ends(df: pd.DataFrame) -> pd.DataFrame:
    """model, inference, end_ns (host end or GPU end, the later) of each top-level inference row."""
    rows = df[(df["event"] == "inference") & (df["inference"] >= 0)]
    return end_times(rows).drop_duplicates(["model", "inference"])


def _keys(model, inference, models: list) -> np.ndarray:
    """One int64 per (model, inference): the model's place in `models` (sorted) above the inference
    number, so keys sort as (model, inference) do; -1 for a model not in `models`."""
    codes = pd.Categorical(model, categories=models).codes.astype(np.int64)
    inference = np.asarray(inference, dtype=np.int64)
    if len(inference) and (inference.min() < 0 or inference.max() >= 2**32):
        raise ValueError("inference numbers past 32 bits: the straggler key cannot hold them")
    key = (codes << 32) | inference
    key[codes < 0] = -1
    return key


def _first(key: np.ndarray, *values) -> tuple:
    """The distinct keys, sorted, and the values of each key's first row (drop_duplicates' keep first)."""
    uniq, first = np.unique(key, return_index=True)
    return (uniq, *(v[first] for v in values))


BLOCK = 1 << 18  # keys of one rank per block of the straggler's merge


def _rank_arrays(lat: pd.DataFrame, ok: np.ndarray, end: pd.DataFrame | None, models: list) -> tuple:
    """One rank's (sorted distinct keys, latency, end on the common clock) of its included inferences
    (`ok`), as numpy columns: the latency frame is masked column by column, never copied whole."""
    k, v = _first(_keys(lat["model"][ok], lat["inference"].to_numpy(np.int64)[ok], models),
                  lat["latency_ns"].to_numpy(float)[ok])
    fin = np.full(len(k), np.nan)
    if end is not None and len(end):
        ek, ev = _first(_keys(end["model"], end["inference"], models), end["end_ns"].to_numpy(float))
        at = np.minimum(np.searchsorted(ek, k), len(ek) - 1)
        hit = ek[at] == k
        fin[hit] = ev[at[hit]]
    return k, v, fin


def _block(parts: list, models: np.ndarray) -> dict | None:
    """The straggler columns of one block: `parts` holds, per rank in rank order, (rank, keys,
    latencies, ends) of the same span of keys."""
    key = np.concatenate([p[1] for p in parts])
    order = np.argsort(key, kind="stable")  # within a key, the rows stay in rank order
    key = key[order]
    rank = np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts])[order]
    lat = np.concatenate([p[2] for p in parts])[order]
    end = np.concatenate([p[3] for p in parts])[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    two = sizes >= 2
    if not two.any():
        return None
    pos = np.arange(len(key))
    lo = np.minimum.reduceat(np.where(lat == np.repeat(np.minimum.reduceat(lat, starts), sizes), pos, len(key)), starts)
    hi = np.minimum.reduceat(np.where(lat == np.repeat(np.maximum.reduceat(lat, starts), sizes), pos, len(key)), starts)
    skew = (np.fmax.reduceat(end, starts) - np.fmin.reduceat(end, starts)) / 1e6
    lo, hi, first = lo[two], hi[two], key[starts[two]]
    return {"model": models[first >> 32], "inference": first & 0xFFFFFFFF, "ranks": sizes[two].astype(np.int64),
            "fastest_rank": rank[lo], "slowest_rank": rank[hi], "fastest_ms": lat[lo] / 1e6,
            "slowest_ms": lat[hi] / 1e6, "finish_skew_ms": skew[two]}


def straggler(latency: dict, ends: dict | None = None, block: int = BLOCK) -> pd.DataFrame:
    """Per (model, inference) run by at least two ranks: the fastest and slowest rank's latency, the
    spread between them and, with `ends` (rank -> `_ends` frame on the common clock), the finish skew.

    `latency`: rank -> `latency.inference_latency` rows (model as strings or categories). Ties go to
    the lower rank.

    Why arrays rather than a merged, grouped frame: 8 ranks of 1.7 M inferences are 14 M rows, whose
    frame with string models, merged and grouped, takes gigabytes; here a (model, inference) is one
    int64 and the per-rank values numpy columns (24 bytes a row), merged a block of keys at a time
    (at most `block` keys of each rank): merging all 14 M rows at once took 1.4 GB more than the
    ranks' own tables (8 x 12.5 M rows, 2026-12-07). Assumes what `inference_latency` gives: a model
    on every row and a latency on every row (host times always exist), so nothing here skips NaN as
    pandas' idxmin would."""
    included = {r: ~lat["excluded"].astype(bool).to_numpy() for r, lat in sorted(latency.items()) if len(lat)}
    included = {r: ok for r, ok in included.items() if ok.any()}
    if not included:
        return pd.DataFrame(columns=STRAGGLER_COLUMNS)
    models = sorted(set().union(*(set(pd.unique(latency[r]["model"][ok])) for r, ok in included.items())))
    per = {r: _rank_arrays(latency[r], ok, (ends or {}).get(r), models) for r, ok in included.items()}
    bounds = np.unique(np.concatenate([k[::block] for k, _, _ in per.values()]))
    names, cols = np.asarray(models, dtype=object), []
    for lo_key, hi_key in zip(bounds, np.r_[bounds[1:], np.iinfo(np.int64).max]):
        parts = []
        for r, (k, v, fin) in per.items():
            a, b = np.searchsorted(k, [lo_key, hi_key])
            if b > a:
                parts.append((r, k[a:b], v[a:b], fin[a:b]))
        got = _block(parts, names) if len(parts) >= 2 else None
        if got is not None:
            cols.append(got)
    if not cols:
        return pd.DataFrame(columns=STRAGGLER_COLUMNS)
    out = pd.DataFrame({c: np.concatenate([b[c] for b in cols]) for c in cols[0]})
    out["spread_ms"] = out["slowest_ms"] - out["fastest_ms"]
    return out[STRAGGLER_COLUMNS].reset_index(drop=True)


def straggler_summary(st: pd.DataFrame) -> pd.DataFrame:
    """Per model: how large the spread is (median, p90, max and where), and how often each rank was
    the slowest (`slowest_counts`: rank -> inferences, the most frequent first)."""
    if st.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = []
    for model, g in st.groupby("model", sort=True, observed=True):
        worst = g.loc[g["spread_ms"].idxmax()]
        counts = g["slowest_rank"].value_counts()
        counts = {int(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
        skew = g["finish_skew_ms"].astype(float)
        rows.append({"model": model, "inferences": len(g), "ranks": int(g["ranks"].max()),
                     "median_spread_ms": float(g["spread_ms"].median()),
                     "p90_spread_ms": float(g["spread_ms"].quantile(0.9)), "max_spread_ms": float(worst["spread_ms"]),
                     "max_spread_inference": int(worst["inference"]), "max_spread_rank": int(worst["slowest_rank"]),
                     "median_finish_skew_ms": float(skew.median()) if skew.notna().any() else float("nan"),
                     "slowest_counts": counts})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def latency_by_rank(per_rank: dict) -> pd.DataFrame:
    """rank, model, n, median_ms, p10_ms, p90_ms over each rank's included inferences."""
    parts = [latency_summary(r.latency, ("model",)).assign(rank=np.int64(k)) for k, r in per_rank.items()]
    cols = ["rank", "model", "n", "median_ms", "p10_ms", "p90_ms"]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def analyse_ranks(ranks, n_boot: int = report.N_BOOT) -> RankResults:
    """`ranks`: a `timeline.ranks.Ranks`. Each rank is analysed on its own (its own clock: the
    single-capture numbers do not depend on the others), the finish skew on the common clock."""
    per = {r: report.analyse(c.timeline, n_boot=n_boot, kernels=c.kernels, meta=c.meta)
           for r, c in ranks.captures.items()}
    ends = {r: _ends(shifted(c.timeline, ranks.offsets.get(r, 0))) for r, c in ranks.captures.items()}
    return combine(ranks, per, ends, {r: len(c.timeline) for r, c in ranks.captures.items()})


def combine(ranks, per: dict, ends: dict, rows: dict) -> RankResults:
    """The merged results from each rank's own analysis (`per`: rank -> report.Results), its
    inference ends on the common clock (`ends`: rank -> `_ends` frame) and its number of rows: what
    the whole load (`analyse_ranks`) and the chunked one (`analysis.ranks_streamed`) share."""
    st = straggler({r: res.latency for r, res in per.items()}, ends)
    subs = [res.subgraphs.assign(rank=np.int64(r)) for r, res in per.items() if len(res.subgraphs)]
    sub = pd.concat(subs, ignore_index=True) if subs else pd.DataFrame(columns=["rank"])
    sub = sub[["rank"] + [c for c in sub.columns if c != "rank"]]
    notes = list(ranks.notes)
    if len(per) < 2:
        notes.append("only one rank could be read: no straggler view")
    return RankResults(per_rank=per, latency=latency_by_rank(per), straggler=st, summary=straggler_summary(st),
                       subgraphs=sub, notes=notes, rows=rows)


def lockstep_check(ranks) -> dict:
    """For a run whose ranks meet after every inference (a barrier, an all-reduce): no rank can start
    inference i+1 before every rank ended inference i, so on a correct common clock every such start
    is after every such end. Returns the pairs checked, the violations, and `min_margin_ns`: the
    smallest start-after-end on the common clock (negative: the worst violation, the clock error it
    shows or a run that does not step together; positive: how tight the check was)."""
    ends = {r: _ends(shifted(c.timeline, ranks.offsets.get(r, 0))) for r, c in ranks.captures.items()}
    starts = {}
    for r, c in ranks.captures.items():
        rows = shifted(c.timeline, ranks.offsets.get(r, 0))
        rows = rows[(rows["event"] == "inference") & (rows["inference"] >= 0)]
        starts[r] = rows.groupby(["model", "inference"], observed=True)["host_start_ns"].min()
    last_end = pd.concat([e.assign(rank=r) for r, e in ends.items()]).groupby(["model", "inference"], observed=True)["end_ns"]
    end_max, n_ranks = last_end.max(), last_end.size()
    checked, bad, margin = 0, 0, float("inf")
    for s in starts.values():
        nxt = s.rename(lambda i: i - 1, level="inference")  # the start of i+1, indexed by i
        both = pd.concat([nxt.rename("start"), end_max.rename("end"), n_ranks.rename("n")], axis=1, join="inner")
        both = both[both["n"] == len(ranks.captures)]
        after = (both["start"] - both["end"]).to_numpy(float)
        checked += len(both)
        bad += int((after < 0).sum())
        margin = min(margin, float(after.min())) if len(after) else margin
    return {"pairs": checked, "violations": bad, "min_margin_ns": margin if checked else None}
