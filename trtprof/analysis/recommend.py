"""Recommendations: actions worth taking, each with its gain per inference, how it was obtained and
the arithmetic behind it, largest first.

Why so explicit: a gain is either measured (both alternatives ran: on vs off, with a CI) or an
estimate from what the capture shows (exposed allocation, a fallback and the GPU idle around it,
Python between engines). An estimate is bounded by what the action could save at most, never more
than the whole inference (the median latency), and its text says it is an estimate and shows the
sum it came from, so a reader can check it instead of trusting a percentage.

Every threshold is a rule for when a measured cost is worth a recommendation, never a result.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trtprof.analysis import shapes
from trtprof.analysis.bootstrap import fmt_ms
from trtprof.analysis.groups import group_sizes, quantiles, sorted_groups
from trtprof.analysis.prealloc import tail_against, tail_sentence

if TYPE_CHECKING:
    from trtprof.analysis.report import Results

# A cost is worth a recommendation when it is at least this share of the median latency and at least
# MIN_GAIN_NS in absolute terms (below a few microseconds, noise and the profiler dominate).
SIGNIFICANT_SHARE = 0.02
BREAK_SHARE = 0.05
PYTHON_SHARE = 0.10
MIN_GAIN_NS = 5_000

REC_COLUMNS = ["model", "action", "why", "gain_ms", "gain_pct", "basis", "measured", "arithmetic"]


def c_ms(v: float) -> str:
    return ("-" if v < 0 else "") + fmt_ms(v)


def _us(ns: float) -> str:
    return f"{ns / 1e3:.1f} \u00b5s"


def hook_note(level) -> str:
    """What trtprof's own hooks add to "Python between subgraphs", with the recording level."""
    lv = f"level {level}" if level else "level not recorded (full, before levels existed)"
    return (f"includes trtprof's own hook time at {lv}: the hooks run on the host between subgraphs, so "
            "without trtprof this gap is smaller (record at --level minimal to see how much)")


def _by_model(table: pd.DataFrame, mask=None) -> dict:
    """model -> its rows of `table` (those where `mask` holds), split in one pass."""
    if mask is not None and len(table):
        table = table[pd.Series(mask, index=table.index).fillna(False).astype(bool)]
    if not len(table) or "model" not in table:
        return {}
    return dict(iter(table.groupby("model", sort=False, dropna=True, observed=True)))


def _per_inference(r: Results) -> tuple[dict, dict, dict]:
    """Per model, of its included inferences: the median latency (ns), the pre-allocation modes
    they ran in, and how many ran with pre-allocated outputs on; read from the three columns
    needed, not from a copy of the tables split by model."""
    lat = r.latency
    inc = ~lat["excluded"].astype(bool).to_numpy()
    g = sorted_groups(lat, ["model"], "latency_ns", inc)  # no copy of the table: ~16 bytes an inference
    med = quantiles(g.values, g.start, g.count, 0.5, median=True)
    base = {m: v for m, v in zip(g.keys["model"], med) if not pd.isna(m)}
    del g
    modes: dict = {}
    for model, mode, _ in group_sizes(lat, ["model", "mode"], inc).itertuples(index=False):
        modes.setdefault(model, set()).add(mode)
    infs = r.infs
    on = infs.loc[((infs["mode"] == "on") & ~infs["excluded"].astype(bool)).to_numpy(), "model"]
    return base, modes, {k: int(v) for k, v in on.value_counts(dropna=True).items() if v}


