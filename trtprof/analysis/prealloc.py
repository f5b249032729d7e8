"""Pre-allocated outputs on vs off, per model: the medians, the saving with its 95 % CI, a verdict.

Restricted to the input shape run most in both modes, so a shape mix that differs between the two
modes does not pose as a pre-allocation effect (shape changes are reported on their own).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from trtprof.analysis.bootstrap import MIN_N, N_BOOT, SEED, diff_medians, fmt_ms, fmt_pcts


@dataclass
class Comparison:
    """Pre-allocated outputs on vs off for one model: medians, saving and its 95 % CI, a verdict."""
    model: str
    n_off: int = 0
    n_on: int = 0
    median_off_ms: float = float("nan")
    median_on_ms: float = float("nan")
    saved_ms: float = float("nan")
    saved_pct: float = float("nan")
    ci_ms: tuple = (float("nan"), float("nan"))
    ci_pct: tuple = (float("nan"), float("nan"))
    significant: bool = False
    shapes: list = field(default_factory=list)  # input shapes the comparison was restricted to
    verdict: str = ""


def compare_modes(lat: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED,
                  min_n: int = MIN_N) -> list[Comparison]:
    """Per model, median latency with pre-allocated outputs off minus on, with a 95 % bootstrap CI.

    Restricted to the input shape run most in both modes, so a shape mix that differs between the
    two runs does not pose as a pre-allocation effect (shape changes are reported on their own).
    """
    res = []
    if lat.empty:
        return res
    ok = lat[~lat["excluded"].astype(bool) & lat["mode"].isin(["on", "off"])]
    for model in sorted(lat["model"].dropna().unique()):
        m = ok[ok["model"] == model]
        c = Comparison(model=model)
        counts = m.groupby(["input_shapes", "mode"], dropna=False).size().unstack(fill_value=0)
        both = counts[(counts.get("on", 0) >= min_n) & (counts.get("off", 0) >= min_n)] \
            if {"on", "off"} <= set(counts.columns) else counts.iloc[:0]
        if len(both):
            shape = both.min(axis=1).idxmax()
            if len(counts) > 1:
                c.shapes = [shape]
            m = m[m["input_shapes"] == shape] if not pd.isna(shape) else m[m["input_shapes"].isna()]
        off = m.loc[m["mode"] == "off", "latency_ns"].to_numpy(float) / 1e6
        on = m.loc[m["mode"] == "on", "latency_ns"].to_numpy(float) / 1e6
        d = diff_medians(off, on, n_boot=n_boot, seed=seed, min_n=min_n)  # on - off: minus the saving
        c.n_off, c.n_on, c.median_off_ms, c.median_on_ms = d.n_a, d.n_b, d.median_a, d.median_b
        if not d.enough:
            c.verdict = _no_comparison(c, min_n)
            res.append(c)
            continue
        c.saved_ms, c.saved_pct = -d.diff, -d.diff_pct
        c.ci_ms, c.ci_pct = (-d.ci[1], -d.ci[0]), (-d.ci_pct[1], -d.ci_pct[0])
        c.significant = d.significant
        c.verdict = verdict(c)
        res.append(c)
    return res


def _no_comparison(c: Comparison, min_n: int) -> str:
    if c.n_on == 0 and c.n_off == 0:
        return "no inference with engine calls to compare"
    if c.n_on == 0:
        return (f"pre-allocated outputs were off in all {c.n_off} measured inferences: no comparison "
                f"(run some with torch_tensorrt.runtime.enable_pre_allocated_outputs to compare)")
    if c.n_off == 0:
        return f"pre-allocated outputs were on in all {c.n_on} measured inferences: no comparison"
    return (f"too few inferences to compare pre-allocated outputs on ({c.n_on}) and off ({c.n_off}); "
            f"need at least {min_n} of each with the same input shape")


def verdict(c: Comparison) -> str:
    """A plain sentence: what pre-allocated outputs did, with the 95 % CI in percent."""
    on = f", on inputs {c.shapes[0]}" if c.shapes else ""
    if c.significant:
        lo, hi = sorted(abs(v) for v in c.ci_pct)  # both bounds have the sign of the effect
        p, lo, hi = fmt_pcts(abs(c.saved_pct), lo, hi)
        if c.saved_ms > 0:
            return f"pre-allocated outputs saved {fmt_ms(c.saved_ms)} ms per inference ({p} %, CI {lo}\u2013{hi} %){on}"
        return f"pre-allocated outputs cost {fmt_ms(c.saved_ms)} ms more per inference ({p} %, CI {lo}\u2013{hi} %){on}"
    lo, hi = fmt_pcts(*c.ci_pct)
    return (f"no significant difference between pre-allocated outputs on and off "
            f"(saved {c.saved_ms:+.3f} ms, CI {lo} to {hi} %){on}")
