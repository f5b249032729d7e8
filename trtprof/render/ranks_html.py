"""The merged report of a distributed run: one self-contained page for a folder of ranks.

It shows what only the ranks together can: latency per rank, the straggler view (per inference
index, slowest rank minus fastest, and which rank), the timeline with one lane group per rank on one
clock, and the per-subgraph table of every rank. Each rank's full single-capture report (allocation
overlap, shape changes, recommendations) stays in its own folder and is linked. Same kit and the
same escaping as the single report (`render.page`): every string from a capture goes through `e()`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from trtprof._version import __version__
from trtprof.render import figures, ranks_text, ranks_timeline
from trtprof.render.figures import Fig
from trtprof.render.page import Figures, command, document, e, ms, nbytes, num, table

REPORT = "report.html"
_CSS = ".slowest{font-weight:600}"


def _lat_cols():
    return [("n", "inferences", str), ("median_ms", "median ms", ms), ("p10_ms", "p10 ms", ms), ("p90_ms", "p90 ms", ms)]


def _header(ranks, res, at: Path) -> str:
    first = ranks.captures[min(ranks.captures)]
    items = [("folder", str(ranks.root)), ("command (rank %d)" % min(ranks.captures), command(first.meta)),
             ("started", first.meta.get("start_time", "")),
             ("ranks", f"{len(ranks.captures)}" + (f" of world size {ranks.world_size}" if ranks.world_size else "")),
             ("clock", ranks.clock)]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{'<code>' + e(v) + '</code>' if k.startswith('command') else e(v)}</dd>"
                 for k, v in items if v)
    rows = []
    for r, cap in ranks.captures.items():
        own_report = Path(cap.path) / REPORT if cap.path else None
        link = os.path.relpath(own_report, at).replace(os.sep, "/") if own_report else ""
        own = (f'<a href="{e(link)}">{e(link)}</a>' if own_report and own_report.is_file()
               else f"<code>trtprof report {e(cap.path)}</code>")
        status = "complete" if cap.complete else f"incomplete: {cap.meta.get('incomplete_reason') or 'unfinished'}"
        rows.append(f"<tr><td class='n'>{r}</td><td class='t'>{e(ranks_text.where(cap.meta))}</td>"
                    f"<td class='n'>{res.rows[r]:,}</td><td class='n'>{len(res.per_rank[r].infs):,}</td>"
                    f"<td class='t'>{e(status)}</td><td class='t'>{own}</td></tr>")
    ranks_table = ('<div class="scroll"><table><thead><tr><th>rank</th><th>where it ran</th><th>rows</th>'
                   "<th>inferences</th><th>status</th><th>its own report</th></tr></thead><tbody>"
                   + "".join(rows) + "</tbody></table></div>")
    warn = "".join(f'<div class="card warn">{e(n)}</div>' for n in res.notes)
    if not ranks.complete:
        warn += '<div class="card warn"><b>Incomplete</b>: some ranks did not finish; what they recorded is shown.</div>'
    return (f"<h1>trtprof report: {len(ranks.captures)} ranks</h1>"
            '<p class="muted">One capture per process of a distributed run, side by side: latency per rank, '
            "the straggler at each inference, one timeline, and each rank's subgraphs.</p>"
            f'<div class="card"><dl>{dl}</dl></div>{ranks_table}{warn}'
            '<nav class="muted">Sections: <a href="#latency">latency per rank</a> \u00b7 <a href="#straggler">'
            'straggler</a> \u00b7 <a href="#timeline">timeline</a> \u00b7 <a href="#subgraphs">per subgraph</a></nav>')


def latency_figure(res) -> Fig:
    """Latency per inference of each rank, overlaid histograms on shared bins."""
    fig = Fig()
    vals = {r: x.latency.loc[~x.latency["excluded"].astype(bool), "latency_ns"].to_numpy(float) / 1e6
            for r, x in res.per_rank.items() if len(x.latency)}
    both = np.concatenate(list(vals.values())) if vals else np.zeros(0)
    if len(both):
        lo, hi = np.quantile(both, [0.0, 0.995])
        hi = hi if hi > lo else lo + 1e-3
        edges = np.linspace(lo, hi, 61)
        for r, v in vals.items():
            if len(v):
                counts, _ = np.histogram(np.clip(v, lo, hi), edges)
                figures.bar(fig, x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), opacity=0.55,
                            name=f"rank {r} ({len(v)}, median {np.median(v):.3f} ms)")
    figures.layout(fig, "Latency per inference, each rank (the last bin holds the slowest 0.5 %)", barmode="overlay")
    fig.axis("xaxis", title={"text": "latency, ms (call until host and GPU are done)"})
    fig.axis("yaxis", title={"text": "inferences"})
    return fig


TOP = 500  # past MAX_POINTS inferences: the largest spreads drawn one by one, the rest as buckets


def straggler_figure(st) -> Fig:
    """Spread (slowest minus fastest rank) per inference index, one marker colour per slowest rank.
    Past `figures.MAX_POINTS` inferences (a long run has millions: a marker and a hover text each
    would make a page of hundreds of MB), the spread per bucket of consecutive inferences (median and
    max, per model) and the `TOP` largest spreads as markers."""
    fig = Fig()
    among = ""
    if len(st) > figures.MAX_POINTS:
        among = f", among the {TOP} largest spreads"
        for model, g in st.groupby("model", sort=True, observed=True):
            x, _, med, hi = figures.buckets(g["inference"].to_numpy(np.int64), g["spread_ms"].to_numpy(float))
            label = figures.esc(model)
            fig.add("scatter", x=x, y=hi, mode="lines", name=f"{label}: max spread per bucket",
                    line={"width": 1, "color": "#bbbbbb"}, hoverinfo="skip")
            fig.add("scatter", x=x, y=med, mode="lines", name=f"{label}: median spread per bucket",
                    line={"width": 1, "color": "#555555"}, hoverinfo="skip")
        st = st.nlargest(TOP, "spread_ms", keep="first").sort_values(["model", "inference"], kind="stable")
    for r in sorted(st["slowest_rank"].unique()):
        d = st[st["slowest_rank"] == r]
        hover = [f"<b>{figures.esc(m)}</b> inference {i}<br>slowest rank {r}: {s:.3f} ms<br>fastest rank {f}: "
                 f"{fa:.3f} ms<br>spread {sp:.3f} ms" for m, i, s, f, fa, sp in
                 zip(d["model"], d["inference"], d["slowest_ms"], d["fastest_rank"], d["fastest_ms"], d["spread_ms"])]
        fig.add("scatter", x=d["inference"].to_numpy(np.int64), y=d["spread_ms"].to_numpy(float), mode="markers",
                name=f"rank {r} slowest ({len(d)}{among})", marker={"size": 6}, hoverinfo="text", hovertext=hover)
    figures.layout(fig, "Straggler: slowest minus fastest rank, per inference index")
    fig.axis("xaxis", title={"text": "inference index"})
    fig.axis("yaxis", title={"text": "spread, ms"})
    return fig


def _latency(res, fig) -> str:
    return ("<h2 id='latency'>1. Latency per rank</h2>"
            '<p class="muted">Latency of one inference = from the call of the compiled model until both the host '
            "returned and the GPU finished its work, each rank on its own clock. Excluded inferences (the first "
            "after pre-allocated outputs were switched on) are left out.</p>"
            + table(res.latency, [("rank", "rank", str), ("model", "model", None)] + _lat_cols())
            + (fig(latency_figure(res)) if len(res.latency) else ""))


def _straggler(res, fig) -> str:
    parts = ["<h2 id='straggler'>2. Straggler</h2>",
             '<p class="muted">For every inference index run by two or more ranks: the slowest rank\'s latency '
             "minus the fastest one's (what a step waiting for every rank pays), and which rank was slowest. Finish "
             "skew: the latest end minus the earliest end of that inference on the common clock.</p>"]
    if res.straggler.empty:
        parts.append('<p class="muted">No inference index was run by two ranks: nothing to compare.</p>')
        return "".join(parts)
    parts += [f'<div class="card"><b>{e(line)}</b></div>' for line in ranks_text.straggler_lines(res.summary)]
    s = res.summary.assign(slowest=[", ".join(f"rank {r}: {n}" for r, n in c.items()) for c in res.summary["slowest_counts"]])
    parts.append(table(s, [("model", "model", None), ("inferences", "inferences", str), ("ranks", "ranks", str),
                           ("median_spread_ms", "median spread ms", ms), ("p90_spread_ms", "p90 spread ms", ms),
                           ("max_spread_ms", "max spread ms", ms), ("max_spread_inference", "at inference", str),
                           ("max_spread_rank", "slowest there", str),
                           ("median_finish_skew_ms", "median finish skew ms", ms),
                           ("slowest", "times slowest", None)]))
    parts.append(fig(straggler_figure(res.straggler)))
    worst = res.straggler.sort_values("spread_ms", ascending=False, kind="stable").head(20)
    parts.append("<p>The 20 inferences with the largest spread:</p>"
                 + table(worst, [("model", "model", None), ("inference", "inference", str),
                                 ("ranks", "ranks", str), ("slowest_rank", "slowest rank", str),
                                 ("slowest_ms", "slowest ms", ms), ("fastest_rank", "fastest rank", str),
                                 ("fastest_ms", "fastest ms", ms), ("spread_ms", "spread ms", ms),
                                 ("finish_skew_ms", "finish skew ms", ms)]))
    return "".join(parts)


def _timeline(ranks, res, fig, rows=None) -> str:
    parts = ["<h2 id='timeline'>3. Timeline</h2>",
             '<p class="muted">One group of lanes per rank (its host lanes, then one GPU lane per CUDA stream; '
             f"colours as in a single report), on one clock: {e(ranks.clock)}.</p>"]
    f = ranks_timeline.figure(ranks, res, rows=rows)
    parts.append(fig(f) if f is not None else '<p class="muted">no inference recorded: nothing to draw</p>')
    return "".join(parts)


def _subgraphs(res) -> str:
    f1 = (lambda v: num(v, ".1f"))
    return ("<h2 id='subgraphs'>4. Per subgraph, per rank</h2>"
            '<p class="muted">Each rank\'s per-subgraph table (the columns of a single report, its section 7 says '
            "what they mean).</p>"
            + table(res.subgraphs, [("rank", "rank", str), ("model", "model", None), ("subgraph", "subgraph", None),
                                    ("kind", "kind", None), ("runtime", "runtime", None), ("calls", "calls", str),
                                    ("gpu_ms_total", "event brackets ms total", ms),
                                    ("gpu_us_median", "event bracket \u00b5s median", f1),
                                    ("host_us_median", "host \u00b5s median", f1),
                                    ("kernel_busy_us_median", "kernels busy \u00b5s median", f1),
                                    ("allocs", "allocations", str), ("alloc_ms_total", "allocation ms", ms),
                                    ("bytes_total", "bytes allocated", nbytes),
                                    ("break_cost_us_per_inference", "graph break \u00b5s / inference", f1)]))


def render(ranks, res, at=None, rows=None) -> str:
    """The page: `ranks` a timeline.ranks.Ranks, `res` its analysis.ranks.RankResults; `at`: the
    folder the page is written to (the links to each rank's own report are relative to it); `rows`:
    each rank's window rows (`ranks_timeline.figure`) where the ranks are not loaded whole."""
    fig = Figures()
    body = "".join([_header(ranks, res, Path(at) if at is not None else ranks.root), _latency(res, fig), _straggler(res, fig),
                    _timeline(ranks, res, fig, rows),
                    _subgraphs(res),
                    f'<p class="muted">Generated by trtprof {e(__version__)}. Times are host-clock nanoseconds '
                    "(CLOCK_MONOTONIC), GPU times from CUDA events converted to it.</p>"])
    return document(f"trtprof report \u2014 {ranks.root.name} ({len(ranks.captures)} ranks)", body, fig.n,
                    css=_CSS, failed="this report")