def recommendations(r: Results) -> pd.DataFrame:
    """Actions worth taking, each with its measured or estimated gain per inference, largest first."""
    recs = []
    models = sorted(set(r.latency["model"].dropna().unique()) | set(r.subgraphs["model"].dropna()))
    # every table grouped by model once: masking each per model costs models x rows; the
    # per-inference tables (14 M rows in a 100 M-row capture) only as the figures read from them
    base, modes_of, n_ons = _per_inference(r)
    exposure = _by_model(r.exposure, r.exposure["mode"] == "off")
    frequency = _by_model(r.frequency, r.frequency["kind"] == "engine")
    changes = _by_model(r.changes, r.changes["outputs_discarded"])
    breaks, gap_summary = _by_model(r.breaks), _by_model(r.gap_summary)
    comps, cgs = {}, {}  # the first comparison of each model, found once (not a scan per model)
    for c in r.comparisons:
        comps.setdefault(c.model, c)
    for c in r.cudagraphs:
        if c.tails:
            cgs.setdefault(c.model, c)
    for model in models:
        base_ns = float(base.get(model, float("nan")))

        def worth(gain_ns: float, share: float) -> bool:
            return gain_ns >= MIN_GAIN_NS and (np.isnan(base_ns) or gain_ns >= share * base_ns)

        def add(action, why, gain_ns, basis, arithmetic, gain_pct=None, measured=False):
            if not measured and base_ns == base_ns and gain_ns > base_ns:
                arithmetic += (f"; capped at the median latency {fmt_ms(base_ns / 1e6)} ms: no action saves more "
                               "than the whole inference")
                gain_ns = base_ns
            if gain_pct is None:
                gain_pct = 100 * gain_ns / base_ns if base_ns == base_ns and base_ns else np.nan
            recs.append({"model": model, "action": action, "why": why, "gain_ms": gain_ns / 1e6,
                         "gain_pct": gain_pct, "basis": basis, "measured": measured, "arithmetic": arithmetic})

        comp = comps.get(model)
        modes = modes_of.get(model, set())
        if comp is not None and comp.significant:
            arith = (f"median off {comp.median_off_ms:.3f} ms \u2212 median on {comp.median_on_ms:.3f} ms = "
                     f"{comp.saved_ms:+.3f} ms ({comp.n_off} and {comp.n_on} inferences"
                     + (f", inputs {comp.shapes[0]}" if comp.shapes else "") + ")")
            why = f"measured: {comp.verdict}."
            if tail_against(comp):
                why += " " + tail_sentence(comp)
            if comp.saved_ms > 0:
                add("Keep pre-allocated outputs on", why, comp.saved_ms * 1e6,
                    "measured (on vs off, median, 95 % CI)", arith, comp.saved_pct, measured=True)
            else:
                add("Turn pre-allocated outputs off", why, -comp.saved_ms * 1e6,
                    "measured (on vs off, median, 95 % CI)", arith, -comp.saved_pct, measured=True)
        elif "on" not in modes and "off" in modes:
            ex = exposure.get(model, r.exposure.iloc[:0])
            exposed = ex["exposed_ns_per_inference"]
            if r.gpu_times and exposed.notna().all() and len(ex):
                gain = float(exposed.sum())
                basis = "estimated: exposed allocation time per inference (upper bound)"
                arith = " + ".join(f"{_us(v)} ({s})" for s, v in zip(ex["subgraph"], exposed) if v > 0) or "0"
                arith = f"exposed allocation per inference: {arith} = {_us(gain)}"
            else:
                gain = float(ex["alloc_ns_per_inference"].sum())
                why_host = "no GPU times in this capture" if not r.gpu_times else (r.overlap_caveat or "overlap unknown")
                basis = f"upper bound: allocation host time ({why_host})"
                arith = f"allocation host time per inference, all subgraphs: {_us(gain)}"
            if worth(gain, SIGNIFICANT_SHARE):
                add("Turn on pre-allocated outputs: torch_tensorrt.runtime.enable_pre_allocated_outputs(model)",
                    f"output allocation keeps the GPU waiting up to {gain / 1e3:.1f} \u00b5s per inference; with "
                    "pre-allocated outputs it happens after the enqueue, while the GPU runs.", gain, basis, arith)
        # shape changes with pre-allocation on
        fq = frequency.get(model, r.frequency.iloc[:0])
        pre_calls = float(fq["prealloc_calls"].sum()) if len(fq) else 0.0
        if pre_calls:
            share = float(fq["prealloc_changes"].sum()) / pre_calls
            ch = changes.get(model, r.changes.iloc[:0])
            n_on = n_ons.get(model, 0)
            cost = float(ch["realloc_exposed_ns"].fillna(ch["realloc_ns"]).sum())
            gain = cost / max(n_on, 1)
            if share > shapes.FREQUENT and worth(gain, SIGNIFICANT_SHARE):
                add("Keep input shapes fixed (pad to a few sizes), or turn pre-allocated outputs off",
                    f"input shapes changed on {share:.0%} of engine calls with pre-allocated outputs on; each "
                    f"change threw the buffer away and allocated again before execution "
                    f"({len(ch)} forced re-allocations).", gain,
                    "estimated: forced re-allocation time per inference" +
                    ("" if r.gpu_times else " (host time, no GPU times)"),
                    f"{len(ch)} re-allocations, {_us(cost)} exposed (host time where unknown) in total, "
                    f"/ {n_on} inferences with pre-allocated outputs on = {_us(gain)} per inference")
        # graph breaks
        window = ("kernel span where recorded, else event bracket" if r.kernels else
                  "event bracket" if r.gpu_times else "host time: no GPU times")
        for _, b in breaks.get(model, r.breaks.iloc[:0]).iterrows():
            gain = float(b["break_cost_us_per_inference"]) * 1e3
            if worth(gain, BREAK_SHARE):
                add(f"Remove the graph break at {b['subgraph']} (ops PyTorch runs between engines)",
                    f"the fallback's window is {b['fallback_us']:.1f} \u00b5s ({window}) and the GPU idles "
                    f"{b['gaps_us']:.1f} \u00b5s around it per inference; the tutorial says reducing graph breaks "
                    "should be prioritized.", gain, "estimated: the fallback's window plus the GPU gaps "
                    "around it (upper bound: the ops still run, in an engine)",
                    f"fallback window {b['fallback_us']:.1f} \u00b5s + GPU idle before and after "
                    f"it {b['gaps_us']:.1f} \u00b5s = {gain / 1e3:.1f} \u00b5s per inference (mean over "
                    f"{int(b['inferences'])} inferences)")
        # GPU idle while Python runs
        gs = gap_summary.get(model, r.gap_summary.iloc[:0])
        gs = gs[gs["mode"].isin(list(modes))]
        cg = cgs.get(model)  # measured, if it ran
        measured = (f"; measured in this capture, CUDA graphs on vs off: saved {c_ms(cg.saved_ms)} ms per "
                    f"inference at the median (95 % CI {cg.ci_ms[0]:+.3f} to {cg.ci_ms[1]:+.3f} ms"
                    f"{'' if cg.significant else ', not significant'})") if cg is not None else ""
        estimated = False
        if len(gs):
            per_mode = gs.groupby("mode", observed=True)["python_ns_per_inference"].sum()
            py, mode = float(per_mode.min()), str(per_mode.idxmin())
            if worth(py, PYTHON_SHARE):
                estimated = True
                add("Cut Python overhead between engines (CUDA graphs: torch_tensorrt.runtime.enable_cudagraphs)",
                    f"the GPU idles {py / 1e3:.1f} \u00b5s per inference while the host runs Python between "
                    "subgraphs (no allocation, fallback or enqueue recorded then); this " + hook_note(r.level) + ".",
                    py, "estimated: GPU idle time with only Python on the host (upper bound, profiler hooks included)"
                    + measured,
                    f"sum over the {len(gs[gs['mode'] == mode])} gaps between subgraphs of the GPU idle time with only "
                    f"Python on the host = {_us(py)} per inference (pre-alloc {mode}, the mode with the least)")
        if cg is not None and not estimated and cg.significant and cg.saved_ms > 0:
            add("Turn on CUDA graphs (torch_tensorrt.runtime.enable_cudagraphs)", cg.verdict + ".",
                cg.saved_ms * 1e6, "measured: CUDA graphs on vs off in this capture (median difference, 95 % CI)",
                f"median off {cg.median_off_ms:.3f} ms - median on {cg.median_on_ms:.3f} ms = "
                f"{c_ms(cg.saved_ms)} ms (CI {cg.ci_ms[0]:+.3f} to {cg.ci_ms[1]:+.3f} ms; {cg.n_off} off, {cg.n_on} on)",
                gain_pct=cg.saved_pct, measured=True)
    out = pd.DataFrame(recs, columns=REC_COLUMNS)
    return out.sort_values("gain_ms", ascending=False, kind="stable").reset_index(drop=True)
