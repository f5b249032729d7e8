"""Everything the report shows, computed once from a timeline (`analyse`), and the recommendations.

Every threshold below is a rule for when a measured cost is worth a recommendation, never a result.
Like HTA's analyzers, nothing here reads files or draws: the CLI loads, this analyses, the renderers
draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trtprof.analysis import overlap, shapes, subgraphs
from trtprof.analysis.bootstrap import N_BOOT, SEED
from trtprof.analysis.latency import inference_latency, latency_summary
from trtprof.analysis.prealloc import compare_modes

# A cost is worth a recommendation when it is at least this share of the median latency and at least
# MIN_GAIN_NS in absolute terms (below a few microseconds, noise and the profiler dominate).
SIGNIFICANT_SHARE = 0.02
BREAK_SHARE = 0.05
PYTHON_SHARE = 0.10
MIN_GAIN_NS = 5_000


@dataclass
class Results:
    """Everything the report shows, each table computed once from the timeline."""
    infs: pd.DataFrame
    latency: pd.DataFrame
    by_mode: pd.DataFrame
    by_shape: pd.DataFrame
    comparisons: list
    allocs: pd.DataFrame
    exposure: pd.DataFrame
    gaps: pd.DataFrame
    gap_summary: pd.DataFrame
    changes: pd.DataFrame
    frequency: pd.DataFrame
    shape_advice: str | None
    breaks: pd.DataFrame
    subgraphs: pd.DataFrame
    recommendations: pd.DataFrame
    gpu_times: bool
    busy_source: str | None = None  # what "GPU busy" is measured from: kernels | kernel spans | event brackets


REC_COLUMNS = ["model", "action", "why", "gain_ms", "gain_pct", "basis"]


def recommendations(r: Results) -> pd.DataFrame:
    """Actions worth taking, each with its measured or estimated gain per inference, largest first."""
    recs = []
    models = sorted(set(r.latency["model"].dropna()) | set(r.subgraphs["model"].dropna()))
    for model in models:
        lat = r.latency[(r.latency["model"] == model) & ~r.latency["excluded"]]
        base_ns = float(lat["latency_ns"].median()) if len(lat) else float("nan")

        def worth(gain_ns: float, share: float) -> bool:
            return gain_ns >= MIN_GAIN_NS and (np.isnan(base_ns) or gain_ns >= share * base_ns)

        def add(action, why, gain_ns, basis, gain_pct=None):
            if gain_pct is None:
                gain_pct = 100 * gain_ns / base_ns if base_ns == base_ns and base_ns else np.nan
            recs.append({"model": model, "action": action, "why": why, "gain_ms": gain_ns / 1e6,
                         "gain_pct": gain_pct, "basis": basis})

        comp = next((c for c in r.comparisons if c.model == model), None)
        modes = set(lat["mode"])
        if comp is not None and comp.significant:
            if comp.saved_ms > 0:
                add("Keep pre-allocated outputs on", f"measured: {comp.verdict}.", comp.saved_ms * 1e6,
                    "measured (on vs off, 95 % CI)", comp.saved_pct)
            else:
                add("Turn pre-allocated outputs off", f"measured: {comp.verdict}.", -comp.saved_ms * 1e6,
                    "measured (on vs off, 95 % CI)", -comp.saved_pct)
        elif "on" not in modes and "off" in modes:
            ex = r.exposure[(r.exposure["model"] == model) & (r.exposure["mode"] == "off")]
            if r.gpu_times:
                gain, basis = float(ex["exposed_ns_per_inference"].sum()), \
                    "estimated: exposed allocation time per inference (upper bound)"
            else:
                gain, basis = float(ex["alloc_ns_per_inference"].sum()), \
                    "upper bound: allocation host time (no GPU times in this capture)"
            if worth(gain, SIGNIFICANT_SHARE):
                add("Turn on pre-allocated outputs: torch_tensorrt.runtime.enable_pre_allocated_outputs(model)",
                    f"output allocation keeps the GPU waiting {gain / 1e3:.1f} \u00b5s per inference; with "
                    "pre-allocated outputs it happens after the enqueue, while the GPU runs.", gain, basis)
        # shape changes with pre-allocation on
        fq = r.frequency[(r.frequency["model"] == model) & (r.frequency["kind"] == "engine")]
        pre_calls = float(fq["prealloc_calls"].sum()) if len(fq) else 0.0
        if pre_calls:
            share = float(fq["prealloc_changes"].sum()) / pre_calls
            ch = r.changes[(r.changes["model"] == model) & r.changes["outputs_discarded"]]
            n_on = int(((r.infs["model"] == model) & (r.infs["mode"] == "on") & ~r.infs["excluded"]).sum())
            cost = ch["realloc_exposed_ns"].fillna(ch["realloc_ns"]).sum()
            gain = float(cost) / max(n_on, 1)
            if share > shapes.FREQUENT and worth(gain, SIGNIFICANT_SHARE):
                add("Keep input shapes fixed (pad to a few sizes), or turn pre-allocated outputs off",
                    f"input shapes changed on {share:.0%} of engine calls with pre-allocated outputs on; each "
                    f"change threw the buffer away and allocated again before execution "
                    f"({len(ch)} forced re-allocations).", gain,
                    "estimated: forced re-allocation time per inference" +
                    ("" if r.gpu_times else " (host time, no GPU times)"))
        # graph breaks
        for _, b in r.breaks[r.breaks["model"] == model].iterrows():
            gain = float(b["break_cost_us_per_inference"]) * 1e3
            if worth(gain, BREAK_SHARE):
                add(f"Remove the graph break at {b['subgraph']} (ops PyTorch runs between engines)",
                    f"the fallback takes {b['fallback_us']:.1f} \u00b5s and the GPU idles {b['gaps_us']:.1f} "
                    "\u00b5s around it per inference; the tutorial says reducing graph breaks should be "
                    "prioritized.", gain, "estimated: fallback time plus GPU gaps (upper bound)")
        # GPU idle while Python runs
        gs = r.gap_summary[(r.gap_summary["model"] == model) & r.gap_summary["mode"].isin(list(modes))]
        if len(gs):
            py = float(gs.groupby("mode")["python_ns_per_inference"].sum().min())
            if worth(py, PYTHON_SHARE):
                add("Cut Python overhead between engines (CUDA graphs: torch_tensorrt.runtime.enable_cudagraphs)",
                    f"the GPU idles {py / 1e3:.1f} \u00b5s per inference while the host runs Python between "
                    "subgraphs (no allocation, fallback or enqueue recorded then).", py,
                    "estimated: GPU idle time with only Python on the host")
    out = pd.DataFrame(recs, columns=REC_COLUMNS)
    return out.sort_values("gain_ms", ascending=False, kind="stable").reset_index(drop=True)


def analyse(df: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED, kernels: pd.DataFrame | None = None) -> Results:
    """Run every analysis once over a timeline (`kernels`: the capture's kernels.parquet, if any)."""
    infs = overlap.inferences(df)
    lat = inference_latency(df, infs)
    allocs = overlap.alloc_overlap(df, kernels)
    gaps = overlap.gpu_gaps(df, infs)
    breaks = subgraphs.break_costs(df, gaps, infs)
    freq = shapes.change_frequency(df)
    r = Results(
        infs=infs, latency=lat, by_mode=latency_summary(lat, ("model", "mode")),
        by_shape=latency_summary(lat, ("model", "mode", "input_shapes")),
        comparisons=compare_modes(lat, n_boot, seed), allocs=allocs,
        exposure=overlap.exposed_per_inference(df, allocs, infs), gaps=gaps,
        gap_summary=overlap.gap_summary(gaps, infs), changes=shapes.shape_changes(df, allocs),
        frequency=freq, shape_advice=shapes.advice(freq), breaks=breaks,
        subgraphs=subgraphs.table(df, allocs, breaks, kinds=("engine", "fallback")), recommendations=pd.DataFrame(columns=REC_COLUMNS),
        gpu_times=overlap.has_gpu_times(df), busy_source=overlap.busy_source(df, kernels))
    r.recommendations = recommendations(r)
    return r
