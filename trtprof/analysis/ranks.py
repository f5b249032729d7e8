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


def _ends(df: pd.DataFrame) -> pd.DataFrame:
    """model, inference, end_ns (host end or GPU end, the later) of each top-level inference row."""
    rows = df[(df["event"] == "inference") & (df["inference"] >= 0)]
    he = rows["host_end_ns"].to_numpy(np.float64)
    ge = rows["gpu_end_ns"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    end = np.where(np.isnan(ge), he, np.fmax(he, ge))
    return pd.DataFrame({"model": rows["model"].to_numpy(object), "inference": rows["inference"].to_numpy(np.int64),
                         "end_ns": end}).drop_duplicates(["model", "inference"])


def straggler(latency: dict, ends: dict | None = None) -> pd.DataFrame:
    """Per (model, inference) run by at least two ranks: the fastest and slowest rank's latency, the
    spread between them and, with `ends` (rank -> `_ends` frame on the common clock), the finish skew.

    `latency`: rank -> `latency.inference_latency` rows. Ties go to the lower rank."""
    parts = []
    for r, lat in latency.items():
        ok = lat[~lat["excluded"].astype(bool)] if len(lat) else lat
        if len(ok):
            parts.append(pd.DataFrame({"rank": np.int64(r), "model": ok["model"].to_numpy(object),
                                       "inference": ok["inference"].to_numpy(np.int64),
                                       "latency_ns": ok["latency_ns"].to_numpy(float)}))
    if not parts:
        return pd.DataFrame(columns=STRAGGLER_COLUMNS)
    d = pd.concat(parts, ignore_index=True).drop_duplicates(["rank", "model", "inference"])
    if ends:
        e = pd.concat([v.assign(rank=np.int64(r)) for r, v in ends.items() if len(v)] or
                      [pd.DataFrame(columns=["model", "inference", "end_ns", "rank"])], ignore_index=True)
        d = d.merge(e, on=["rank", "model", "inference"], how="left")
    else:
        d["end_ns"] = np.nan
    d = d.sort_values(["model", "inference", "rank"], kind="stable")
    g = d.groupby(["model", "inference"], sort=False, observed=True)
    n = g["rank"].transform("size")
    d = d[n >= 2]
    if d.empty:
        return pd.DataFrame(columns=STRAGGLER_COLUMNS)
    g = d.groupby(["model", "inference"], sort=False, observed=True)
    lo = d.loc[g["latency_ns"].idxmin()]  # idxmin / idxmax: the first of equal values, the lower rank
    hi = d.loc[g["latency_ns"].idxmax()]
    out = pd.DataFrame({"model": lo["model"].to_numpy(object), "inference": lo["inference"].to_numpy(np.int64),
                        "ranks": g.size().to_numpy(np.int64),
                        "fastest_rank": lo["rank"].to_numpy(np.int64), "slowest_rank": hi["rank"].to_numpy(np.int64),
                        "fastest_ms": lo["latency_ns"].to_numpy(float) / 1e6,
                        "slowest_ms": hi["latency_ns"].to_numpy(float) / 1e6})
    out["spread_ms"] = out["slowest_ms"] - out["fastest_ms"]
    skew = (g["end_ns"].max() - g["end_ns"].min()).to_numpy(float) / 1e6
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
    st = straggler({r: res.latency for r, res in per.items()}, ends)
    subs = [res.subgraphs.assign(rank=np.int64(r)) for r, res in per.items() if len(res.subgraphs)]
    sub = pd.concat(subs, ignore_index=True) if subs else pd.DataFrame(columns=["rank"])
    sub = sub[["rank"] + [c for c in sub.columns if c != "rank"]]
    notes = list(ranks.notes)
    if len(per) < 2:
        notes.append("only one rank could be read: no straggler view")
    return RankResults(per_rank=per, latency=latency_by_rank(per), straggler=st, summary=straggler_summary(st),
                       subgraphs=sub, notes=notes)


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
