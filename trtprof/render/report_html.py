"""The HTML report: one self-contained file (plotly.js inlined, works offline) a newcomer can read.

Data in, text out: the analysis results and the nsys view come in, the page goes out; the kit
(escaping, tables, figures) is `render.page`.

Scale: statistics use every row; only the timeline is windowed and the latency series bucketed, so a
1,000,000-row capture stays a few MB (see bench/bench_report.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trtprof._version import __version__
from trtprof.analysis import prealloc as prealloc_analysis
from trtprof.analysis import shapes as shape_analysis
from trtprof.analysis import report as analysis
from trtprof.analysis.latency import cold_starts, first_inference_kept
from trtprof.render import figures, timeline_fig
from trtprof.render.nsys_html import section as nsys_section
from trtprof.render.page import Figures, command, document, e, ms, nbytes, num as _num, pct, table, us

if TYPE_CHECKING:
    from trtprof.analysis.report import Results
    from trtprof.timeline.store import Capture

REPORT = "report.html"
_BUSY = {"kernels": "the kernels and copies CUPTI recorded (what the GPU really ran)",
         "kernel spans": "each call's kernel span (first kernel start to last end; gaps inside count as busy)",
         "event brackets": "CUDA-event brackets around each call, which include the GPU waiting for the host: "
                           "an upper bound of busy, so 'hidden' is an upper bound too (on the C++ runtime it "
                           "says nothing: record kernels, with cupti-python installed)"}


def _true(v) -> bool:
    """A flag cell (bool, numpy or pandas boolean, or missing) as a plain bool; missing is False."""
    try:
        return bool(v)
    except TypeError:  # pd.NA
        return False


def _or_unknown(v) -> str:
    """Microseconds, or "unknown" where the split could not be measured (NaN, NA)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "unknown"
    return "unknown" if f != f else us(f)


# -- sections -----------------------------------------------------------------------------------------------
def _recorded(meta: dict) -> str:
    """What the capture recorded: its level, and sampling (then counts are of recorded inferences)."""
    level, n = meta.get("level"), meta.get("sample")
    if not level:
        return ""
    text = f"level {level}"
    if isinstance(n, int) and n > 1:
        return text + f"; sampled: 1 inference in {n}, plus every input-shape change and the inference after it"
    return text + "; every inference"


def _header(cap: Capture, r: Results, rows: int | None = None) -> str:
    meta, df = cap.meta, cap.timeline
    env = meta.get("environment") if isinstance(meta.get("environment"), dict) else {}
    items = [("capture", str(cap.path) if cap.path else ""), ("command", command(meta)),
             ("started", meta.get("start_time", "")), ("rows", f"{len(df) if rows is None else rows:,}"),
             ("inferences", f"{len(r.infs):,}"), ("recorded", _recorded(meta)), ("GPU", env.get("gpu") or "none recorded"),
             ("versions", ", ".join(f"{k} {env[k]}" for k in ("torch", "torch_tensorrt", "tensorrt") if env.get(k)))]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{'<code>' + e(v) + '</code>' if k == 'command' else e(v)}</dd>"
                 for k, v in items if v)
    warn = ""
    if not cap.complete:
        warn = (f'<div class="card warn"><b>Incomplete capture</b>: '
                f'{e(meta.get("incomplete_reason") or "the run did not finish normally")}. '
                "Everything recorded before that is shown.</div>")
    if not r.gpu_times:
        warn += ('<div class="card warn"><b>No GPU times</b> in this capture (recorded without CUDA, or CUDA '
                 "events failed): latencies are host times; GPU lanes, hidden/exposed allocation and GPU idle "
                 "gaps cannot be measured.</div>")
    return (f"<h1>trtprof report</h1><p class=\"muted\">Where Torch-TensorRT inference spends its time: output "
            f"allocation, engine execution on the GPU, PyTorch fallbacks, and input shape changes.</p>"
            f'<div class="card"><dl>{dl}</dl></div>{warn}'
            '<nav class="muted">Sections: <a href="#headline">headline</a> \u00b7 <a href="#recommendations">'
            'recommendations</a> \u00b7 <a href="#timeline">timeline</a> \u00b7 <a href="#latency">latency</a> \u00b7 <a href="#overlap">allocation '
            'overlap</a> \u00b7 <a href="#shapes">shape changes</a> \u00b7 <a href="#subgraphs">per subgraph</a></nav>')


