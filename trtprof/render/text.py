"""Plain-text rendering of summaries for the terminal: one screen, fixed columns."""
from __future__ import annotations

import math

import pandas as pd

_HEAD = [("subgraph", "subgraph", 18), ("kind", "kind", 8), ("calls", "calls", 6),
         ("gpu_ms_median", "GPU ms", 8), ("host_ms_median", "host ms", 8), ("alloc_us_median", "alloc us", 9),
         ("allocs_before_exec", "alloc pre", 9), ("allocs_after_enqueue", "alloc post", 10),
         ("calls_preallocated", "prealloc'd", 10), ("calls_new_outputs", "fresh", 6),
         ("shape_changes", "shape chg", 9)]


def _cell(v, width: int) -> str:
    if isinstance(v, float):
        s = "-" if math.isnan(v) else f"{v:.3f}" if v < 100 else f"{v:.1f}"
    else:
        s = str(v)
    if len(s) > width:
        s = s[: width - 1] + "…"
    return s.rjust(width) if not isinstance(v, str) else s.ljust(width)


def summary_table(summary: pd.DataFrame) -> str:
    """The per-subgraph summary as aligned text, one block per model."""
    if summary.empty:
        return "no Torch-TensorRT module ran: nothing to summarise"
    lines = []
    for model, g in summary.groupby("model", sort=False):
        lines.append(f"{model or '(engines outside a compiled graph)'}:")
        lines.append("  " + " ".join(_cell(h, w) if i < 2 else h.rjust(w) for i, (_, h, w) in enumerate(_HEAD)))
        for _, row in g.iterrows():
            lines.append("  " + " ".join(_cell(row[c], w) for c, _, w in _HEAD))
    lines.append("GPU ms: median engine/fallback GPU time (CUDA events); alloc pre/post: output allocations "
                 "before execution / after enqueue for the next call; prealloc'd/fresh: calls that used "
                 "pre-allocated outputs / allocated new ones.")
    return "\n".join(lines)
