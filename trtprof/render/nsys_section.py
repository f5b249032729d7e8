"""The report's Nsight Systems section: trtprof's CUDA-event GPU times beside nsys's kernel times.

Kept out of html.py (another engineer's) so that file only calls `section(cap)`; it returns '' when
the capture has no nsys import, so reports without one are unchanged. Every string from the capture
or the import (subgraph names, the report path, notes) is escaped here; numbers are formatted.
"""
from __future__ import annotations

import html

from trtprof.analysis.nsys import compare
from trtprof.model.nsys import NsysError, read_import


def _e(s) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def _f(v, fmt: str = ".1f", suffix: str = "") -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "\u2014"
    return "\u2014" if v != v else format(v, fmt) + suffix


_COLS = [("subgraph", "subgraph", None), ("kind", "kind", None), ("calls", "calls", ".0f"),
         ("event_us", "CUDA events \u00b5s", ".1f"), ("span_us", "nsys first\u2192last kernel \u00b5s", ".1f"),
         ("busy_us", "nsys GPU busy \u00b5s", ".1f"), ("kernels", "kernels", ".0f"),
         ("diff_busy_pct", "events vs busy", "+.1f%"), ("diff_span_pct", "events vs span", "+.1f%"),
         ("lead_us", "before 1st kernel \u00b5s", ".1f"), ("tail_us", "after last kernel \u00b5s", ".1f")]


def _table(cmp_) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for _, h, _ in _COLS)
    body = []
    for r in cmp_.to_dict(orient="records"):
        cells = []
        for c, _, fmt in _COLS:
            if fmt is None:
                cells.append(f'<td class="t">{_e(r.get(c))}</td>')
            else:
                pct = fmt.endswith("%")
                cells.append(f'<td class="n">{_e(_f(r.get(c), fmt.rstrip("%"), " %" if pct else ""))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def section(cap) -> str:
    """HTML for the capture's nsys import, '' when there is none."""
    if getattr(cap, "path", None) is None:
        return ""
    title = "<h2 id='nsys'>8. Nsight Systems: CUDA events against kernels</h2>"
    try:
        got = read_import(cap.path)
    except NsysError as e:
        return title + f'<div class="card warn">The nsys import cannot be read: {_e(e)}</div>'
    if got is None:
        return ""
    rows, s = got
    cmp_ = compare(cap.timeline, rows)
    clock = s.get("clock") if isinstance(s.get("clock"), dict) else {}
    spread = s.get("start_spread") if isinstance(s.get("start_spread"), dict) else {}
    facts = (f"{_e(s.get('matched_nvtx', '?'))} of {_e(s.get('rows', '?'))} rows paired with their NVTX range, "
             f"{_e(s.get('matched_window', 0))} by their host interval (no range of their own), "
             f"{_e(s.get('unmatched', 0))} outside the report. Clock: nsys + "
             f"{_e(_f(_num(clock.get('offset_ns')) / 1e9, '.6f'))} s, start differences spread "
             f"{_e(_f(_num(spread.get('mad_ns')) / 1e3, '.2f'))} \u00b5s (MAD), "
             f"{_e(_f(_num(spread.get('max_ns')) / 1e3, '.2f'))} \u00b5s at most.")
    notes = s.get("notes") if isinstance(s.get("notes"), list) else []
    note = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return (title + '<p class="muted">Per subgraph, median per call. CUDA events: the GPU interval trtprof '
            "measured (start and end event around the call, idle time included). nsys: the kernels, memcpys "
            "and memsets launched inside the call, from the Nsight Systems report "
            f"<code>{_e(s.get('nsys_report', ''))}</code>; busy is the union of their intervals. When events "
            "exceed busy by much, the GPU waited for the host (launch-bound) rather than measuring wrong: "
            "see the time before the first and after the last kernel.</p>"
            f'<div class="card">{facts}{"<ul>" + note + "</ul>" if note else ""}</div>'
            + (_table(cmp_) if len(cmp_) else '<p class="muted">No call with both CUDA-event times and nsys '
               "kernels (a capture without CUDA events, or a report that covers none of the timed calls).</p>"))


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