def _headline(r: Results, fig) -> str:
    """A capture that compared CUDA graphs leads with that comparison; a pre-allocation verdict that
    compares nothing (one mode only) is then a plain line under it, not a second headline."""
    what = "pre-allocated outputs and CUDA graphs" if r.cudagraphs else "pre-allocated outputs"
    parts = [f"<h2 id='headline'>1. Headline: latency, {what}</h2>",
             '<p class="muted">Latency of one inference = from the call of the compiled model until both the '
             "host returned and the GPU finished its work. Median and 10th/90th percentiles; the difference "
             "between modes comes with a 95 % bootstrap confidence interval. Excluded: "
             + ("the first inference (cold start, given in section 4), " if first_inference_kept(r.latency)[0] else "")
             + "the first after pre-allocated outputs were switched on (it allocates to fill the buffer), "
             "CUDA-graph warm-up and capture, and inferences that raised.</p>"]
    parts.append(_cudagraphs(r))
    for c in r.comparisons:
        kind = "verdict" if c.compared or not r.cudagraphs else "muted"
        parts.append(f'<p class="{kind}">{e(c.model)}: {e(c.verdict)}</p>')
        detail = [t for t in (c.shape_note and c.shape_note[0].upper() + c.shape_note[1:] + ".",
                              prealloc_analysis.tail_sentence(c)) if t]
        if detail:
            parts.append(f'<p class="muted verdict-detail">{"<br>".join(e(t) for t in detail)}</p>')
    if not r.comparisons:
        parts.append('<p class="verdict">No top-level inference was recorded, so there is no latency to '
                     "report; the per-subgraph table below still has every engine call.</p>")
    fmt = [("n", "inferences", str), ("median_ms", "median ms", ms), ("p10_ms", "p10 ms", ms), ("p90_ms", "p90 ms", ms)]
    bm = r.by_mode.assign(mode=r.by_mode["mode"].map(lambda m: figures.MODE_LABEL.get(m, m)))
    parts.append(table(bm, [("model", "model", None), ("mode", "pre-allocated outputs", None)] + fmt))
    if len(r.by_shape) > len(r.by_mode):
        bs = r.by_shape.assign(mode=r.by_shape["mode"].map(lambda m: figures.MODE_LABEL.get(m, m)))
        parts.append("<p>By input shape:</p>" + table(bs, [("model", "model", None), ("mode", "pre-allocated outputs", None),
                                                           ("input_shapes", "input shapes", None)] + fmt))
    return "".join(parts)


def _cudagraphs(r: Results) -> str:
    """CUDA graphs off vs on (a capture that ran both: --cudagraphs alternate, or the script's own)."""
    if not r.cudagraphs:
        return ""
    import pandas as pd

    parts = ['<p class="muted">CUDA graphs off vs on: warm-up and capture inferences, and the first 2 after '
             "each switch of --cudagraphs alternate, are left out; the difference comes with a 95 % bootstrap "
             "confidence interval.</p>"]
    rows = []
    for c in r.cudagraphs:
        parts.append(f'<p class="verdict">{e(c.model)}: {e(c.verdict)}</p>')
        p90 = c.tails[0] if c.tails else None
        rows.append({"model": c.model, "n_off": c.n_off, "n_on": c.n_on, "median_off": c.median_off_ms,
                     "median_on": c.median_on_ms, "p90_off": p90.off_ms if p90 else float("nan"),
                     "p90_on": p90.on_ms if p90 else float("nan"), "saved": c.saved_ms,
                     "ci": f"{c.ci_ms[0]:+.3f} to {c.ci_ms[1]:+.3f}" if c.tails else "-"})
    parts.append(table(pd.DataFrame(rows), [
        ("model", "model", None), ("n_off", "off: n", str), ("median_off", "off: median ms", ms),
        ("p90_off", "off: p90 ms", ms), ("n_on", "on: n", str), ("median_on", "on: median ms", ms),
        ("p90_on", "on: p90 ms", ms), ("saved", "saved ms (median)", ms), ("ci", "95 % CI of the saving, ms", None)]))
    return "".join(parts)


