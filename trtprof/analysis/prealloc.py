"""Pre-allocated outputs on vs off, per model: the medians, the saving with its 95 % CI, the tail
(p90, p99) with theirs, and a verdict that says when the tail goes the other way.

Restricted to the input shape run most in both modes, so a shape mix that differs between the two
modes does not pose as a pre-allocation effect (shape changes are reported on their own); the
comparison says which shape it used, why, and which other shapes ran.

Why the tail: a median saving can come with a worse p90 (breaks-cpp: median 0.86 ms better with
pre-allocation on, p90 0.9 ms worse), and a user who serves at p90 must hear both.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trtprof.analysis.bootstrap import MIN_N, N_BOOT, SEED, Sorted, diff_medians, fmt_ms, fmt_pcts
from trtprof.analysis.groups import sorted_groups


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
    shape_note: str = ""  # why that shape, and the other shapes that ran
    tails: list = field(default_factory=list)  # Tail per quantile (p90, p99)
    verdict: str = ""

    @property
    def compared(self) -> bool:
        """Both modes ran often enough on one input shape for a saving with its CI."""
        return bool(self.tails) and self.saved_ms == self.saved_ms


@dataclass
class Tail:
    """One quantile of latency with pre-allocated outputs off and on; saved = off - on (ms), its CI."""
    q: float
    off_ms: float
    on_ms: float
    saved_ms: float
    ci_ms: tuple
    significant: bool

    @property
    def label(self) -> str:
        return f"p{round(self.q * 100)}"


TAIL_QUANTILES = (0.9, 0.99)


def compare_modes(lat: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED,
                  min_n: int = MIN_N) -> list[Comparison]:
    """Per model, median latency with pre-allocated outputs off minus on, with a 95 % bootstrap CI.

    Restricted to the input shape run most in both modes, so a shape mix that differs between the
    two runs does not pose as a pre-allocation effect (shape changes are reported on their own).
    """
    res = []
    if lat.empty:
        return res
    # the included inferences in either mode, grouped by (model, shape, mode) with each group's
    # latencies sorted once (`sorted_groups`: no copy of the table, nor of it split by model; masking
    # it per model would cost models x rows, 26.7 k models and 200 k rows took minutes)
    ok = (~lat["excluded"].astype(bool) & lat["mode"].isin(["on", "off"])).to_numpy()
    g = sorted_groups(lat, ["model", "input_shapes", "mode"], "latency_ns", ok)
    keys = g.keys.assign(_n=g.size, _i=np.arange(len(g.size)))
    per_model = dict(iter(keys.groupby("model", sort=False, dropna=True, observed=True)))
    for model in sorted(lat["model"].dropna().unique()):
        k = per_model.get(model, keys.iloc[:0])
        c = Comparison(model=model)
        # the groups' sizes grouped as the inferences themselves would be: the same index and order
        counts = k.groupby(["input_shapes", "mode"], dropna=False, observed=True)["_n"].sum().unstack(fill_value=0)
        both = counts[(counts.get("on", 0) >= min_n) & (counts.get("off", 0) >= min_n)] \
            if {"on", "off"} <= set(counts.columns) else counts.iloc[:0]
        if len(both):
            shape = both.min(axis=1).idxmax()
            if len(counts) > 1:
                c.shapes = [shape]
                c.shape_note = _shape_note(counts, shape, min_n)
            k = k[k["input_shapes"] == shape] if not pd.isna(shape) else k[k["input_shapes"].isna()]
        off, on = (_latencies_ms(g, k[(k["mode"] == m).to_numpy(bool)]["_i"]) for m in ("off", "on"))
        d = diff_medians(off, on, n_boot=n_boot, seed=seed, min_n=min_n)  # on - off: minus the saving
        c.n_off, c.n_on, c.median_off_ms, c.median_on_ms = d.n_a, d.n_b, d.median_a, d.median_b
        if not d.enough:
            c.verdict = _no_comparison(c, min_n)
            res.append(c)
            continue
        c.saved_ms, c.saved_pct = -d.diff, -d.diff_pct
        c.ci_ms, c.ci_pct = (-d.ci[1], -d.ci[0]), (-d.ci_pct[1], -d.ci_pct[0])
        c.significant = d.significant
        for q in TAIL_QUANTILES:
            t = diff_medians(off, on, n_boot=n_boot, seed=seed, min_n=min_n, q=q)
            c.tails.append(Tail(q, t.median_a, t.median_b, -t.diff, (-t.ci[1], -t.ci[0]), t.significant))
        c.verdict = verdict(c)
        res.append(c)
    return res


def _latencies_ms(g, groups) -> Sorted:
    """The latencies (ms) of the groups of `g` numbered `groups`, sorted, NaN left out."""
    parts = [g.sorted_values(i) for i in groups]
    v = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts)) if parts else np.zeros(0)
    return Sorted(v / 1e6)  # a positive divisor keeps the order


def _shape_note(counts: pd.DataFrame, shape, min_n: int) -> str:
    """Why the comparison uses `shape`, and what else ran (inferences off / on per shape)."""
    def n(s):
        return f"{int(counts.loc[s].get('off', 0))} off / {int(counts.loc[s].get('on', 0))} on"
    others = [f"{s} ({n(s)})" for s in counts.index if s != shape]
    return (f"compared on inputs {shape}, the input shape with the most inferences in both modes ({n(shape)}); "
            f"the same shape on both sides keeps a shape mix from posing as a pre-allocation effect. "
            f"Other shapes: {'; '.join(others)} (see the table by input shape; a shape needs at least "
            f"{min_n} inferences per mode to be compared)")


def tail_sentence(c: Comparison) -> str:
    """The tail in one sentence (p90, p99: off vs on, difference and CI), and whether it goes the
    other way from the median; '' without tails."""
    if not c.tails:
        return ""
    parts, against = [], []
    for t in c.tails:
        if t.on_ms != t.on_ms:
            continue
        lo, hi = t.ci_ms
        parts.append(f"{t.label} {t.off_ms:.3f} ms off vs {t.on_ms:.3f} ms on "
                     f"(on {'saves' if t.saved_ms >= 0 else 'costs'} {fmt_ms(t.saved_ms)} ms, "
                     f"95 % CI of the saving {lo:+.3f} to {hi:+.3f} ms{'' if t.significant else ', not significant'})")
        if t.significant and c.significant and (t.saved_ms > 0) != (c.saved_ms > 0):
            against.append(t.label)
    if not parts:
        return ""
    text = "Tail: " + "; ".join(parts) + "."
    if against:
        text += (f" The tail goes the other way: at {' and '.join(against)} pre-allocated outputs "
                 f"{'cost' if c.saved_ms > 0 else 'save'} time, while the median "
                 f"{'improves' if c.saved_ms > 0 else 'gets worse'}.")
    return text


def tail_against(c: Comparison) -> list:
    """The tails (Tail) that go significantly the other way from a significant median effect."""
    if not c.significant:
        return []
    return [t for t in c.tails if t.significant and (t.saved_ms > 0) != (c.saved_ms > 0)]


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
            text = (f"pre-allocated outputs saved {fmt_ms(c.saved_ms)} ms per inference at the median "
                    f"({p} %, CI {lo}\u2013{hi} %){on}")
        else:
            text = (f"pre-allocated outputs cost {fmt_ms(c.saved_ms)} ms more per inference at the median "
                    f"({p} %, CI {lo}\u2013{hi} %){on}")
        against = tail_against(c)
        if against:
            t = against[0]
            lo, hi = sorted(abs(v) for v in t.ci_ms)
            text += (f"; but the tail goes the other way: {t.label} {t.on_ms:.3f} ms on vs {t.off_ms:.3f} ms off "
                     f"({'+' if t.saved_ms < 0 else '-'}{fmt_ms(t.saved_ms)} ms, CI {lo:.3f}\u2013{hi:.3f} ms)")
        return text
    lo, hi = fmt_pcts(*c.ci_pct)
    return (f"no significant difference between pre-allocated outputs on and off "
            f"(saved {c.saved_ms:+.3f} ms, CI {lo} to {hi} %){on}")
