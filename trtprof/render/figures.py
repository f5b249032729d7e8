"""Plotly figures for the HTML report, built from the analysis tables (no analysis here).

Why a module of its own: the page (render/report_html.py) stays about layout and escaping, and each figure
is a small function from DataFrames to a `go.Figure`. Every figure has a bounded number of points
whatever the capture size: the timeline draws a window of inferences, latency over the run is
bucketed, histograms are binned with numpy. Text that comes from the capture (names, shapes) goes
through `esc()` because plotly renders a subset of HTML inside labels and hover text.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from trtprof.analysis.overlap import KEY, union

WINDOW = 50  # inferences drawn on the timeline
SHOWN = 4  # inferences visible before zooming out
MAX_POINTS = 2000  # buckets for "latency over the run"

COLORS = {"off": "#1f77b4", "on": "#2ca02c", "mixed": "#9467bd", "none": "#7f7f7f",
          "before_exec": "#d62728", "after_enqueue": "#2ca02c", "forced": "#9467bd", "engine": "#1f77b4",
          "fallback": "#ff7f0e", "inference": "#c7c7c7", "idle": "#7f7f7f", "hidden": "#2ca02c",
          "exposed": "#d62728", "alloc_ns": "#d62728", "fallback_ns": "#ff7f0e", "enqueue_ns": "#1f77b4",
          "python_ns": "#bcbd22"}
MODE_LABEL = {"off": "pre-alloc off", "on": "pre-alloc on", "mixed": "mixed", "none": "no engine"}
GAP_LABEL = {"alloc_ns": "host allocating", "fallback_ns": "host in a fallback",
             "enqueue_ns": "host enqueuing", "python_ns": "host in Python (nothing recorded)"}
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"}


def esc(s) -> str:
    """Text for plotly labels: plotly parses <b>, <a href> ... inside strings, so escape them (it
    turns entities back into the characters when it draws)."""
    return "".join(_ENTITIES.get(ch, ch) for ch in str(s))


def esc_all(values) -> list[str]:
    cache: dict = {}
    return ["" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else cache.setdefault(v, esc(v))
            for v in values]


def layout(fig: go.Figure, title: str, height: int = 360, **kw) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01}, height=height, template="plotly_white",
                      margin={"l": 10, "r": 10, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.18},
                      **kw)
    fig.update_yaxes(automargin=True)
    return fig


# -- the timeline ------------------------------------------------------------------------------------
def choose_window(df: pd.DataFrame, infs: pd.DataFrame, changes: pd.DataFrame, latency: pd.DataFrame,
                  size: int = WINDOW) -> tuple[pd.DataFrame, int, str]:
    """The inferences to draw (KEY columns, in time order), the position of the one to centre on, and
    why it was chosen: a forced re-allocation, else the pre-alloc switch, else a shape change, else
    the inference closest to the median latency."""
    if infs.empty:
        return infs[KEY], 0, "no inference recorded"
    d = df.loc[df["inference"] >= 0, KEY + ["host_start_ns"]]
    starts = d.groupby(KEY, sort=False)["host_start_ns"].min().reset_index()  # works without inference rows
    order = infs.merge(starts, on=KEY, how="left").sort_values(["host_start_ns"], kind="stable")
    model = order["model"].value_counts().index[0]  # the model run most
    order = order[order["model"] == model].reset_index(drop=True)
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


def _bars(fig, d: pd.DataFrame, start: str, end: str, lane, t0: int, name: str, color: str,
          hover: list[str], opacity: float = 1.0, legend: bool = True):
    if d.empty:
        return
    s = (d[start].astype("Float64").to_numpy(dtype=float, na_value=np.nan) - t0) / 1e6
    e = (d[end].astype("Float64").to_numpy(dtype=float, na_value=np.nan) - t0) / 1e6
    lanes = lane if isinstance(lane, list) else [lane] * len(d)
    fig.add_trace(go.Bar(orientation="h", base=s, x=np.maximum(e - s, 0), y=lanes, name=name,
                         marker={"color": color, "line": {"width": 0}}, opacity=opacity, hovertext=hover,
                         hoverinfo="text", showlegend=legend, width=0.7))


def _hover(d: pd.DataFrame, what: str, extra: list[str] | None = None, t: tuple[str, str] = ("host_start_ns", "host_end_ns")) -> list[str]:
    dur = ((d[t[1]].astype("Float64") - d[t[0]].astype("Float64")) / 1e3).astype(float).to_numpy()
    sub, inf, call = esc_all(d["subgraph"]), d["inference"].to_numpy(), d["call"].to_numpy()
    shp = esc_all(d["input_shapes"])
    extra = extra or [""] * len(d)
    return [f"<b>{s}</b> \u00b7 {what}<br>inference {i}, call {c}<br>{u:.1f} \u00b5s<br>inputs {sh}{x}"
            for s, i, c, u, sh, x in zip(sub, inf, call, dur, shp, extra)]


def python_intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """Per inference, the host time between its start and end not covered by an allocation, an enqueue
    or a fallback: Python (the runtime module's forward, the model's glue code). For a window only."""
    out = []
    busy = rows[rows["event"].isin(["alloc", "exec", "fallback"])]
    for key, g in rows.groupby(KEY, sort=False):
        inf = g[g["event"] == "inference"]
        span = inf if len(inf) else g
        lo, hi = int(span["host_start_ns"].min()), int(span["host_end_ns"].max())
        b = busy.merge(pd.DataFrame([key], columns=KEY), on=KEY)
        us, ue = union(np.clip(b["host_start_ns"].to_numpy(np.int64), lo, hi), np.clip(b["host_end_ns"].to_numpy(np.int64), lo, hi))
        starts, ends = np.r_[lo, ue], np.r_[us, hi]
        keep = ends > starts
        out += [(key[2], s, e) for s, e in zip(starts[keep], ends[keep])]
    return pd.DataFrame(out, columns=["inference", "start_ns", "end_ns"])


def timeline_figure(df: pd.DataFrame, window: pd.DataFrame, centre: int, why: str,
                    allocs: pd.DataFrame, gaps: pd.DataFrame) -> go.Figure:
    """Host lanes and GPU lanes (one per stream) for the window's inferences, on one host-clock axis."""
    rows = df.merge(window, on=KEY)
    fig = go.Figure()
    if rows.empty:
        return layout(fig, "Timeline: no inference to draw")
    t0 = int(rows["host_start_ns"].min())
    lanes = ["host \u00b7 inference", "host \u00b7 allocation", "host \u00b7 enqueue", "host \u00b7 fallback",
             "host \u00b7 Python"]
    inf = rows[rows["event"] == "inference"]
    mode = window.merge(rows[rows["event"] == "call"].groupby(KEY)["prealloc"].any().reset_index(), on=KEY, how="left")
    on = dict(zip(zip(mode["pid"], mode["inference"]), mode["prealloc"].fillna(False)))
    _bars(fig, inf, "host_start_ns", "host_end_ns", lanes[0], t0, "inference (host)", COLORS["inference"],
          [f"<b>{esc(m)}</b> inference {i}<br>{(e - s) / 1e3:.1f} \u00b5s host<br>pre-alloc "
           f"{'on' if on.get((p, i)) else 'off'}<br>inputs {esc(sh)}"
           for m, p, i, s, e, sh in zip(inf["model"], inf["pid"], inf["inference"], inf["host_start_ns"],
                                        inf["host_end_ns"], inf["input_shapes"].fillna(""))])
    a = rows[rows["event"] == "alloc"].merge(allocs[["seq", "hidden_ns", "exposed_ns"]], on="seq", how="left")
    before = (a["alloc_phase"] == "before_exec").fillna(False).to_numpy(bool)
    after = (a["alloc_phase"] == "after_enqueue").fillna(False).to_numpy(bool)
    forced = a["reallocated"].fillna(False).to_numpy(bool) & before
    for label, m, color in [("allocation before execution", before & ~forced, COLORS["before_exec"]),
                            ("allocation after enqueue (for the next call)", after, COLORS["after_enqueue"]),
                            ("forced re-allocation (pre-alloc on, outputs thrown away)", forced, COLORS["forced"])]:
        d = a[m]
        extra = [f"<br>{b / 1e3:.0f} kB" + ("" if h != h else f"<br>hidden {h / 1e3:.1f} \u00b5s, exposed {x / 1e3:.1f} \u00b5s")
                 for b, h, x in zip(d["bytes"].astype("Float64").fillna(0).astype(float), d["hidden_ns"], d["exposed_ns"])]
        _bars(fig, d, "host_start_ns", "host_end_ns", lanes[1], t0, label, color, _hover(d, "allocation", extra))
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
    gpu = rows[rows["event"].isin(["exec", "fallback"]) & rows["gpu_start_ns"].notna() & rows["gpu_end_ns"].notna()]
    if len(gpu):
        streams = gpu["stream"].astype("Int64")
        names = ["GPU \u00b7 stream " + ("?" if pd.isna(s) else f"{int(s):#x}") for s in streams]
        for stream in sorted(set(names)):
            lanes.append(stream)
        for ev, label, color in [("exec", "engine (GPU)", COLORS["engine"]), ("fallback", "fallback kernels (GPU)", COLORS["fallback"])]:
            m = (gpu["event"] == ev).to_numpy()
            d = gpu[m]
            _bars(fig, d, "gpu_start_ns", "gpu_end_ns", [n for n, k in zip(names, m) if k], t0, label, color,
                  _hover(d, "GPU", t=("gpu_start_ns", "gpu_end_ns")))
        g = gaps.merge(window, on=KEY) if len(gaps) else gaps
        if len(g):
            lanes.append("GPU idle")
            hov = [f"GPU idle {gap / 1e3:.1f} \u00b5s between <b>{esc(b)}</b> and <b>{esc(af)}</b><br>host: "
                   + ", ".join(f"{GAP_LABEL[c].replace('host ', '')} {row / 1e3:.1f} \u00b5s"
                               for c, row in zip(GAP_LABEL, vals) if row > 0)
                   for gap, b, af, *vals in zip(g["gap_ns"], g["before"], g["after"], g["alloc_ns"],
                                                g["fallback_ns"], g["enqueue_ns"], g["python_ns"])]
            _bars(fig, g, "start_ns", "end_ns", "GPU idle", t0, "GPU idle gap", COLORS["idle"], hov, opacity=0.5)
    # markers: shape changes
    sc = rows[(rows["event"] == "call") & rows["shape_changed"].fillna(False).astype(bool)]
    if len(sc):
        x = (sc["host_start_ns"].to_numpy(np.int64) - t0) / 1e6
        fig.add_trace(go.Scatter(x=x, y=[lanes[1]] * len(sc), mode="markers", name="input shape changed",
                                 marker={"symbol": "x", "size": 11, "color": "#000000"}, hoverinfo="text",
                                 hovertext=_hover(sc, "input shape changed")))
    # initial view: a few inferences around the centre (window is in time order)
    lo = max(0, min(centre - 1, len(window) - SHOWN))
    vis = rows.merge(window.iloc[lo:lo + SHOWN], on=KEY)
    x0 = (int(vis["host_start_ns"].min()) - t0) / 1e6
    gpu_end = vis["gpu_end_ns"].dropna()
    x1 = (max(int(vis["host_end_ns"].max()), int(gpu_end.max()) if len(gpu_end) else 0) - t0) / 1e6
    pad = 0.02 * (x1 - x0)
    vis = window.iloc[lo:lo + SHOWN]
    title = (f"Timeline: {len(window)} inferences, {esc(why)}<br><sup>showing {len(vis)}; drag to zoom, "
             "double-click to see all of them</sup>")
    layout(fig, title, height=170 + 42 * len(lanes), barmode="overlay", bargap=0.3)
    fig.update_xaxes(title="ms since the window's first inference (host clock)", range=[x0 - pad, x1 + pad])
    fig.update_yaxes(categoryorder="array", categoryarray=lanes[::-1], type="category")
    return fig