def _latency(r: Results, fig) -> str:
    if r.latency.empty:
        return ""
    return ("<h2 id='latency'>4. Latency per inference</h2>"
            '<p class="muted">The distribution for each mode, and every inference in run order (bucketed into '
            "min/median/max when there are many), to see warm-up, drift, the switch between modes and the "
            "inferences slowed by shape changes.</p>" + _cold(r.latency)
            + fig(figures.latency_histogram(r.latency)) + fig(figures.latency_over_run(r.latency)))


def _cold(lat) -> str:
    """The first inference of each model, measured (host and GPU, as every latency here), apart."""
    c = cold_starts(lat)
    if c.empty:
        return ""
    many = c["pid"].nunique() > 1
    items = []
    for row in c.itertuples(index=False):
        who = e(row.model) + (f" (process {row.pid})" if many else "")
        rest = f", against a median of {row.median_ms:.3f} ms for the inferences after it" \
            if row.median_ms == row.median_ms else ""
        if row.raised and row.latency_ms != row.latency_ms:
            items.append(f"<li>{who}: every recorded inference raised, so no cold start was measured.</li>")
            continue
        where = "left out of the statistics" if row.excluded else "included in this capture's statistics"
        first = (f"the first inference raised (left out); the first that did not, inference {row.inference}, took "
                 f"{row.latency_ms:.3f} ms") if row.raised else f"first inference {row.latency_ms:.3f} ms"
        items.append(f"<li>{who}: {first}{rest}; {where}.</li>")
    return ('<p class="muted">Cold start: the first inference trtprof saw in this process; where the process '
            "had not run the model before, it sets the engines up (execution contexts, kernels loaded, the "
            "caching allocator warmed).</p><ul>" + "".join(items) + "</ul>")


def _recommendations(r: Results) -> str:
    parts = ["<h2 id='recommendations'>2. Recommendations</h2>",
             '<p class="muted">Computed from this capture; the gain is per inference, measured where both '
             "alternatives ran, otherwise an estimate (usually an upper bound).</p>"]
    if r.recommendations.empty:
        parts.append('<div class="card">Nothing worth changing found: exposed allocation, forced '
                     "re-allocations, graph breaks and Python gaps each cost less than "
                     f"{analysis.SIGNIFICANT_SHARE:.0%}\u2013{analysis.PYTHON_SHARE:.0%} of the median latency.</div>")
        return "".join(parts)
    items = []
    for rec in r.recommendations.itertuples(index=False):
        gain = f"{rec.gain_ms:.3f} ms per inference" + (f" ({rec.gain_pct:.0f} % of the median latency)" if rec.gain_pct == rec.gain_pct else "")
        how = f'<br><span class="muted arithmetic">How: {e(rec.arithmetic)}</span>' if rec.arithmetic else ""
        items.append(f"<li><b>{e(rec.action)}</b> \u2014 gain {e(gain)}, {e(rec.basis)}.<br>{e(rec.why)}{how}</li>")
    parts.append(f'<ol class="card">{"".join(items)}</ol>')
    return "".join(parts)


