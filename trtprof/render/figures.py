"""Plotly figures for the HTML report, built from the analysis tables (no analysis here).

Why plain data and not `plotly.graph_objects`: a figure here is what plotly.js draws, a
`{"data": [...], "layout": {...}}` in plotly.js's documented schema. `graph_objects` validates and
deep-copies every array on the way in, which cost 0.8 s of a 1.7 s `trtprof report` on a 620-row
capture (bench/cli_latency.py). `plotly.io` still serialises the figures (numpy-aware) and
plotly.js, inlined in the page, draws them; tests/test_figures.py passes every figure through
`graph_objects` validation, so a misspelt property still fails a test instead of vanishing. The
compare page (render/compare_html.py) builds its figures the same way.

Every figure has a bounded number of points whatever the capture size: the timeline draws a window
of inferences (render/timeline_fig.py), latency over the run is bucketed, histograms are binned with
numpy. Text from the capture (names, shapes) goes through `esc()` because plotly renders a subset of
HTML inside labels and hover text.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MAX_POINTS = 2000  # buckets for "latency over the run"

COLORS = {"off": "#1f77b4", "on": "#2ca02c", "mixed": "#9467bd", "none": "#7f7f7f",
          "before_exec": "#d62728", "after_enqueue": "#2ca02c", "engine": "#1f77b4",
          "fallback": "#ff7f0e", "inference": "#c7c7c7", "idle": "#7f7f7f", "hidden": "#2ca02c",
          "exposed": "#d62728", "unknown": "#bdbdbd", "alloc_ns": "#d62728", "fallback_ns": "#ff7f0e",
          "enqueue_ns": "#1f77b4", "python_ns": "#bcbd22", "excluded": "#aaaaaa",
          # re-allocation before execution with pre-allocated outputs on, by cause (analysis/shapes.py)
          "switch": "#8c564b", "shape": "#9467bd", "unowned": "#e377c2"}
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


class Fig:
    """A plotly.js figure as plain data: traces appended in drawing order, one layout dict."""

    def __init__(self):
        self.data: list[dict] = []
        self.layout: dict = {}

    def add(self, kind: str, **trace) -> None:
        self.data.append({"type": kind, **trace})

    def axis(self, name: str, **kw) -> None:
        """Set properties of `xaxis`, `yaxis`, ... (merged with what is there)."""
        self.layout.setdefault(name, {}).update(kw)

    def to_dict(self) -> dict:
        return {"data": self.data, "layout": self.layout}


# The parts of plotly's "plotly_white" template these figures use, spelt out: building the template
# object costs 0.09 s per process and adds 7 KB to every figure.
_GRID = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "zerolinewidth": 2,
         "ticks": "", "automargin": True}
TEMPLATE = {"layout": {"colorway": ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3",
                                    "#FF6692", "#B6E880", "#FF97FF", "#FECB52"],
                       "font": {"color": "#2a3f5f"}, "hovermode": "closest", "hoverlabel": {"align": "left"},
                       "paper_bgcolor": "white", "plot_bgcolor": "white", "title": {"x": 0.05},
                       "xaxis": dict(_GRID, title={"standoff": 15}), "yaxis": dict(_GRID, title={"standoff": 15})}}


def legend_rows(fig: Fig, width: int = 1180) -> int:
    """How many rows the horizontal legend of `fig` (traces added so far) takes at about `width` px:
    entries sit in columns as wide as the longest name (plotly's horizontal legend, about 6 px a
    character at the house font size, plus the symbol)."""
    names = list(dict.fromkeys(t["name"] for t in fig.data if t.get("name") and t.get("showlegend", True)))
    if not names:
        return 0
    per_row = max(1, width // (6 * max(len(n) for n in names) + 50))
    return -(-len(names) // per_row)


def layout(fig: Fig, title: str, height: int = 360, **kw) -> Fig:
    """Title, size, the house template and the legend placed above the plot, right under the title, so
    it never covers axis labels (rotated category labels included). Called after the traces are
    added: the top margin grows with the legend's rows, so a long legend never runs into the title."""
    lines = title.count("<br>")  # plotly.js lifts each extra line of a title half its height above its anchor
    top = max(90, 48 + 32 * lines + 21 * legend_rows(fig))
    fig.layout.update(title={"text": title, "x": 0.01, "y": 1, "yanchor": "top", "pad": {"t": 8 + 16 * lines}},
                      height=height + top - 90,
                      template=TEMPLATE, margin={"l": 10, "r": 10, "t": top, "b": 40},
                      legend={"orientation": "h", "x": 0, "y": 1.0, "xanchor": "left", "yanchor": "bottom"}, **kw)
    fig.axis("yaxis", automargin=True)
    fig.axis("xaxis", automargin=True)
    return fig


def bar(fig: Fig, **trace) -> None:
    fig.add("bar", **trace)


