"""The merged report's timeline: one group of host and GPU lanes per rank, on one clock.

Why built from each rank's own figure (`timeline_fig.timeline_figure`): the lanes, colours and hover
texts of a rank are exactly those of its single-capture report; here each rank's lanes get a
"rank N" prefix and its marks are moved by the rank's place on the common clock (the offset of
`timeline.ranks`, plus where its window starts), so one x axis holds every rank.

The same inference indices are drawn for every rank: a window around the inference with the
largest spread between ranks, so the straggler is on screen.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis.overlap import KEY
from trtprof.render import timeline_fig
from trtprof.render.figures import Fig, esc, layout


def _centre(res) -> tuple[str | None, int | None, str]:
    """(model, inference) to centre on, and why."""
    s = res.summary
    if len(s):
        top = s.sort_values("inferences", ascending=False, kind="stable").iloc[0]
        return top["model"], int(top["max_spread_inference"]), (
            f"around inference {int(top['max_spread_inference'])}, where the ranks differed most "
            f"(rank {int(top['max_spread_rank'])} slowest, by {top['max_spread_ms']:.3f} ms)")
    for r in res.per_rank.values():
        if len(r.latency):
            m = r.latency["model"].astype(object).value_counts().index[0]  # categories: as strings count
            return m, int(r.latency.loc[r.latency["model"] == m, "inference"].min()), "from the first inference"
    return None, None, "no inference recorded"


def _window(infs: pd.DataFrame, model, centre: int, size: int) -> tuple[pd.DataFrame, int]:
    mine = infs[infs["model"] == model].sort_values("inference", kind="stable")
    if mine.empty:
        return mine[KEY], 0
    idx = mine["inference"].to_numpy(np.int64)
    pos = int(np.searchsorted(idx, centre))
    pos = min(pos, len(idx) - 1)
    lo = max(0, min(pos - size // 2, len(idx) - size))
    win = mine.iloc[lo:lo + size][KEY].reset_index(drop=True)
    return win, pos - lo


def _moved(trace: dict, rank: int, shift_ms: float, seen: set) -> dict:
    t = dict(trace)
    t["y"] = [f"rank {rank} \u00b7 {y}" for y in t.get("y", [])]
    key = "base" if t.get("type") == "bar" else "x"
    if key in t:
        t[key] = np.asarray(t[key], dtype=float) + shift_ms
    if isinstance(t.get("hovertext"), list):
        t["hovertext"] = [f"rank {rank} \u00b7 {h}" for h in t["hovertext"]]
    name = t.get("name")
    t["legendgroup"] = name
    t["showlegend"] = name not in seen
    seen.add(name)
    return t


def windows(res, size: int = timeline_fig.WINDOW) -> tuple[str | None, str, dict]:
    """(model, why, rank -> (window keys, position of the centre)): the inferences each rank draws."""
    model, centre, why = _centre(res)
    out = {}
    if model is None:
        return None, why, out
    for r, rr in res.per_rank.items():
        win, pos = _window(rr.infs, model, centre, size)
        if not win.empty:
            out[r] = (win, pos)
    return model, why, out


def figure(ranks, res, size: int = timeline_fig.WINDOW, rows: dict | None = None) -> Fig | None:
    """The figure, or None when no rank recorded an inference. `ranks`: timeline.ranks.Ranks;
    `res`: analysis.ranks.RankResults; `rows`: rank -> (rows, allocations, gaps) of its window
    (`analysis.ranks_streamed.window_rows`) where the ranks' timelines are not loaded whole."""
    model, why, wins = windows(res, size)
    if model is None:
        return None
    built = []
    for r, cap in ranks.captures.items():
        if r not in wins:
            continue
        win, pos = wins[r]
        rr = res.per_rank[r]
        df, allocs, gaps = rows[r] if rows is not None else (cap.timeline, rr.allocs, rr.gaps)
        mine = df.merge(win, on=KEY)
        if mine.empty:
            continue
        fig = timeline_fig.timeline_figure(df, win, pos, why, allocs, gaps, rr.streams)
        t0 = int(mine["host_start_ns"].min()) + ranks.offsets.get(r, 0)
        built.append((r, fig, t0))
    if not built:
        return None
    origin = min(t0 for _, _, t0 in built)
    out, seen, lanes, x0, x1 = Fig(), set(), [], None, None
    for r, fig, t0 in built:
        shift = (t0 - origin) / 1e6
        for trace in fig.data:
            out.data.append(_moved(trace, r, shift, seen))
        own = fig.layout.get("yaxis", {}).get("categoryarray", [])[::-1]
        lanes += [f"rank {r} \u00b7 {lane}" for lane in own]
        rng = fig.layout.get("xaxis", {}).get("range")
        if rng:
            x0 = rng[0] + shift if x0 is None else min(x0, rng[0] + shift)
            x1 = rng[1] + shift if x1 is None else max(x1, rng[1] + shift)
    title = (f"Timeline of {len(built)} ranks on one clock, model {esc(model)}, {esc(why)}"
             "<br><sup>drag to zoom, double-click to see the whole window</sup>")
    layout(out, title, height=230 + 30 * len(lanes), barmode="overlay", bargap=0.3)
    out.axis("xaxis", title={"text": "ms since the earliest drawn inference (common clock)"},
             **({"range": [x0, x1]} if x0 is not None else {}))
    out.axis("yaxis", categoryorder="array", categoryarray=lanes[::-1], type="category")
    return out