def _timeline(cap: Capture, r: Results, fig, nsys=None, window=None) -> str:
    win, centre, why = window or timeline_fig.choose_window(cap.timeline, r.infs, r.changes, r.latency)
    filled = getattr(nsys, "filled", 0)
    kernels, source = cap.kernels, "CUPTI"
    if kernels is None and getattr(nsys, "kernels", None) is not None and len(nsys.kernels):
        kernels, source = nsys.kernels, "Nsight Systems"
    if filled:
        gpu = (f"kernel spans from the Nsight Systems import (first kernel or copy start to last end, "
               f"{filled} calls) drawn solid over faint CUDA-event brackets")
    elif r.kernels and cap.kernels is not None:
        gpu = ("kernel spans (first kernel start to last kernel end) drawn solid over faint CUDA-event brackets, "
               "and below them each kernel and copy CUPTI recorded, one lane per CUPTI stream")
    elif r.kernels:
        gpu = "kernel spans (first kernel start to last kernel end) drawn solid over faint CUDA-event brackets"
    else:
        gpu = "CUDA-event brackets, which include the GPU waiting for the host (no kernel activity was recorded)"
    if source == "Nsight Systems":
        gpu += ", and below them each kernel and copy of the Nsight Systems import, one lane per CUDA stream"
    parts = ["<h2 id='timeline'>3. Timeline</h2>",
             '<p class="muted">One host-clock axis. Host lanes: the inference call, output allocations (red: '
             "before execution, on the critical path; green: after the enqueue, for the next call; a "
             "re-allocation with pre-allocated outputs on has its own colour per cause: the first call after "
             "switching on, an input shape change, or outputs the caller kept), enqueues, PyTorch fallbacks, "
             "and Python in between (host time inside the inference not covered by those). GPU lanes: one per "
             f"CUDA stream, named by its role; engines in blue, fallbacks in orange, as {e(gpu)}; grey: the GPU "
             "idle between subgraphs.</p>"]
    if win.empty:
        parts.append('<p class="muted">no inference recorded: nothing to draw</p>')
    else:
        parts.append(fig(timeline_fig.timeline_figure(cap.timeline, win, centre, why, r.allocs, r.gaps, r.streams,
                                                      kernels=kernels, kernel_source=source)))
    return "".join(parts)


def _overlap(r: Results, fig, nsys=None) -> str:
    busy = _BUSY.get(r.busy_source, "nothing (no GPU times)")
    if getattr(nsys, "filled", 0) and r.busy_source == "kernel spans":
        busy = "each call's kernel span from the Nsight Systems import (first kernel or copy start to last end)"
    parts = ["<h2 id='overlap'>5. Does allocation overlap GPU execution?</h2>",
             '<p class="muted">For every output allocation, the part of its host time during which the GPU was '
             "busy with any engine or fallback (hidden: free) and the part during which it was idle (exposed: "
             "the GPU waited). Per subgraph and mode, averaged over the inferences of that mode.</p>",
             f'<p class="muted">GPU busy measured from: <b>{e(busy)}</b>.</p>']
    if not r.gpu_times:
        parts.append('<p class="card warn">No GPU times: hidden and exposed time cannot be measured. Allocation '
                     "host time per inference:</p>")
    elif len(r.exposure):
        if r.overlap_caveat:
            parts.append(f'<p class="card warn" id="overlap-caveat">{e(r.overlap_caveat)}</p>')
        parts.append(fig(figures.exposure_figure(r.exposure, r.busy_source)))
    split = _or_unknown if r.gpu_times else us
    mode = r.exposure.assign(mode=r.exposure["mode"].map(lambda m: figures.MODE_LABEL.get(m, m)))
    parts.append(table(mode, [("model", "model", None), ("subgraph", "subgraph", None),
                              ("mode", "pre-allocated outputs", None), ("inferences", "inferences", str),
                              ("allocs_per_inference", "allocations / inference", lambda v: _num(v, ".2f")),
                              ("bytes_per_inference", "bytes / inference", nbytes),
                              ("alloc_ns_per_inference", "allocation \u00b5s / inference", us),
                              ("hidden_ns_per_inference", "hidden \u00b5s", split),
                              ("exposed_ns_per_inference", "exposed \u00b5s", split)]))
    parts.append("<h3>GPU idle gaps between subgraphs</h3>"
                 '<p class="muted">Inside each inference, the GPU was idle between the end of one subgraph\'s GPU '
                 "work and the start of the next; what was the host doing meanwhile? Allocating outputs, running a "
                 "PyTorch fallback, enqueuing the next engine, or Python code we did not record.</p>")
    if len(r.gap_summary):
        parts.append(fig(figures.gaps_figure(r.gap_summary, r.busy_source)))
        gs = r.gap_summary.assign(mode=r.gap_summary["mode"].map(lambda m: figures.MODE_LABEL.get(m, m)))
        parts.append(table(gs, [("model", "model", None), ("mode", "pre-allocated outputs", None),
                                ("before", "after GPU work of", None), ("after", "before GPU work of", None),
                                ("occurrences", "gaps", str), ("gap_ns_per_inference", "idle \u00b5s / inference", us),
                                ("alloc_ns_per_inference", "allocating", us), ("fallback_ns_per_inference", "fallback", us),
                                ("enqueue_ns_per_inference", "enqueue", us), ("python_ns_per_inference", "Python", us)]))
    else:
        parts.append(f'<p class="muted" id="gap-reason">No GPU idle gaps to show: {e(r.gap_reason)}.</p>')
    return "".join(parts)


