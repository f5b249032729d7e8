"""The per-subgraph summary for the terminal (`trtprof capture` prints it): one screen, fixed columns.

Data in (`analysis.subgraphs.table`), text out; every name from the capture goes through the one
escaping rule (`errors.clean`), so an engine named with escape codes cannot drive the terminal.
"""
from __future__ import annotations

import math

import pandas as pd

from trtprof.errors import clean

_HEAD = [("subgraph", "subgraph", 18), ("kind", "kind", 8), ("calls", "calls", 6),
         ("gpu_us_median", "bracket us", 10), ("host_us_median", "host us", 9), ("alloc_us_median", "alloc us", 9),
         ("allocs_before_exec", "alloc pre", 9), ("allocs_after_enqueue", "alloc post", 10),
         ("calls_preallocated", "prealloc'd", 10), ("calls_new_outputs", "fresh", 6),
         ("shape_changes", "shape chg", 9)]
_KERNELS = [("kernel_busy_us_median", "busy us", 9), ("kernel_span_us_median", "span us", 9), ("bound", "bound", 13)]
KERNEL_LEGEND = ("busy us: median time the GPU ran the call's kernels (union of their intervals, CUPTI); "
                 "span us: first kernel start to last kernel end (0 for a call that ran none); bound: launch-bound when the kernels were busy "
                 "under half of the time from the call's start until it and its last kernel were done while the host "
                 "took at least 80 % of it, GPU-bound when the host was done within the first half of that time and the "
                 "kernels kept the GPU busy at least 80 % of their span, '-' for calls that ran no kernel. ")
LEGEND = ("bracket us: median CUDA-event bracket of a call (includes the GPU waiting for the host); host us: "
          "median host time of a call; alloc us: median host time of an output allocation; alloc pre/post: "
          "allocations before execution / after the enqueue for the next call (counts cover every call; "
          "medians leave out the calls marked excluded: the cold start, the first after a pre-allocation switch); prealloc'd/fresh: calls that used "
          "pre-allocated outputs / allocated new ones.")


def _cell(v, width: int) -> str:
    if isinstance(v, float):
        s = "-" if math.isnan(v) else f"{v:.1f}" if v < 1e5 else f"{v:.3g}"
    else:
        s = clean(v)
    if len(s) > width:
        s = s[: width - 1] + "…"
    return s.rjust(width) if not isinstance(v, str) else s.ljust(width)


def render(table: pd.DataFrame) -> str:
    """The per-subgraph table as aligned text, one block per model."""
    if table.empty:
        return "no Torch-TensorRT module ran: nothing to summarise"
    lines = []
    kernels = has_kernels(table)
    head = _HEAD[:4] + (_KERNELS[:2] if kernels else []) + _HEAD[4:] + (_KERNELS[2:] if kernels else [])
    for model, g in table.groupby("model", sort=False):
        lines.append(f"{clean(model) or '(engines outside a compiled graph)'}:")
        lines.append("  " + " ".join(_cell(h, w) if i < 2 else h.rjust(w) for i, (_, h, w) in enumerate(head)))
        for _, row in g.iterrows():
            lines.append("  " + " ".join(_cell(row[c] if row[c] is not None else "-", w) if c == "bound" else
                                         _cell(row[c], w) for c, _, w in head))
    lines.append(legend(kernels))
    return "\n".join(lines)


def has_kernels(table: pd.DataFrame) -> bool:
    """Whether the table shows the kernel columns (some call has kernel activity)."""
    return "kernel_busy_us_median" in table and bool(table["kernel_busy_us_median"].notna().any())


def legend(kernels: bool) -> str:
    """The one line below the tables that says what each column is."""
    return (KERNEL_LEGEND if kernels else "") + LEGEND


def cudagraph_lines(comparisons: list) -> str:
    """CUDA graphs off vs on per model (`analysis.cudagraphs.compare`), one line each; '' when none ran."""
    return "\n".join(clean(f"{c.model}: {c.verdict}") for c in comparisons)
