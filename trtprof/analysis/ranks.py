"""A distributed run, rank by rank and across ranks: latency per rank, the straggler view, and each
rank's own analysis (per-subgraph table, allocations, gaps) for the merged report.

The straggler view asks, for every inference index that several ranks ran (ranks of one job run the
same script, so model0's inference 17 is the same step everywhere): how much slower was the slowest
rank than the fastest, and which rank was it? That spread is what a collective after the step, or a
client waiting for every shard, pays. Latency is each rank's own (call until host and GPU are done,
`latency.inference_latency`), so it needs no common clock; the finish skew (latest end minus earliest
end on the common clock, `timeline.ranks`) does, and is shown beside it. Inferences a rank marked
excluded (the first after a pre-alloc flip) are left out for that rank. Stateless: frames in, frames out.
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


def straggler(latency: dict, ends: dict | None = None) -> pd.DataFrame:
    """Per (model, inference) run by at least two ranks: the fastest and slowest rank's latency, the
    spread between them and, with `ends` (rank -> `_ends` frame on the common clock), the finish skew.

    `latency`: rank -> `latency.inference_latency` rows (model as strings or categories). Ties go to
    the lower rank.

    Why arrays rather than a merged, grouped frame: 8 ranks of 1.7 M inferences are 14 M rows, whose
    frame with string models, merged and grouped, takes gigabytes; here a (model, inference) is one
    int64 and the per-rank values numpy columns, about 30 bytes a row. Assumes what
    `inference_latency` gives: a model on every row and a latency on every row (host times always
    exist), so nothing here skips NaN as pandas' idxmin would."""
    ok = {r: lat[~lat["excluded"].astype(bool).to_numpy()] for r, lat in sorted(latency.items()) if len(lat)}
    ok = {r: lat for r, lat in ok.items() if len(lat)}
    if not ok:
        return pd.DataFrame(columns=STRAGGLER_COLUMNS)
    models = sorted(set().union(*(set(pd.unique(lat["model"])) for lat in ok.values())))
    keys, ranks, lats, fins = [], [], [], []
    for r, lat in ok.items():  # in rank order: within a key, the rows stay in rank order
        k, v = _first(_keys(lat["model"], lat["inference"], models), lat["latency_ns"].to_numpy(float))
        end = np.full(len(k), np.nan)
        e = (ends or {}).get(r)
        if e is not None and len(e):
            ek, ev = _first(_keys(e["model"], e["inference"], models), e["end_ns"].to_numpy(float))
            at = np.minimum(np.searchsorted(ek, k), len(ek) - 1)
            hit = ek[at] == k
            end[hit] = ev[at[hit]]
        keys.append(k), lats.append(v), fins.append(end), ranks.append(np.full(len(k), r, np.int64))
    order = np.argsort(np.concatenate(keys), kind="stable")
    key = np.concatenate(keys)[order]
    rank, lat, end = (np.concatenate(a)[order] for a in (ranks, lats, fins))
    del keys, ranks, lats, fins, order
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    if not (sizes >= 2).any():
        return pd.DataFrame(columns=STRAGGLER_COLUMNS)
    pos = np.arange(len(key))
    lo = np.minimum.reduceat(np.where(lat == np.repeat(np.minimum.reduceat(lat, starts), sizes), pos, len(key)), starts)
    hi = np.minimum.reduceat(np.where(lat == np.repeat(np.maximum.reduceat(lat, starts), sizes), pos, len(key)), starts)
    skew = (np.fmax.reduceat(end, starts) - np.fmin.reduceat(end, starts)) / 1e6
    two = sizes >= 2
    lo, hi, skew, first = lo[two], hi[two], skew[two], key[starts[two]]
    out = pd.DataFrame({"model": np.asarray(models, dtype=object)[first >> 32], "inference": first & 0xFFFFFFFF,
                        "ranks": sizes[two].astype(np.int64), "fastest_rank": rank[lo], "slowest_rank": rank[hi],
                        "fastest_ms": lat[lo] / 1e6, "slowest_ms": lat[hi] / 1e6})
    out["spread_ms"] = out["slowest_ms"] - out["fastest_ms"]
    out["finish_skew_ms"] = skew
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