def _shapes(r: Results) -> str:
    parts = ["<h2 id='shapes'>6. Input shape changes</h2>",
             '<p class="muted">A call whose input shapes differ from the previous call of the same subgraph. With '
             "pre-allocated outputs on, the buffer prepared for the old shape is thrown away and outputs are "
             "allocated again before execution.</p>"]
    if r.shape_advice:
        parts.append(f'<div class="card warn">{e(r.shape_advice)} '
                     f'(<a href="{e(shape_analysis.TUTORIAL_URL)}">tutorial</a>)</div>')
    alternating = r.frequency[r.frequency["alternating"].fillna(False).astype(bool)] if len(r.frequency) else r.frequency
    if len(alternating):
        names = ", ".join(f"{m}/{g}" for m, g in zip(alternating["model"], alternating["subgraph"]))
        parts.append(f'<div class="card warn" id="alternating">Shapes alternate call by call in {e(names)} '
                     "(A, B, A, B): the runtime compares with the last shape only, so with pre-allocated outputs "
                     "on every such call throws the buffers away.</div>")
    parts.append(table(r.frequency, [("model", "model", None), ("subgraph", "subgraph", None), ("kind", "kind", None),
                                     ("calls", "calls", str), ("changes", "shape changes", str), ("share", "share", pct),
                                     ("distinct_shapes", "distinct shapes", str),
                                     ("prealloc_changes", "changes with pre-alloc on", str),
                                     ("alternating", "alternating", lambda v: "yes" if _true(v) else "no")]))
    if len(r.changes):
        parts.append(f"<p>The {len(r.changes):,} changes by transition (pre-allocated outputs on first; every "
                     "change is a row of the timeline, <code>trtprof.load()</code>):</p>")
        parts.append(table(r.transitions, max_rows=50, cols=[
            ("model", "model", None), ("subgraph", "subgraph", None),
            ("prealloc", "pre-allocated outputs", lambda v: "on" if _true(v) else "off"),
            ("old_shapes", "old shapes", None), ("new_shapes", "new shapes", None), ("changes", "changes", str),
            ("thrown_away", "buffers thrown away", str), ("realloc_us_median", "new allocation \u00b5s median",
                                                          lambda v: _num(v, ".1f")),
            ("exposed_us_median", "of which exposed \u00b5s median", lambda v: _num(v, ".1f")),
            ("discarded_bytes", "bytes thrown away", nbytes)]))
    else:
        parts.append('<p class="muted">No input shape changed during the capture.</p>')
    return "".join(parts)