# -- latency ---------------------------------------------------------------------------------------------
def latency_histogram(lat: pd.DataFrame) -> Fig:
    """Distribution of latency per inference, one histogram per pre-alloc mode (numpy-binned)."""
    fig = Fig()
    # arrays, one mode at a time (not a frame per mode): 14 M inferences in a 100 M-row capture
    ok = ~lat["excluded"].to_numpy(bool)
    v = lat["latency_ns"].to_numpy(float)[ok] / 1e6
    if len(v):
        lo, hi = np.quantile(v, [0.0, 0.995])
        hi = hi if hi > lo else lo + 1e-3
        edges = np.linspace(lo, hi, 61)
        codes, modes = pd.factorize(lat["mode"])  # NaN: -1, left out as grouping leaves it out
        codes = codes[ok]
        for code, mode in sorted(enumerate(modes), key=lambda cm: cm[1]):
            x = np.clip(v[codes == code], lo, hi)
            counts, _ = np.histogram(x, edges)
            bar(fig, x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges),
                name=f"{MODE_LABEL.get(mode, esc(mode))} ({len(x)})",
                marker={"color": COLORS.get(mode, "#7f7f7f")}, opacity=0.6)
    layout(fig, "Latency per inference (the last bin holds the slowest 0.5 %)", barmode="overlay")
    fig.axis("xaxis", title={"text": "latency, ms (call until host and GPU are done)"})
    fig.axis("yaxis", title={"text": "inferences"})
    return fig


def latency_range(lat: pd.DataFrame) -> tuple[float, float] | None:
    """The y range (ms) of "latency over the run": the steady state, not the warm-up. Set by the
    included inferences (0.1 % to 99.9 % quantiles, the top at most 3x the 99th percentile, padded) so
    a first inference 20x slower, or a rare stall of the process, does not flatten the rest (those sit
    on the top edge as triangles); None when nothing is included."""
    v = lat.loc[~lat["excluded"], "latency_ns"].to_numpy(float) / 1e6
    if not len(v):
        return None
    lo, hi, p99 = np.quantile(v, [0.001, 0.999, 0.99])
    hi = min(hi, 3 * p99)
    pad = max(0.08 * (hi - lo), 0.02 * hi, 1e-3)
    return max(0.0, lo - pad), hi + pad


def buckets(x: np.ndarray, y: np.ndarray, n: int = MAX_POINTS) -> tuple:
    """MAX_POINTS consecutive buckets of (x, y) in order: each bucket's median x and min, median
    and max y. Bucket b holds the points i with i * n // len(x) == b."""
    b = (np.arange(len(x)) * n) // len(x)
    edges = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    ends = np.r_[edges[1:], len(x)]
    xm = np.array([np.median(x[i:j]) for i, j in zip(edges, ends)])
    med = np.array([np.median(y[i:j]) for i, j in zip(edges, ends)])
    return xm, np.minimum.reduceat(y, edges), med, np.maximum.reduceat(y, edges)


