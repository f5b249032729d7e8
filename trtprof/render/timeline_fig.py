"""The report's timeline figure: a window of inferences on one host-clock axis, host lanes above,
one GPU lane per CUDA stream below.

Why its own module: it is the one figure that draws rows rather than aggregates, and the one whose
marks must each say what they measured. A GPU bar is either a CUDA-event bracket (which includes the
GPU waiting for the host) or, where kernel activity was recorded, the call's kernel span (first
kernel start to last kernel end, its busy time in the hover text); an allocation mark is coloured by
its phase and, for a re-allocation, by its cause (analysis/shapes.py REALLOC_CAUSES).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis.overlap import KEY
from trtprof.analysis.shapes import REALLOC_CAUSES
from trtprof.analysis.streams import name_of
from trtprof.render.figures import COLORS, GAP_LABEL, Fig, bar, esc, esc_all, layout
from trtprof.timeline.schema import natural_key

WINDOW = 50  # inferences drawn on the timeline
SHOWN = 4  # inferences visible before zooming out
HOST_LANES = ["host \u00b7 inference", "host \u00b7 allocation", "host \u00b7 enqueue", "host \u00b7 fallback",
              "host \u00b7 Python"]


def choose_window(df: pd.DataFrame, infs: pd.DataFrame, changes: pd.DataFrame, latency: pd.DataFrame,
                  size: int = WINDOW) -> tuple[pd.DataFrame, int, str]:
    """The inferences to draw (KEY columns, in time order), the position of the one to centre on, and
    why it was chosen: a forced re-allocation, else the pre-alloc switch, else a shape change, else
    the inference closest to the median latency."""
    if infs.empty:
        return infs[KEY], 0, "no inference recorded"
    d = df.loc[df["inference"] >= 0, KEY + ["host_start_ns"]]
    starts = d.groupby(KEY, sort=False)["host_start_ns"].min().reset_index()  # works without inference rows
    return window_in(infs.merge(starts, on=KEY, how="left"), changes, latency, size)


def window_in(order: pd.DataFrame, changes: pd.DataFrame, latency: pd.DataFrame,
              size: int = WINDOW) -> tuple[pd.DataFrame, int, str]:
    """`choose_window` given one row per inference (KEY, mode, host_start_ns: its first start), in any
    order. Sorted as positions, then only the drawn model's rows taken: a sorted copy of every
    inference is what 14 M inferences cannot afford."""
    if order.empty:
        return order[KEY], 0, "no inference recorded"
    start = order["host_start_ns"]
    if start.dtype.kind == "i":  # no missing start: the positions of a stable sort, NaN-free
        perm = np.argsort(start.to_numpy(), kind="stable")
    else:
        perm = start.reset_index(drop=True).sort_values(kind="stable").index.to_numpy()
    cat = pd.Categorical(order["model"])
    codes = cat.codes[perm]  # in start order; -1: no model
    known = np.flatnonzero(codes >= 0)
    seen, first = np.unique(codes[known], return_index=True)
    n = np.bincount(codes[known], minlength=len(cat.categories))[seen]
    # the model run most; a tie goes to the one that started first (as value_counts of the models in
    # start order gives it for strings, not for categories, which it sorts by name)
    best = seen[np.lexsort((known[first], -n))[0]]
    model = cat.categories[best]
    keep = perm[codes == best]
    order = order.take(keep).reset_index(drop=True)
    pos, why = None, ""
    forced = changes[(changes["model"] == model) & changes["outputs_discarded"]] if len(changes) else changes
    if len(forced):
        pos = _position(order, forced.iloc[0])
        why = "around the first forced re-allocation (input shape changed with pre-allocated outputs on)"
    if pos is None:
        flips = np.flatnonzero(order["mode"].to_numpy()[1:] != order["mode"].to_numpy()[:-1])
        if len(flips):
            pos, why = int(flips[0]) + 1, "around the switch of pre-allocated outputs"
    if pos is None and len(changes):
        ch = changes[changes["model"] == model]
        if len(ch):
            pos = _position(order, ch.iloc[0])
            why = "around the first input shape change"
    if pos is None:
        lat = latency[latency["model"] == model]
        if len(lat):
            target = lat["latency_ns"].median()
            best = lat.iloc[int(np.argmin(np.abs(lat["latency_ns"].to_numpy() - target)))]
            pos = _position(order, best)
            why = "around an inference with the median latency"
    pos = 0 if pos is None else pos
    lo = max(0, min(pos - size // 2, len(order) - size))
    win = order.iloc[lo:lo + size]
    return win[KEY].reset_index(drop=True), pos - lo, why


def _position(order: pd.DataFrame, row) -> int | None:
    hit = np.flatnonzero((order["pid"] == row["pid"]).to_numpy() & (order["inference"] == row["inference"]).to_numpy())
    return int(hit[0]) if len(hit) else None


def _ms(d: pd.DataFrame, col: str, t0: int) -> np.ndarray:
    return (d[col].astype("Float64").to_numpy(dtype=float, na_value=np.nan) - t0) / 1e6


def _bars(fig: Fig, d: pd.DataFrame, start: str, end: str, lane, t0: int, name: str, color: str,
          hover: list[str], opacity: float = 1.0, **extra):
    if d.empty:
        return
    s, e = _ms(d, start, t0), _ms(d, end, t0)
    lanes = lane if isinstance(lane, list) else [lane] * len(d)
    bar(fig, orientation="h", base=s, x=np.maximum(e - s, 0), y=lanes, name=name, opacity=opacity,
        marker={"color": color, "line": {"width": 0}}, hovertext=hover, hoverinfo="text", width=0.7, **extra)


def _hover(d: pd.DataFrame, what: str, extra: list[str] | None = None,
           t: tuple[str, str] = ("host_start_ns", "host_end_ns")) -> list[str]:
    dur = ((d[t[1]].astype("Float64") - d[t[0]].astype("Float64")) / 1e3).astype(float).to_numpy()
    sub, inf, call = esc_all(d["subgraph"]), d["inference"].to_numpy(), d["call"].to_numpy()
    shp = esc_all(d["input_shapes"])
    extra = extra or [""] * len(d)
    return [f"<b>{s}</b> \u00b7 {what}<br>inference {i}, call {c}<br>{u:.1f} \u00b5s<br>inputs {sh}{x}"
            for s, i, c, u, sh, x in zip(sub, inf, call, dur, shp, extra)]


def python_intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """Per inference, the host time between its start and end not covered by an allocation, an enqueue
    or a fallback: Python (the runtime module's forward, the model's glue code). For a window only.

    Vectorised over inferences: busy intervals are clipped to their inference, sorted, and a gap is
    wherever an interval starts after the running end of the ones before it."""
    cols = ["inference", "start_ns", "end_ns"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    agg = {"lo": ("host_start_ns", "min"), "hi": ("host_end_ns", "max")}
    span = rows.groupby(KEY, sort=False).agg(**agg)
    inf = rows[rows["event"] == "inference"].groupby(KEY, sort=False).agg(**agg)
    span.loc[inf.index, ["lo", "hi"]] = inf[["lo", "hi"]]
    span = span.astype("int64").assign(order=np.arange(len(span)))
    b = rows.loc[rows["event"].isin(["alloc", "exec", "fallback"]), KEY + ["host_start_ns", "host_end_ns"]]
    b = b.join(span, on=KEY, how="inner")
    lo, hi = b["lo"].to_numpy(np.int64), b["hi"].to_numpy(np.int64)
    b = b.assign(s=np.clip(b["host_start_ns"].to_numpy(np.int64), lo, hi),
                 e=np.clip(b["host_end_ns"].to_numpy(np.int64), lo, hi)).sort_values(["order", "s"], kind="stable")
    run = b.groupby("order", sort=False)["e"].cummax()
    prev = run.groupby(b["order"], sort=False).shift(1).fillna(b["lo"]).astype("int64")
    inner = pd.DataFrame({"order": b["order"], "start_ns": prev, "end_ns": b["s"]})
    last = run.groupby(b["order"], sort=False).max()
    tail = span[["order", "hi"]].rename(columns={"hi": "end_ns"})
    tail["start_ns"] = span["order"].map(last).fillna(span["lo"]).astype("int64").to_numpy()
    out = pd.concat([inner, tail[["order", "start_ns", "end_ns"]]], ignore_index=True)
    out = out[out["end_ns"] > out["start_ns"]].sort_values(["order", "start_ns"], kind="stable")
    inference = span["order"].reset_index().set_index("order")["inference"]
    return pd.DataFrame({"inference": out["order"].map(inference).to_numpy(),
                         "start_ns": out["start_ns"].to_numpy(np.int64), "end_ns": out["end_ns"].to_numpy(np.int64)})


def _allocations(fig: Fig, rows: pd.DataFrame, allocs: pd.DataFrame, t0: int) -> None:
    """Allocation marks: before execution, after the enqueue (for the next call), and each cause of a
    re-allocation with pre-allocated outputs on in its own colour and legend entry."""
    cols = [c for c in ("seq", "hidden_ns", "exposed_ns", "realloc_cause") if c in allocs]
    a = rows[rows["event"] == "alloc"].merge(allocs[cols], on="seq", how="left")
    cause = a["realloc_cause"] if "realloc_cause" in a else pd.Series([None] * len(a), index=a.index)
    before = (a["alloc_phase"] == "before_exec").fillna(False).to_numpy(bool)
    after = (a["alloc_phase"] == "after_enqueue").fillna(False).to_numpy(bool)
    re = cause.notna().to_numpy(bool)
    groups = [("allocation before execution", before & ~re, COLORS["before_exec"]),
              ("allocation after enqueue (for the next call)", after & ~re, COLORS["after_enqueue"])]
    groups += [(f"re-allocation: {text}", (cause == key).to_numpy(bool), COLORS[key]) for key, text in REALLOC_CAUSES.items()]
    for label, m, color in groups:
        d = a[m]
        extra = [f"<br>{b / 1e3:.0f} kB" + ("<br>hidden/exposed unknown (no kernel data)" if h != h
                                            else f"<br>hidden {h / 1e3:.1f} \u00b5s, exposed {x / 1e3:.1f} \u00b5s")
                 for b, h, x in zip(d["bytes"].astype("Float64").fillna(0).astype(float),
                                    d["hidden_ns"].astype(float), d["exposed_ns"].astype(float))]
        _bars(fig, d, "host_start_ns", "host_end_ns", HOST_LANES[1], t0, label, color, _hover(d, "allocation", extra))


def _gpu(fig: Fig, rows: pd.DataFrame, streams: dict, t0: int, lanes: list[str]) -> None:
    """One lane per stream. With kernel activity: the kernel span of each call, drawn solid, over a
    faint event bracket; without it: the event bracket alone, named as one."""
    gpu = rows[rows["event"].isin(["exec", "fallback"]) & rows["gpu_start_ns"].notna() & rows["gpu_end_ns"].notna()]
    kern = rows.iloc[0:0]
    if "kernel_first_ns" in rows:
        kern = rows[rows["event"].isin(["exec", "fallback"]) & rows["kernel_first_ns"].notna()
                    & rows["kernel_last_ns"].notna()]
    lane_of = {h: f"GPU \u00b7 {name_of(streams, h)}" for h in pd.unique(pd.concat([gpu["stream"], kern["stream"]]))}
    for name in sorted(set(lane_of.values()), key=natural_key):  # engine pool 2 before engine pool 10
        lanes.append(name)
    what = {"exec": "engine", "fallback": "fallback"}
    has_kernels = len(kern) > 0
    for ev, color in [("exec", COLORS["engine"]), ("fallback", COLORS["fallback"])]:
        d = gpu[gpu["event"] == ev]
        _bars(fig, d, "gpu_start_ns", "gpu_end_ns", [lane_of[h] for h in d["stream"]], t0,
              f"{what[ev]}: CUDA-event bracket (includes the GPU waiting for the host)", color,
              _hover(d, "event bracket", t=("gpu_start_ns", "gpu_end_ns")), opacity=0.25 if has_kernels else 0.6)
        k = kern[kern["event"] == ev]
        if len(k):
            busy = k["kernel_busy_ns"].astype(float).to_numpy() / 1e3
            extra = [f"<br>{int(n)} kernels, busy {b:.1f} \u00b5s (kernel time, gaps left out)"
                     for n, b in zip(k["kernel_count"].astype("Int64").fillna(0), busy)]
            _bars(fig, k, "kernel_first_ns", "kernel_last_ns", [lane_of[h] for h in k["stream"]], t0,
                  f"{what[ev]}: kernel span (first kernel start to last end)", color,
                  _hover(k, "kernel span", extra, t=("kernel_first_ns", "kernel_last_ns")))


MAX_KERNELS = 2000  # kernels drawn one by one; more than that, only those of the inferences shown first


def _kernels(fig: Fig, kernels: pd.DataFrame, rows: pd.DataFrame, t0: int, lanes: list[str],
             window_ns: tuple[int, int], shown_ns: tuple[int, int], source: str = "CUPTI") -> None:
    """Each kernel and copy of the window that `source` (CUPTI, or Nsight Systems after an import)
    recorded, one lane per stream, coloured by the row it was attributed to (engine, fallback; grey:
    no row). The bars above are spans; these are what ran."""
    k = kernels[(kernels["end_ns"] >= window_ns[0]) & (kernels["start_ns"] <= window_ns[1])]
    cut = ""
    if len(k) > MAX_KERNELS:
        k = k[(k["end_ns"] >= shown_ns[0]) & (k["start_ns"] <= shown_ns[1])].head(MAX_KERNELS)
        cut = f" (those of the inferences shown first, {len(k):,})"
    if k.empty:
        return
    ev = dict(zip(rows["seq"].astype("int64"), rows["event"].astype(object)))
    owner = [ev.get(int(q)) if not pd.isna(q) else None for q in k["seq"].astype(object)]
    names = k["name"].astype(object)
    lane = [f"kernels \u00b7 {source} stream {int(x) if x >= 0 else '?'}" for x in k["stream"]]
    lanes.extend(sorted(set(lane), key=natural_key))
    for what, color in [("exec", COLORS["engine"]), ("fallback", COLORS["fallback"]), (None, COLORS["idle"])]:
        m = np.array([o == what if what else o not in ("exec", "fallback") for o in owner], bool)
        if not m.any():
            continue
        d = k[m]
        hover = [f"{esc(n if isinstance(n, str) else kind)}<br>{(e - s) / 1e3:.2f} \u00b5s on the GPU ({source})"
                 for n, kind, s, e in zip(names[m], d["kind"].astype(object), d["start_ns"], d["end_ns"])]
        who = {"exec": "of an engine", "fallback": "of a fallback", None: "in no subgraph row"}[what]
        _bars(fig, d, "start_ns", "end_ns", [ln for ln, x in zip(lane, m) if x], t0,
              f"kernel or copy {who} ({source}){cut}", color, hover, opacity=0.9)


def timeline_figure(df: pd.DataFrame, window: pd.DataFrame, centre: int, why: str,
                    allocs: pd.DataFrame, gaps: pd.DataFrame, streams: dict | None = None,
                    kernels: pd.DataFrame | None = None, kernel_source: str = "CUPTI") -> Fig:
    """Host lanes and GPU lanes (one per stream, named by its role) for the window's inferences;
    with `kernels` (the capture's kernels.parquet, or an nsys import's kernels with `kernel_source`
    "Nsight Systems") a lane of kernels per stream, too."""
    rows = df.merge(window, on=KEY)
    fig = Fig()
    if rows.empty:
        return layout(fig, "Timeline: no inference to draw")
    t0 = int(rows["host_start_ns"].min())
    lanes = list(HOST_LANES)
    inf = rows[rows["event"] == "inference"]
    mode = window.merge(rows[rows["event"] == "call"].groupby(KEY)["prealloc"].any().reset_index(), on=KEY, how="left")
    on = dict(zip(zip(mode["pid"], mode["inference"]), mode["prealloc"].fillna(False)))
    _bars(fig, inf, "host_start_ns", "host_end_ns", lanes[0], t0, "inference (host)", COLORS["inference"],
          [f"<b>{esc(m)}</b> inference {i}<br>{(e - s) / 1e3:.1f} \u00b5s host<br>pre-alloc "
           f"{'on' if on.get((p, i)) else 'off'}<br>inputs {esc(sh)}"
           for m, p, i, s, e, sh in zip(inf["model"], inf["pid"], inf["inference"], inf["host_start_ns"],
                                        inf["host_end_ns"], inf["input_shapes"].fillna(""))])
    _allocations(fig, rows, allocs, t0)
    ex = rows[rows["event"] == "exec"]
    _bars(fig, ex, "host_start_ns", "host_end_ns", lanes[2], t0, "enqueue (host)", COLORS["engine"],
          _hover(ex, "enqueue"), opacity=0.6)
    fb = rows[rows["event"] == "fallback"]
    _bars(fig, fb, "host_start_ns", "host_end_ns", lanes[3], t0, "fallback launch (host)", COLORS["fallback"],
          _hover(fb, "PyTorch fallback (host)"), opacity=0.6)
    py = python_intervals(rows)
    _bars(fig, py, "start_ns", "end_ns", lanes[4], t0, "Python in between (host)", COLORS["python_ns"],
          [f"host in Python (nothing recorded) {(e - s) / 1e3:.1f} \u00b5s<br>inference {i}"
           for s, e, i in zip(py["start_ns"], py["end_ns"], py["inference"])], opacity=0.6)
    _gpu(fig, rows, streams or {}, t0, lanes)
    g = gaps.merge(window, on=KEY) if len(gaps) else gaps
    if len(g):
        lanes.append("GPU idle")
        hov = [f"GPU idle {gap / 1e3:.1f} \u00b5s between <b>{esc(b)}</b> and <b>{esc(af)}</b><br>host: "
               + ", ".join(f"{GAP_LABEL[c].replace('host ', '')} {row / 1e3:.1f} \u00b5s"
                           for c, row in zip(GAP_LABEL, vals) if row > 0)
               for gap, b, af, *vals in zip(g["gap_ns"], g["before"], g["after"], g["alloc_ns"],
                                            g["fallback_ns"], g["enqueue_ns"], g["python_ns"])]
        _bars(fig, g, "start_ns", "end_ns", "GPU idle", t0, "GPU idle gap", COLORS["idle"], hov, opacity=0.5)
    sc = rows[(rows["event"] == "call") & rows["shape_changed"].fillna(False).astype(bool)]
    if len(sc):
        fig.add("scatter", x=(sc["host_start_ns"].to_numpy(np.int64) - t0) / 1e6, y=[lanes[1]] * len(sc),
                mode="markers", name="input shape changed", marker={"symbol": "x", "size": 11, "color": "#000000"},
                hoverinfo="text", hovertext=_hover(sc, "input shape changed"))
    # initial view: a few inferences around the centre (window is in time order)
    lo = max(0, min(centre - 1, len(window) - SHOWN))
    vis = rows.merge(window.iloc[lo:lo + SHOWN], on=KEY)
    x0 = (int(vis["host_start_ns"].min()) - t0) / 1e6
    gpu_end = vis["gpu_end_ns"].dropna()
    x1 = (max(int(vis["host_end_ns"].max()), int(gpu_end.max()) if len(gpu_end) else 0) - t0) / 1e6
    if kernels is not None and len(kernels):
        all_end = rows["gpu_end_ns"].dropna()
        hi = max(int(rows["host_end_ns"].max()), int(all_end.max()) if len(all_end) else 0)
        _kernels(fig, kernels, rows, t0, lanes, (t0, hi), (int(x0 * 1e6) + t0, int(x1 * 1e6) + t0), kernel_source)
    pad = 0.02 * (x1 - x0)
    shown = len(window.iloc[lo:lo + SHOWN])
    title = (f"Timeline: {len(window)} inferences, {esc(why)}<br><sup>showing {shown}; drag to zoom, "
             "double-click to see all of them</sup>")
    layout(fig, title, height=230 + 42 * len(lanes), barmode="overlay", bargap=0.3)
    fig.axis("xaxis", title={"text": "ms since the window's first inference (host clock)"}, range=[x0 - pad, x1 + pad])
    fig.axis("yaxis", categoryorder="array", categoryarray=lanes[::-1], type="category")
    return fig