def _subgraphs(r: Results) -> str:
    return ("<h2 id='subgraphs'>7. Per subgraph</h2>"
            '<p class="muted">Engines run in TensorRT; fallbacks are the parts PyTorch runs between them (graph '
            "breaks). Event bracket: the CUDA events around the call (the GPU's waiting for the host included); "
            "kernels busy: the time the GPU ran the call's kernels (union of their intervals, CUPTI), kernel span: "
            "first kernel start to last kernel end (0 for a call that ran none), all three medians over the same calls; "
            "idle in bracket: the median over calls of bracket minus busy; copies: the memory copies CUPTI "
            "saw inside the call and their GPU time (in CUDA-graph per-engine mode, the staging copies in and out of "
            "the graph's buffers); bound (from kernels and host times, not the bracket): launch-bound when the "
            "kernels were busy under half of the time from the call's start until it and its last kernel were done, "
            "while the host took at least 80 % of that time; GPU-bound when the host was done within the first half of "
            "that time and the kernels kept the GPU busy at least 80 % of their span; else mixed; none for calls that "
            "ran no kernel. Host time of the "
            "whole call; allocation counts cover every call (medians leave out the calls marked excluded: the cold start, the first after a pre-allocation switch); the cost of a graph break is the fallback's GPU window (its kernel span where recorded, else its "
            "bracket) plus the GPU idle gaps right before and after it, per inference (an estimate)."
            + (" This capture ran with CUDA graphs both off and on: each median here is over the calls of both "
               "modes together (the copies' medians among them); the headline compares the two modes."
               if r.cudagraphs else "") + "</p>"
            + table(r.subgraphs, [("model", "model", None), ("subgraph", "subgraph", None), ("kind", "kind", None),
                                  ("runtime", "runtime", None), ("calls", "calls", str),
                                  ("gpu_ms_total", "event brackets ms total", ms), ("gpu_us_median", "event bracket \u00b5s median", lambda v: _num(v, ".1f")),
                                  ("host_us_median", "host \u00b5s median", lambda v: _num(v, ".1f")),
                                  ("enqueue_us_median", "enqueue \u00b5s median", lambda v: _num(v, ".1f")),
                                  ("allocs", "allocations", str), ("alloc_ms_total", "allocation ms", ms),
                                  ("hidden_ms_total", "hidden ms", ms), ("exposed_ms_total", "exposed ms", ms),
                                  ("bytes_total", "bytes allocated", nbytes),
                                  ("break_cost_us_per_inference", "graph break \u00b5s / inference", lambda v: _num(v, ".1f"))]
                    + ([("kernels_median", "kernels / call", lambda v: _num(v, ".0f")),
                       ("kernel_busy_us_median", "kernels busy \u00b5s median", lambda v: _num(v, ".1f")),
                       ("kernel_span_us_median", "kernel span \u00b5s median", lambda v: _num(v, ".1f")),
                       ("gpu_idle_us_median", "idle in bracket \u00b5s", lambda v: _num(v, ".1f")),
                       ("copies_median", "copies / call", lambda v: _num(v, ".0f")),
                       ("copy_us_median", "copy \u00b5s median", lambda v: _num(v, ".1f")),
                       ("bound", "bound", None)] if r.busy_source in ("kernels", "kernel spans") else [])))


def _footer(cap: Capture, r: Results) -> str:
    notes = cap.meta.get("notes") if isinstance(cap.meta.get("notes"), list) else []
    li = "".join(f"<li>{e(n)}</li>" for n in list(r.data_notes) + notes)
    return (("<h2 id='notes'>Notes from the capture</h2><ul>" + li + "</ul>" if li else "")
            + f'<p class="muted">Generated by trtprof {e(__version__)}. Times are host-clock nanoseconds '
              "(CLOCK_MONOTONIC); GPU times come from CUDA events converted to the host clock.</p>")


def render(cap: Capture, r: Results, nsys=None, window=None, rows: int | None = None) -> str:
    """The report as one HTML string: `r` is `analysis.report.analyse(cap.timeline)`, `nsys` the
    capture's nsys import as `nsys.store.ReportView` (or None). A capture analysed chunk by chunk
    (`analysis.streamed`) comes as the rows of its timeline's `window` (keys, centre, why, from
    `timeline_fig.choose_window`) with its number of `rows`."""
    fig = Figures()
    body = "".join([_header(cap, r, rows), _headline(r, fig), _recommendations(r), _timeline(cap, r, fig, nsys, window),
                    _latency(r, fig), _overlap(r, fig, nsys), _shapes(r), _subgraphs(r),
                    nsys_section(nsys), _footer(cap, r)])
    title = f"trtprof report \u2014 {cap.path.name if cap.path else 'capture'}"
    return document(title, body, fig.n, failed="this report")
