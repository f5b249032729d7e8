"""The terminal lines `nsys-import` prints: what matched, the clock, and the per-subgraph comparison."""
from __future__ import annotations

from trtprof.errors import clean


def render(res) -> str:
    """A few lines: what matched, the clock, and the per-subgraph comparison."""
    s = res.join.summary
    c, sp, ep = s["clock"], s.get("start_spread", {}), s.get("end_spread", {})
    lines = [f"nsys import: {s['matched_nvtx']} of {s['rows']} rows joined to their NVTX range, "
             f"{s['matched_window']} by host interval, {s['unmatched']} not in the report; "
             f"{s['nsys_ranges_unmatched']} of {s['nsys_ranges']} trtprof ranges in the report unmatched",
             f"clock: host = nsys + {c['offset_ns'] / 1e9:.6f} s (drift {c['drift_ppm']:.2f} ppm); start "
             f"differences: MAD {sp.get('mad_ns', float('nan')) / 1e3:.2f} us, max {sp.get('max_ns', float('nan')) / 1e3:.2f} us; "
             f"pop after host end by {-ep.get('median_ns', float('nan')) / 1e3:.2f} us"
             + (f"; wall-clock check {c['utc_check_us']:+.1f} us" if c.get("utc_check_us") is not None else "")]
    lines += [f"note: {clean(n)}" for n in res.notes]
    cmp_ = res.comparison
    if len(cmp_):
        lines.append("CUDA-event GPU time vs nsys kernels (median per call, us):")
        hdr = f"  {'subgraph':<22}{'calls':>6}{'events':>10}{'span':>10}{'busy':>10}{'events-busy':>13}{'lead':>9}{'tail':>9}"
        lines.append(hdr)
        for r in cmp_.itertuples(index=False):
            lines.append(f"  {clean(r.subgraph)[:21]:<22}{r.calls:>6}{r.event_us:>10.1f}{r.span_us:>10.1f}{r.busy_us:>10.1f}"
                         f"{r.diff_busy_pct:>12.1f}%{r.lead_us:>9.1f}{r.tail_us:>9.1f}")
    lines.append(f"written: {res.written[0]} and {res.written[1].name}")
    return "\n".join(lines)
