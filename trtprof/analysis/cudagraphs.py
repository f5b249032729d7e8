"""CUDA graphs on vs off, per model: the same statistics as the pre-allocation A/B (median and p90
per mode, the difference with its 95 % bootstrap CI, a verdict), from the `cudagraph` column.

An inference counts as "on" when it replayed a graph (whole-graph `replay`, or `per-engine` engines)
and "off" when no CUDA graph ran; warm-up and capture inferences, and the first ones after each
flip of `--cudagraphs alternate`, are excluded already (`exclude`). The comparison is restricted to
the input shape run most in both modes, as for pre-allocation (`prealloc.compare_modes` does both).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis import overlap
from trtprof.analysis.bootstrap import MIN_N, N_BOOT, SEED, fmt_ms, fmt_pcts
from trtprof.analysis.prealloc import Comparison, compare_modes

ON = ("replay", "per-engine")


def with_modes(df: pd.DataFrame, lat: pd.DataFrame) -> pd.DataFrame:
    """`lat` (inference_latency) with `mode` = on | off | other (warm-up, capture) from CUDA graphs,
    and `kind` = whole-graph | per-engine | None."""
    if lat.empty or "cudagraph" not in df:
        return lat.iloc[:0].assign(kind=pd.Series(dtype=object))
    rows = df[(df["event"] == "inference") & (df["inference"] >= 0)].drop_duplicates(overlap.KEY)
    m = lat.drop(columns=["mode"]).merge(rows[overlap.KEY + ["cudagraph"]], on=overlap.KEY, how="left")
    cg = m["cudagraph"].astype(object).where(m["cudagraph"].notna(), None)
    m["mode"] = np.where(cg.isna(), "off", np.where(cg.isin(ON), "on", "other"))
    m["kind"] = cg.map(lambda v: None if v is None else "per-engine" if v == "per-engine" else "whole-graph")
    return m.drop(columns=["cudagraph"])


def compare(df: pd.DataFrame, lat: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED,
            min_n: int = MIN_N) -> list[Comparison]:
    """Per model that ran CUDA graphs at all: off vs on (saved = off - on). Empty when none did."""
    m = with_modes(df, lat)
    if m.empty or not (m["mode"] != "off").any():
        return []
    used = set(m.loc[m["mode"] != "off", "model"].dropna())
    out = []
    for c in compare_modes(m[m["model"].isin(used)], n_boot, seed, min_n):
        kinds = sorted(set(m.loc[(m["model"] == c.model) & (m["kind"].notna()), "kind"]))
        c.verdict = verdict(c, " and ".join(kinds) or "CUDA graphs", min_n)
        out.append(c)
    return out


def verdict(c: Comparison, kind: str, min_n: int = MIN_N) -> str:
    """One sentence: what CUDA graphs did at the median, with the CI in percent, and at p90."""
    what = f"CUDA graphs ({kind})"
    on = f", on inputs {c.shapes[0]}" if c.shapes else ""
    if not c.compared:
        if c.n_on == 0:
            return f"{what}: no steady-state inference with CUDA graphs on ({c.n_off} off): no comparison"
        if c.n_off == 0:
            return f"{what} were on in all {c.n_on} measured inferences: no comparison (run some without)"
        return (f"{what}: too few inferences to compare on ({c.n_on}) and off ({c.n_off}); need at least "
                f"{min_n} of each with the same input shape")
    lo, hi = sorted(abs(v) for v in c.ci_pct) if c.significant else c.ci_pct
    if c.significant:
        p, lo, hi = fmt_pcts(abs(c.saved_pct), lo, hi)
        text = (f"{what} {'saved' if c.saved_ms > 0 else 'cost'} {fmt_ms(c.saved_ms)} ms per inference at the "
                f"median ({p} %, CI {lo}\u2013{hi} %; {c.median_off_ms:.3f} ms off, {c.median_on_ms:.3f} ms on){on}")
    else:
        lo, hi = fmt_pcts(lo, hi)
        text = (f"{what}: no significant difference at the median ({c.median_off_ms:.3f} ms off, "
                f"{c.median_on_ms:.3f} ms on, saved {c.saved_ms:+.3f} ms, CI {lo} to {hi} %){on}")
    t = c.tails[0]
    lo, hi = t.ci_ms
    return text + (f"; {t.label} {t.off_ms:.3f} ms off vs {t.on_ms:.3f} ms on (saved {t.saved_ms:+.3f} ms, "
                   f"95 % CI {lo:+.3f} to {hi:+.3f} ms{'' if t.significant else ', not significant'})")
