"""The comparison of two captures as one self-contained HTML page (plotly inlined, works offline).

Same page style and the same escaping rules as the single-capture report (`render/report_html.py`, with the kit in `render/page.py`), whose
helpers it uses: every string from the captures (paths, commands, model and subgraph names, shapes,
environment values) goes through `page.e` in the page and `figures.esc` inside plotly figures, and
figure JSON is embedded with `<`, `>` and `&` as \\u escapes. Figures have a bounded number of points
(binned histograms, one marker per subgraph), whatever the captures' size.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trtprof._version import __version__
from trtprof.render import figures
from trtprof.render.figures import Fig
from trtprof.render.page import Figures, command as _command, document, e, ms, nbytes, num as _num, table

if TYPE_CHECKING:
    from trtprof.analysis.compare import CaptureDiff
    from trtprof.timeline.store import Capture

COLORS = {"A": "#1f77b4", "B": "#ff7f0e"}
_CSS_MORE = ".faster{color:#1a7f37;font-weight:600} .slower{color:#c62828;font-weight:600}"


def _f1(v) -> str:
    return _num(v, ".1f")


def _pct(v) -> str:
    return _num(v, "+.1f")


def _flag(v) -> str:
    """yes / no, or "-" where no significance applies (a row in one capture only, too few values)."""
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return "-"
    return "yes" if bool(v) else "no"


# -- figures (plain plotly.js data, render/figures.py says why) --------------------------------------------
def latency_figure(res: CaptureDiff) -> Fig:
    """Latency per inference of the compared inferences, A and B overlaid (numpy-binned)."""
    fig = Fig()
    va = res.latency_a["latency_ns"].to_numpy(float) / 1e6
    vb = res.latency_b["latency_ns"].to_numpy(float) / 1e6
    both = np.r_[va, vb]
    if len(both):
        lo, hi = np.quantile(both, [0.0, 0.995])
        hi = hi if hi > lo else lo + 1e-3
        edges = np.linspace(lo, hi, 61)
        for side, v in (("A", va), ("B", vb)):
            if not len(v):
                continue
            counts, _ = np.histogram(np.clip(v, lo, hi), edges)
            figures.bar(fig, x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), opacity=0.6,
                        name=f"{side} ({len(v)}, median {np.median(v):.3f} ms)", marker={"color": COLORS[side]})
    figures.layout(fig, "Latency per inference, compared inferences (the last bin holds the slowest 0.5 %)",
                   barmode="overlay")
    fig.axis("xaxis", title={"text": "latency, ms (call until host and GPU are done)"})
    fig.axis("yaxis", title={"text": "inferences"})
    return fig


def subgraph_figure(subs: pd.DataFrame) -> Fig:
    """B - A per subgraph in % of A with its 95 % CI, GPU and host time per call: what moved, and how surely."""
    d = subs[subs["status"] == "both"]
    names = figures.esc_all(d["subgraph"] if d["model"].nunique() <= 1 else d["model"] + "/" + d["subgraph"])
    fig = Fig()
    for m, label, color in (("gpu", "GPU time per call (CUDA-event bracket)", "#1f77b4"),
                             ("host", "host time per call (the whole call)", "#7f7f7f")):
        x = d[f"{m}_diff_pct"].to_numpy(float)
        if not np.isfinite(x).any():
            continue
        lo, hi = d[f"{m}_ci_lo_pct"].to_numpy(float), d[f"{m}_ci_hi_pct"].to_numpy(float)
        fig.add("scatter", x=x, y=names, mode="markers", name=label, marker={"color": color, "size": 8},
                error_x={"type": "data", "symmetric": False, "array": np.nan_to_num(hi - x),
                         "arrayminus": np.nan_to_num(x - lo)},
                hovertemplate="%{y}: %{x:+.1f} %<extra>" + label + "</extra>")
    figures.layout(fig, "Per subgraph: B \u2212 A in % of A, with 95 % CI (left of 0: B faster)",
                   height=max(300, 120 + 22 * len(d)))
    fig.layout["shapes"] = [{"type": "line", "x0": 0, "x1": 0, "xref": "x", "y0": 0, "y1": 1, "yref": "y domain",
                             "line": {"color": "#444", "width": 1}}]
    fig.axis("xaxis", title={"text": "B \u2212 A, % of A's median"})
    fig.axis("yaxis", autorange="reversed", type="category")
    return fig


# -- sections -----------------------------------------------------------------------------------------------
def _side(cap: Capture, lat: pd.DataFrame, runtimes: list) -> list[tuple[str, str]]:
    meta = cap.meta
    env = meta.get("environment") if isinstance(meta.get("environment"), dict) else {}
    return [("capture", str(cap.path) if cap.path else ""), ("command", _command(meta)),
            ("started", str(meta.get("start_time", ""))),
            ("status", "complete" if cap.complete else f"incomplete: {meta.get('incomplete_reason') or ''}"),
            ("inferences compared", f"{len(lat):,}"), ("engine runtime", ", ".join(runtimes)),
            ("GPU", str(env.get("gpu") or "none recorded")),
            ("versions", ", ".join(f"{k} {env[k]}" for k in ("torch", "torch_tensorrt", "tensorrt") if env.get(k)))]


def _header(res: CaptureDiff, a: Capture, b: Capture) -> str:
    sa, sb = _side(a, res.latency_a, res.runtimes_a), _side(b, res.latency_b, res.runtimes_b)
    rows = "".join(f"<tr><th>{e(k)}</th>" + "".join(f"<td>{'<code>' + e(v) + '</code>' if k == 'command' and v else e(v)}</td>"
                                                   for v in (va, vb)) + "</tr>"
                   for (k, va), (_, vb) in zip(sa, sb))
    return ("<h1>trtprof compare</h1><p class=\"muted\">Capture B against capture A: end-to-end latency per "
            "inference and per-subgraph GPU and host time, each difference B \u2212 A with a 95 % bootstrap "
            "confidence interval (each capture resampled independently). Negative: B is faster.</p>"
            f'<div class="scroll"><table><thead><tr><th></th><th>A</th><th>B</th></tr></thead><tbody>{rows}'
            "</tbody></table></div>")


def _verdict(res: CaptureDiff) -> str:
    parts = ["<h2 id='verdict'>1. Verdict</h2>"]
    for m in res.models:
        cls = "" if not m.latency.significant else "faster" if m.latency.diff < 0 else "slower"
        name = f"{e(m.model)}: " if len(res.models) > 1 else ""
        parts.append(f'<p class="verdict {cls}">{name}{e(m.verdict)}</p>')
    if not res.models:
        parts.append(f'<p class="verdict">{e(res.verdict)}</p>')
    parts.append(f'<p class="muted">Compared: {e(res.selection.describe())}.</p>')
    for w in res.warnings:
        parts.append(f'<div class="card warn">{e(w)}</div>')
    return "".join(parts)


def _end_to_end(res: CaptureDiff, fig) -> str:
    if not res.models:
        return ""
    rows = []
    for m in res.models:
        d = m.latency
        rows.append({"model": m.model, "input_shapes": "all compared", "n_a": d.n_a, "n_b": d.n_b,
                     "median_a_ms": d.median_a, "median_b_ms": d.median_b, "diff_ms": d.diff, "diff_pct": d.diff_pct,
                     "ci_lo_pct": d.ci_pct[0], "ci_hi_pct": d.ci_pct[1], "significant": d.significant if d.enough else None})
        if len(m.by_shape) > 1:
            rows += [dict(r, model=m.model) for r in m.by_shape.to_dict("records")]
    cols = [("model", "model", None), ("input_shapes", "input shapes", None), ("n_a", "inferences A", str),
            ("n_b", "inferences B", str), ("median_a_ms", "median A ms", ms), ("median_b_ms", "median B ms", ms),
            ("diff_ms", "B \u2212 A ms", lambda v: _num(v, "+.3f")), ("diff_pct", "B \u2212 A %", _pct),
            ("ci_lo_pct", "95 % CI from %", _pct), ("ci_hi_pct", "to %", _pct), ("significant", "significant", _flag)]
    return ("<h2 id='latency'>2. End to end</h2>"
            '<p class="muted">Latency of one inference = from the call of the compiled model until both the host '
            "returned and the GPU finished its work (host time alone where a capture has no GPU times). "
            "Rows per input shape appear when more than one was compared.</p>"
            + table(pd.DataFrame(rows), cols) + fig(latency_figure(res)))


def _subgraphs(res: CaptureDiff, fig) -> str:
    s = res.subgraphs
    parts = ["<h2 id='subgraphs'>3. Per subgraph</h2>",
             '<p class="muted">Matched by model and subgraph name. GPU time per call: the CUDA-event bracket '
             "around the engine's execution or the fallback's kernels (it includes the GPU waiting for the "
             "host); host time of the whole call. Medians over the calls in the "
             "compared inferences, B \u2212 A in % of A with a 95 % CI. Status: both, appeared (only in B) or "
             "disappeared (only in A).</p>"]
    if s.empty:
        parts.append('<p class="muted">no engine or fallback ran in the compared inferences</p>')
        return "".join(parts)
    if (s["status"] == "both").any():
        parts.append(fig(subgraph_figure(s)))
    parts.append(table(s, [("model", "model", None), ("subgraph", "subgraph", None), ("kind", "kind", None),
                           ("status", "status", None), ("runtime_a", "runtime A", None), ("runtime_b", "runtime B", None),
                           ("calls_a", "calls A", str), ("calls_b", "calls B", str),
                           ("gpu_us_a", "event bracket \u00b5s A", _f1), ("gpu_us_b", "event bracket \u00b5s B", _f1),
                           ("gpu_diff_pct", "event bracket B \u2212 A %", _pct), ("gpu_ci_lo_pct", "CI from %", _pct),
                           ("gpu_ci_hi_pct", "to %", _pct), ("gpu_significant", "significant", _flag),
                           ("host_us_a", "host \u00b5s A", _f1), ("host_us_b", "host \u00b5s B", _f1),
                           ("host_diff_pct", "host B \u2212 A %", _pct), ("host_ci_lo_pct", "CI from %", _pct),
                           ("host_ci_hi_pct", "to %", _pct), ("host_significant", "significant", _flag)]))
    for status, label in (("appeared", "Appeared in B (not in A)"), ("disappeared", "Disappeared (in A, not in B)")):
        names = s.loc[s["status"] == status, "subgraph"]
        if len(names):
            parts.append(f"<p><b>{e(label)}:</b> " + ", ".join(f"<code>{e(n)}</code>" for n in names) + "</p>")
    for label, models in (("Models only in A", res.models_only_a), ("Models only in B", res.models_only_b)):
        if models:
            parts.append(f"<p><b>{e(label)}:</b> " + ", ".join(f"<code>{e(m)}</code>" for m in models) + "</p>")
    return "".join(parts)


def _allocations(res: CaptureDiff) -> str:
    s = res.subgraphs[res.subgraphs["kind"] == "engine"]
    return ("<h2 id='allocations'>4. Output allocations per inference</h2>"
            '<p class="muted">Output allocations recorded per compared inference, their host time and bytes. '
            "With pre-allocated outputs the allocation moves after the enqueue and may happen less often.</p>"
            + table(s, [("model", "model", None), ("subgraph", "subgraph", None),
                        ("allocs_per_inf_a", "allocations A", lambda v: _num(v, ".2f")),
                        ("allocs_per_inf_b", "allocations B", lambda v: _num(v, ".2f")),
                        ("alloc_us_per_inf_a", "host \u00b5s A", _f1), ("alloc_us_per_inf_b", "host \u00b5s B", _f1),
                        ("bytes_per_inf_a", "bytes A", nbytes), ("bytes_per_inf_b", "bytes B", nbytes)]))


def _environment(res: CaptureDiff) -> str:
    env = res.environment
    if env is None or env.empty:
        return ("<h2 id='environment'>5. Environment</h2><p class=\"muted\">GPU, driver, CUDA and versions are the "
                "same in both captures (as far as recorded).</p>")
    return ("<h2 id='environment'>5. Environment</h2><p class=\"muted\">Entries that differ between the "
            "captures:</p>" + table(env, [("key", "entry", None), ("a", "A", None), ("b", "B", None)]))


def render(res: CaptureDiff, a: Capture, b: Capture) -> str:
    """The comparison page as one HTML string."""
    fig = Figures()
    body = "".join([_header(res, a, b), _verdict(res), _end_to_end(res, fig), _subgraphs(res, fig),
                    _allocations(res), _environment(res),
                    f'<p class="muted">Generated by trtprof {e(__version__)}.</p>'])
    title = (f"trtprof compare \u2014 {a.path.name if a.path else 'A'} vs {b.path.name if b.path else 'B'}")
    return document(title, body, fig.n, css=_CSS_MORE)