def latency_over_run(lat: pd.DataFrame) -> Fig:
    """Latency of every inference in run order; bucketed (min / median / max) past MAX_POINTS.
    Excluded inferences (the first one recorded, the first after a mode switch, CUDA-graph warm-up and
    capture, one that raised; a script's own warm-up loop after the first is not excluded) are drawn in grey; any inference above
    the axis range (`latency_range`) is drawn as a triangle on the top edge with its real value in
    the hover text."""
    fig = Fig()
    rng = latency_range(lat)
    top = rng[1] if rng else np.inf
    # arrays, one mode at a time: a frame per mode and a grouped frame per bucket cost ~160 bytes per
    # inference at once (14 M inferences in a 100 M-row capture), these two arrays 16
    ok = ~lat["excluded"].to_numpy(bool)
    codes, modes = pd.factorize(lat["mode"])  # NaN: -1, left out as grouping leaves it out
    inference, latency = lat["inference"].to_numpy(), lat["latency_ns"].to_numpy(float)
    for code, mode in sorted(enumerate(modes), key=lambda cm: cm[1]):
        sel = ok & (codes == code)
        if not sel.any():
            continue
        idx, y = inference[sel], latency[sel] / 1e6
        del sel
        name, color = MODE_LABEL.get(mode, esc(mode)), COLORS.get(mode, "#7f7f7f")
        if len(y) <= MAX_POINTS:
            m = y <= top
            fig.add("scatter", x=idx[m], y=y[m], mode="markers", name=name, marker={"size": 4, "color": color})
            continue
        x, lo, med, hi = buckets(idx, np.minimum(y, top))
        fig.add("scatter", x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
        fig.add("scatter", x=x, y=lo, mode="lines", line={"width": 0}, fill="tonexty", fillcolor=color,
                opacity=0.2, name=f"{name}: min\u2013max per bucket (clipped at the axis top)", hoverinfo="skip")
        fig.add("scatter", x=x, y=med, mode="lines", name=f"{name}: median per bucket",
                line={"color": color})
    ex = lat[lat["excluded"]].head(MAX_POINTS)
    if len(ex):
        y = ex["latency_ns"].to_numpy(float) / 1e6
        fig.add("scatter", x=ex["inference"].to_numpy(), y=np.minimum(y, top), mode="markers",
                name="excluded from statistics (first recorded, first after a mode switch, CUDA-graph warm-up or capture, raised)",
                marker={"size": 5, "color": COLORS["excluded"], "symbol": np.where(y > top, "triangle-up", "circle")},
                hovertext=[f"inference {i}: {v:.3f} ms (excluded)" for i, v in zip(ex["inference"], y)], hoverinfo="text")
    high = lat[(~lat["excluded"].to_numpy(bool)) & (latency / 1e6 > top)].head(MAX_POINTS)
    if len(high):
        y = high["latency_ns"].to_numpy(float) / 1e6
        fig.add("scatter", x=high["inference"].to_numpy(), y=[top] * len(high), mode="markers",
                name="above the axis (value in the hover text)", marker={"size": 7, "symbol": "triangle-up",
                                                                         "color": "#000000"},
                hovertext=[f"inference {i}: {v:.3f} ms" for i, v in zip(high["inference"], y)], hoverinfo="text")
    layout(fig, "Latency over the run (inferences in order; the axis spans the included inferences, "
                "slower ones sit on its top edge)")
    fig.axis("xaxis", title={"text": "inference number"})
    fig.axis("yaxis", title={"text": "latency, ms"}, **({"range": list(rng)} if rng else {}))
    return fig


# -- overlap -------------------------------------------------------------------------------------------------
# what "GPU busy" and a subgraph's GPU work are measured from (analysis.overlap.busy_source), for titles
BUSY_FROM = {"kernels": "the kernels and copies CUPTI recorded",
             "kernel spans": "each call's kernel span (first kernel start to last end)",
             "event brackets": "CUDA-event brackets, which include the GPU waiting for the host "
                               "(busy is an upper bound)"}
WORK_FROM = {"kernels": "its kernel span", "kernel spans": "its kernel span",
             "event brackets": "its CUDA-event bracket, which includes the GPU waiting for the host "
                               "(idle is a lower bound)"}


def exposure_figure(exposure: pd.DataFrame, busy: str | None = None) -> Fig:
    """Allocation time per inference, hidden under GPU work vs exposed, per subgraph and mode; where
    the split cannot be measured (C++ runtime without kernel activity) the time is "unknown". `busy`:
    what GPU busy is measured from (a key of BUSY_FROM), named under the title."""
    fig = Fig()
    e = exposure[exposure["mode"].isin(["on", "off"])]
    x = [esc_all(e["subgraph"]), [MODE_LABEL[m] for m in e["mode"]]]
    hidden = e["hidden_ns_per_inference"].to_numpy(float)
    exposed = e["exposed_ns_per_inference"].to_numpy(float)
    unknown = np.where(np.isnan(hidden) | np.isnan(exposed), e["alloc_ns_per_inference"].to_numpy(float), 0.0)
    for y, label, color in [(hidden, "hidden (GPU busy)", COLORS["hidden"]),
                            (exposed, "exposed (GPU idle)", COLORS["exposed"]),
                            (unknown, "unknown (no kernel data: see the note above)", COLORS["unknown"])]:
        if label.startswith("unknown") and not unknown.any():
            continue
        bar(fig, x=x, y=np.nan_to_num(y) / 1e3, name=label, marker={"color": color})
    title = "Output allocation per inference: hidden under GPU work or exposed"
    if busy in BUSY_FROM:
        title += f"<br><sup>GPU busy measured from {BUSY_FROM[busy]}</sup>"
    layout(fig, title, barmode="stack")
    fig.axis("yaxis", title={"text": "\u00b5s per inference"})
    return fig


def gaps_figure(summary: pd.DataFrame, busy: str | None = None) -> Fig:
    """GPU idle time per inference between subgraphs, split by what the host was doing; `busy` (a key
    of WORK_FROM) names under the title what a subgraph's GPU work was measured from."""
    fig = Fig()
    s = summary.head(24)
    y = [f"{esc(b)} \u2192 {esc(a)} ({MODE_LABEL.get(m, esc(m))})" for b, a, m in zip(s["before"], s["after"], s["mode"])]
    for c, label in GAP_LABEL.items():
        bar(fig, orientation="h", y=y, x=s[c.replace("_ns", "_ns_per_inference")].to_numpy(float) / 1e3,
            name=label, marker={"color": COLORS[c]})
    title = "GPU idle between subgraphs, per inference, by what the host was doing"
    if busy in WORK_FROM:
        title += f"<br><sup>a subgraph's GPU work measured as {WORK_FROM[busy]}</sup>"
    layout(fig, title, barmode="stack", height=200 + 30 * len(s))
    fig.axis("xaxis", title={"text": "\u00b5s per inference"})
    fig.axis("yaxis", autorange="reversed")
    return fig
