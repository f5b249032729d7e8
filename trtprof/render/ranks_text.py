"""A distributed run in the terminal: one latency line per rank, the straggler line, and (for
`capture`) each rank's per-subgraph table. Data in, text out; every string from a capture goes
through the one escaping rule (`errors.clean`).
"""
from __future__ import annotations

import math

from trtprof.errors import clean
from trtprof.render import summary_text


def _ms(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(v) else f"{v:.3f}"


def where(meta: dict) -> str:
    """'host gpu-1, cuda:0 NVIDIA H200, pid 123': where a rank ran, from its meta.json."""
    info = meta.get("rank") if isinstance(meta.get("rank"), dict) else {}
    dev = info.get("device") if isinstance(info.get("device"), dict) else {}
    parts = [f"host {info.get('host')}" if info.get("host") else ""]
    if dev.get("index") is not None:
        parts.append(f"cuda:{dev['index']} {dev.get('name') or ''}".rstrip())
    elif info:
        parts.append("no CUDA device")
    if meta.get("pid") is not None:
        parts.append(f"pid {meta['pid']}")
    if info.get("local_rank") is not None:
        parts.append(f"local rank {info['local_rank']}")
    return ", ".join(p for p in parts if p)


def straggler_lines(summary) -> list[str]:
    """One line per model: the spread between the slowest and fastest rank, and who was slowest."""
    lines = []
    for s in summary.itertuples(index=False):
        counts = ", ".join(f"rank {r} in {n}" for r, n in list(s.slowest_counts.items())[:4])
        skew = "" if s.median_finish_skew_ms != s.median_finish_skew_ms else \
            f"; finish skew median {_ms(s.median_finish_skew_ms)} ms"
        lines.append(f"straggler {clean(s.model)}: slowest minus fastest rank per inference median "
                     f"{_ms(s.median_spread_ms)} ms, p90 {_ms(s.p90_spread_ms)} ms, max {_ms(s.max_spread_ms)} ms "
                     f"(inference {s.max_spread_inference}, rank {s.max_spread_rank}){skew}; slowest: {counts} "
                     f"of {s.inferences} inferences")
    return lines


def render(ranks, res, subgraphs: bool = True) -> str:
    """`ranks`: timeline.ranks.Ranks; `res`: analysis.ranks.RankResults."""
    lines = [f"{len(ranks.captures)} rank{'s' if len(ranks.captures) != 1 else ''} in {clean(ranks.root)}"
             + (f" (world size {ranks.world_size})" if ranks.world_size else "") + f"; clock: {clean(ranks.clock)}"]
    kernels = False
    for r, cap in ranks.captures.items():
        lat = res.latency[res.latency["rank"] == r]
        status = "" if cap.complete else " (incomplete)"
        head = f"rank {r}{status} ({clean(where(cap.meta))}):"
        if lat.empty:
            lines.append(f"{head} no inference recorded")
        for row in lat.itertuples(index=False):
            lines.append(f"{head} {clean(row.model)} {row.n} inferences, latency median {_ms(row.median_ms)} ms, "
                         f"p10 {_ms(row.p10_ms)}, p90 {_ms(row.p90_ms)}")
            head = " " * len(head)
        if subgraphs:
            table = res.per_rank[r].subgraphs
            text = summary_text.render(table).split("\n")
            lines += ["  " + line for line in (text[:-1] if len(table) else text)]  # the legend once, below
            kernels = kernels or summary_text.has_kernels(table)
    if subgraphs and len(res.subgraphs):
        lines.append(summary_text.legend(kernels))
    lines += straggler_lines(res.summary) or ["straggler: no inference index was run by two ranks"]
    lines += [f"note: {clean(n)}" for n in res.notes]
    return "\n".join(lines)
