"""`trtprof compare` in the terminal: one screen, verdict first, then end to end and per subgraph.

Why its own module: the HTML page needs plotly, this does not, so the comparison still prints on a
machine without plotly (the GPU box). Text from the captures (paths, names, shapes) has its control
characters escaped, so a hostile name cannot move the cursor or recolour the terminal.
"""
from __future__ import annotations

import math
import textwrap

import pandas as pd

from typing import TYPE_CHECKING

from trtprof.errors import clean as _clean

if TYPE_CHECKING:
    from trtprof.analysis.compare import CaptureDiff

MAX_SUBGRAPHS = 30  # rows of the per-subgraph table; beyond that the largest differences are shown
WIDTH = 118  # the per-subgraph table's width; warnings wrap to it
STATUS = {"both": "", "appeared": "new", "disappeared": "gone"}


def clean(s, width: int | None = None) -> str:
    """Capture text made safe and short for one terminal cell."""
    s = "" if s is None or s is pd.NA or (isinstance(s, float) and s != s) else _clean(s)
    if width is not None and len(s) > width:
        s = s[: width - 1] + "\u2026"
    return s


def _n(v, fmt: str = ".1f") -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(v) else format(v, fmt)


def pct_ci(d, lo, hi, significant) -> str:
    """'-33.4% [-34.2,-32.9]*': the difference in % of A, its 95 % CI, * when significant."""
    if d != d:
        return "-"
    f = ".0f" if max(abs(lo), abs(hi)) >= 10 else ".1f"
    ci = f" [{_n(lo, f)},{_n(hi, f)}]" if lo == lo else ""
    return f"{d:+.1f}%{ci}{'*' if significant is not None and significant is not pd.NA and bool(significant) else ''}"


def _side_line(label: str, path, lat: pd.DataFrame, meta: dict | None) -> str:
    env = (meta or {}).get("environment") if isinstance((meta or {}).get("environment"), dict) else {}
    gpu = clean(env.get("gpu")) if env.get("gpu") else "no GPU recorded"
    return f"{label}: {clean(path)}  ({len(lat)} inferences compared; {gpu})"


def _end_to_end(res: CaptureDiff) -> list[str]:
    head = f"  {'model / input shapes':<28} {'n A':>5} {'n B':>5} {'A ms':>8} {'B ms':>8} {'B-A ms':>8}  B-A % [95% CI]"
    lines = ["End to end, latency per inference (median):", head]
    for m in res.models:
        d = m.latency
        lines.append(f"  {clean(m.model, 28):<28} {d.n_a:>5} {d.n_b:>5} {_n(d.median_a, '.3f'):>8} "
                     f"{_n(d.median_b, '.3f'):>8} {_n(d.diff, '+.3f'):>8}  {pct_ci(d.diff_pct, *d.ci_pct, d.significant)}")
        if len(m.by_shape) > 1:
            for s in m.by_shape.itertuples(index=False):
                lines.append(f"    {clean(s.input_shapes, 26):<26} {s.n_a:>5} {s.n_b:>5} {_n(s.median_a_ms, '.3f'):>8} "
                             f"{_n(s.median_b_ms, '.3f'):>8} {_n(s.diff_ms, '+.3f'):>8}  "
                             f"{pct_ci(s.diff_pct, s.ci_lo_pct, s.ci_hi_pct, s.significant)}")
    return lines


def _ratio(a, b, fmt: str) -> str:
    return f"{_n(a, fmt)}\u2192{_n(b, fmt)}"


def _subgraphs(subs: pd.DataFrame, max_rows: int) -> list[str]:
    if subs.empty:
        return ["Per subgraph: no engine or fallback ran in the compared inferences."]
    shown, note = subs, ""
    if len(subs) > max_rows:
        order = (subs["gpu_diff_us"].abs().fillna(subs["host_diff_us"].abs()).fillna(float("inf"))
                 .sort_values(ascending=False, kind="stable").index[:max_rows])
        shown = subs.loc[sorted(order)]
        note = (f"  ({len(subs) - max_rows} more not shown: these are the {max_rows} with the largest GPU time "
                "differences; the HTML report has all)")
    lines = ["Per subgraph, median per call (us; GPU: CUDA-event bracket, host: the whole call); B-A in % of A "
             "[95% CI], * = significant:",
             f"  {'subgraph':<16} {'kind':<8} {'calls/inf':>9} {'GPU A':>7} {'GPU B':>7} {'GPU B-A':<18} "
             f"{'host A':>7} {'host B':>7} {'host B-A':<18} {'allocs/inf':>10}"]
    many = subs["model"].nunique() > 1
    for r in shown.itertuples(index=False):
        name = f"{r.model}/{r.subgraph}" if many else r.subgraph
        calls = _ratio(r.calls_per_inf_a, r.calls_per_inf_b, ".3g") if r.status == "both" else STATUS[r.status]
        lines.append(f"  {clean(name, 16):<16} {clean(r.kind, 8):<8} {calls:>9} {_n(r.gpu_us_a):>7} {_n(r.gpu_us_b):>7} "
                     f"{pct_ci(r.gpu_diff_pct, r.gpu_ci_lo_pct, r.gpu_ci_hi_pct, r.gpu_significant):<18} "
                     f"{_n(r.host_us_a):>7} {_n(r.host_us_b):>7} "
                     f"{pct_ci(r.host_diff_pct, r.host_ci_lo_pct, r.host_ci_hi_pct, r.host_significant):<18} "
                     f"{_ratio(r.allocs_per_inf_a, r.allocs_per_inf_b, '.2g'):>10}")
    if note:
        lines.append(note)
    return lines


def render(res: CaptureDiff, path_a, path_b, meta_a: dict | None = None, meta_b: dict | None = None,
           max_subgraphs: int = MAX_SUBGRAPHS) -> str:
    """The comparison of B against A as aligned text."""
    lines = [_side_line("A", path_a, res.latency_a, meta_a), _side_line("B", path_b, res.latency_b, meta_b),
             f"Compared: {clean(res.selection.describe())}.", "", clean(res.verdict), ""]
    if res.models:
        lines += _end_to_end(res) + [""]
    lines += _subgraphs(res.subgraphs, max_subgraphs)
    for label, names in (("appeared in B (not in A)", res.subgraphs.loc[res.subgraphs["status"] == "appeared"]),
                         ("disappeared (in A, not in B)", res.subgraphs.loc[res.subgraphs["status"] == "disappeared"])):
        if len(names):
            lines += textwrap.wrap(f"Subgraphs {label}: " + ", ".join(clean(s, 40) for s in names["subgraph"].head(40))
                                   + (f" and {len(names) - 40} more" if len(names) > 40 else ""),
                                   WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    for label, models in (("only in A", res.models_only_a), ("only in B", res.models_only_b)):
        if models:
            lines += textwrap.wrap(f"Models {label}: " + ", ".join(clean(m, 40) for m in models[:20]), WIDTH,
                                   subsequent_indent="  ", break_on_hyphens=False)
    if res.environment is not None and len(res.environment):
        lines += textwrap.wrap("Environment differs: " + "; ".join(
            f"{clean(k)} {clean(a) or '-'} \u2192 {clean(b) or '-'}" for k, a, b in res.environment.itertuples(index=False)),
            WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    for w in res.warnings:
        if not w.startswith("the captures ran in different"):  # the environment line says it
            lines += textwrap.wrap(f"warning: {clean(w)}", WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines)