# -- latency ---------------------------------------------------------------------------------------------
def latency_histogram(lat: pd.DataFrame) -> go.Figure:
    """Distribution of latency per inference, one histogram per pre-alloc mode (numpy-binned)."""
    ok = lat[~lat["excluded"]]
    fig = go.Figure()
    v = ok["latency_ns"].to_numpy(float) / 1e6
    if len(v):
        lo, hi = np.quantile(v, [0.0, 0.995])
        hi = hi if hi > lo else lo + 1e-3
        edges = np.linspace(lo, hi, 61)
        for mode, g in ok.groupby("mode", sort=True):
            x = np.clip(g["latency_ns"].to_numpy(float) / 1e6, lo, hi)
            counts, _ = np.histogram(x, edges)
            fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges),
                                 name=f"{MODE_LABEL.get(mode, esc(mode))} ({len(g)})",
                                 marker={"color": COLORS.get(mode, "#7f7f7f")}, opacity=0.6))
    layout(fig, "Latency per inference (the last bin holds the slowest 0.5 %)", barmode="overlay")
    fig.update_xaxes(title="latency, ms (call until host and GPU are done)")
    fig.update_yaxes(title="inferences")
    return fig


def latency_over_run(lat: pd.DataFrame) -> go.Figure:
    """Latency of every inference in run order; bucketed (min / median / max) past MAX_POINTS."""
    fig = go.Figure()
    ok = lat[~lat["excluded"]]
    for mode, g in ok.groupby("mode", sort=True):
        idx = g["inference"].to_numpy()
        y = g["latency_ns"].to_numpy(float) / 1e6
        name = MODE_LABEL.get(mode, esc(mode))
        color = COLORS.get(mode, "#7f7f7f")
        if len(g) <= MAX_POINTS:
            fig.add_trace(go.Scatter(x=idx, y=y, mode="markers", name=name, marker={"size": 4, "color": color}))
            continue
        b = (np.arange(len(g)) * MAX_POINTS) // len(g)
        s = pd.DataFrame({"b": b, "x": idx, "y": y}).groupby("b").agg(x=("x", "median"), lo=("y", "min"),
                                                                     med=("y", "median"), hi=("y", "max"))
        fig.add_trace(go.Scatter(x=s["x"], y=s["hi"], mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=s["x"], y=s["lo"], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=color, opacity=0.2, name=f"{name}: min\u2013max per bucket",
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=s["x"], y=s["med"], mode="lines", name=f"{name}: median per bucket",
                                 line={"color": color}))
    layout(fig, "Latency over the run (inferences in order)")
    fig.update_xaxes(title="inference number")
    fig.update_yaxes(title="latency, ms")
    return fig


