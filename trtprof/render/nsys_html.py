"""The report's Nsight Systems section: trtprof's CUDA-event GPU times beside nsys's kernel times.

Data in (`nsys.importer.ReportView`), HTML out; '' when the capture has no nsys import, so reports
without one are unchanged. Built with the page kit, so every string is escaped the same way.
"""
from __future__ import annotations

from trtprof.render.page import e, num, table


def _f(fmt: str, suffix: str = ""):
    return lambda v: (num(v, fmt) + suffix) if num(v, fmt) != "\u2014" else "\u2014"


_COLS = [("subgraph", "subgraph", None), ("kind", "kind", None), ("calls", "calls", _f(".0f")),
         ("event_us", "CUDA event bracket \u00b5s", _f(".1f")), ("span_us", "nsys kernel span (first\u2192last) \u00b5s", _f(".1f")),
         ("busy_us", "nsys kernels busy \u00b5s", _f(".1f")), ("kernels", "kernels", _f(".0f")),
         ("diff_busy_pct", "bracket vs busy", _f("+.1f", " %")), ("diff_span_pct", "bracket vs span", _f("+.1f", " %")),
         ("lead_us", "before 1st kernel \u00b5s", _f(".1f")), ("tail_us", "after last kernel \u00b5s", _f(".1f"))]


def _n(v, scale: float, fmt: str) -> str:
    try:
        return format(float(v) / scale, fmt)
    except (TypeError, ValueError):
        return "\u2014"


def section(view) -> str:
    """HTML for the capture's nsys import, '' when there is none."""
    if view is None:
        return ""
    title = "<h2 id='nsys'>8. Nsight Systems: CUDA event brackets against kernels</h2>"
    if view.error:
        return title + f'<div class="card warn">The nsys import cannot be read: {e(view.error)}</div>'
    s = view.summary
    clock = s.get("clock") if isinstance(s.get("clock"), dict) else {}
    spread = s.get("start_spread") if isinstance(s.get("start_spread"), dict) else {}
    facts = (f"{e(s.get('matched_nvtx', '?'))} of {e(s.get('rows', '?'))} rows paired with their NVTX range, "
             f"{e(s.get('matched_window', 0))} by their host interval (no range of their own), "
             f"{e(s.get('unmatched', 0))} outside the report. Clock: nsys + "
             f"{e(_n(clock.get('offset_ns'), 1e9, '.6f'))} s, start differences spread "
             f"{e(_n(spread.get('mad_ns'), 1e3, '.2f'))} \u00b5s (MAD), "
             f"{e(_n(spread.get('max_ns'), 1e3, '.2f'))} \u00b5s at most.")
    notes = s.get("notes") if isinstance(s.get("notes"), list) else []
    note = "".join(f"<li>{e(n)}</li>" for n in notes)
    cmp_ = view.comparison
    return (title + '<p class="muted">Per subgraph, median per call. CUDA event bracket: the GPU interval trtprof '
            "measured (start and end event around the call, the GPU's waiting included). nsys: the kernels, "
            "memcpys and memsets launched inside the call, from the Nsight Systems report "
            f"<code>{e(s.get('nsys_report', ''))}</code>; busy is the union of their intervals. When the bracket "
            "exceeds busy by much, the GPU waited for the host (launch-bound) rather than measuring wrong: "
            "see the time before the first and after the last kernel.</p>"
            f'<div class="card">{facts}{"<ul>" + note + "</ul>" if note else ""}</div>'
            + (table(cmp_, _COLS) if cmp_ is not None and len(cmp_) else
               '<p class="muted">No call with both CUDA-event times and nsys kernels (a capture without CUDA '
               "events, or a report that covers none of the timed calls).</p>"))