# -- overlap -------------------------------------------------------------------------------------------------
def exposure_figure(exposure: pd.DataFrame) -> go.Figure:
    """Allocation time per inference, hidden under GPU work vs exposed, per subgraph and mode."""
    fig = go.Figure()
    e = exposure[exposure["mode"].isin(["on", "off"])]
    x = [esc_all(e["subgraph"]), [MODE_LABEL[m] for m in e["mode"]]]
    for col, label in [("hidden_ns_per_inference", "hidden (GPU busy)"), ("exposed_ns_per_inference", "exposed (GPU idle)")]:
        fig.add_trace(go.Bar(x=x, y=e[col].to_numpy(float) / 1e3, name=label,
                             marker={"color": COLORS[label.split()[0]]}))
    layout(fig, "Output allocation per inference: hidden under GPU work or exposed", barmode="stack")
    fig.update_yaxes(title="\u00b5s per inference")
    return fig


def gaps_figure(summary: pd.DataFrame) -> go.Figure:
    """GPU idle time per inference between subgraphs, split by what the host was doing."""
    fig = go.Figure()
    s = summary.head(24)
    y = [f"{esc(b)} \u2192 {esc(a)} ({MODE_LABEL.get(m, esc(m))})" for b, a, m in zip(s["before"], s["after"], s["mode"])]
    for c, label in GAP_LABEL.items():
        fig.add_trace(go.Bar(orientation="h", y=y, x=s[c.replace("_ns", "_ns_per_inference")].to_numpy(float) / 1e3,
                             name=label, marker={"color": COLORS[c]}))
    layout(fig, "GPU idle between subgraphs, per inference, by what the host was doing", barmode="stack",
            height=200 + 30 * len(s))
    fig.update_xaxes(title="\u00b5s per inference")
    fig.update_yaxes(autorange="reversed")
    return fig
