"""Everything the report shows, computed once from a timeline (`analyse`); the recommendations are
in `analysis.recommend`.

What a CUDA-event bracket cannot tell is marked unknown here rather than guessed: the C++ runtime
allocates inside the bracketed call, so without kernel data its allocations are neither hidden nor
exposed but unknown, with the reason. Like HTA's analyzers, nothing here reads files or draws: the CLI loads, this analyses, the renderers
draw.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trtprof.analysis import overlap, shapes, subgraphs
from trtprof.analysis.recommend import (BREAK_SHARE, MIN_GAIN_NS, PYTHON_SHARE, REC_COLUMNS,  # noqa: F401
                                        SIGNIFICANT_SHARE, recommendations)
from trtprof.analysis.streams import stream_names
from trtprof.analysis.bootstrap import N_BOOT, SEED
from trtprof.analysis.latency import inference_latency, latency_summary
from trtprof.analysis import cudagraphs
from trtprof.analysis.prealloc import compare_modes
from trtprof.timeline import schema
from trtprof.timeline.store import repair_notes


@dataclass
class Results:
    """Everything the report shows, each table computed once from the timeline."""
    infs: pd.DataFrame
    latency: pd.DataFrame
    by_mode: pd.DataFrame
    by_shape: pd.DataFrame
    comparisons: list
    allocs: pd.DataFrame  # overlap.alloc_overlap rows, plus runtime and realloc_cause
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
    transitions: pd.DataFrame = field(default_factory=pd.DataFrame)  # shapes.transitions
    streams: dict = field(default_factory=dict)  # stream handle -> lane name (streams.stream_names)
    overlap_caveat: str | None = None  # why hidden/exposed is unknown for some allocations
    gap_reason: str = ""  # why there are no GPU idle gaps, when there are none
    kernels: bool = False  # the timeline has kernel activity (kernel_* columns with values)
    level: str | None = None  # recording level from the capture's metadata
    data_notes: list = field(default_factory=list)  # what the loader changed to keep the row rules
    cudagraphs: list = field(default_factory=list)  # prealloc.Comparison per model, CUDA graphs off vs on


CPP_CAVEAT = ("C++ runtime: its output allocations happen inside the execute_engine call that trtprof's "
              "CUDA events bracket, so the bracket covers them whether the GPU computed or waited; without "
              "kernel activity (CUPTI) the split into hidden and exposed is unknown")


def has_kernels(df: pd.DataFrame) -> bool:
    """True when the timeline carries kernel activity (the kernel_* columns, with values)."""
    return "kernel_busy_ns" in df and bool(df["kernel_busy_ns"].notna().any())


def kernel_pids(df: pd.DataFrame) -> set:
    """Processes whose engine and fallback rows carry kernel activity."""
    if "kernel_busy_ns" not in df:
        return set()
    k = df[df["event"].isin(overlap.GPU_EVENTS) & df["kernel_busy_ns"].notna()]
    return set(k["pid"].unique())


def overlap_known(df: pd.DataFrame, allocs: pd.DataFrame, with_kernels: set | None = None
                   ) -> tuple[pd.DataFrame, str | None]:
    """allocs with runtime and realloc_cause added; hidden/exposed set unknown (NaN) where a CUDA-event
    bracket cannot tell: C++ runtime allocations in a process without kernel data (`with_kernels`:
    the processes with kernel data, `kernel_pids(df)` unless given)."""
    rt = df.loc[df["event"] == "alloc", ["seq", "runtime"]]
    a = allocs.merge(rt, on="seq", how="left") if len(allocs) else allocs.assign(runtime=pd.Series(dtype=object))
    a["realloc_cause"] = shapes.realloc_causes(df, a) if len(a) else pd.Series(dtype=object)
    if not len(a):
        return a, None
    with_kernels = kernel_pids(df) if with_kernels is None else with_kernels
    blind = (a["runtime"] == "cpp").fillna(False).to_numpy(bool) & ~a["pid"].isin(with_kernels).to_numpy(bool) \
        & a["hidden_ns"].notna().to_numpy(bool)
    if not blind.any():
        return a, None
    a.loc[blind, ["hidden_ns", "exposed_ns"]] = np.nan
    return a, CPP_CAVEAT


def unknown_groups(allocs: pd.DataFrame, infs: pd.DataFrame) -> pd.DataFrame:
    """(model, subgraph, mode) of the inferences with allocations whose hidden/exposed split is unknown."""
    unk = allocs[allocs["hidden_ns"].isna() & (allocs["inference"] >= 0)]
    if unk.empty or infs.empty:
        return pd.DataFrame(columns=["model", "subgraph", "mode"])
    return unk.merge(infs[overlap.KEY + ["mode"]], on=overlap.KEY)[["model", "subgraph", "mode"]].drop_duplicates()


def unknown_exposure(exposure: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Per-inference hidden/exposed set unknown (NaN) for the (model, subgraph, mode) groups whose
    allocations have an unknown split (`unknown_groups`); groups that allocated nothing stay 0."""
    if exposure.empty or keys.empty:
        return exposure
    hit = exposure[["model", "subgraph", "mode"]].merge(keys.drop_duplicates().assign(_u=True), how="left")["_u"]
    m = hit.fillna(False).to_numpy(bool) & (exposure["alloc_ns_per_inference"] > 0).to_numpy(bool)
    out = exposure.copy()
    out.loc[m, ["hidden_ns_per_inference", "exposed_ns_per_inference"]] = np.nan
    return out


def level_of(meta: dict) -> str | None:
    """The recording level from a capture's metadata (top level or its options), None if absent."""
    opts = meta.get("options") if isinstance(meta.get("options"), dict) else {}
    level = meta.get("level") or opts.get("level")
    return str(level) if level else None


def kernel_notes(meta: dict | None) -> list[str]:
    """What a capture's kernel metadata says about its latencies. A capture that recorded kernels
    without logging CUPTI's handover (`kernels.handover`, absent before trtprof took the records only
    at safe points) may hold inferences stalled by the handover itself."""
    k = (meta or {}).get("kernels")
    if not isinstance(k, dict) or not k.get("records") or "handover" in k:
        return []
    return ["kernel records were taken by a trtprof that did not log where CUPTI handed them over "
            "(meta.json has no kernels.handover): a buffer handed over inside an inference stalls it (0.4 to "
            "1.0 s on the H200 then), so latency outliers of that size may be the profiler's, not the model's"]


def gap_facts(df: pd.DataFrame, gaps: pd.DataFrame) -> dict:
    """What `gap_reason` reads of a timeline, as facts that the chunks of a capture combine (any,
    max, union, sum; `combine_facts`)."""
    inf = df[df["event"] == "inference"]
    inside = df[df["inference"] >= 0]
    g, gs, ge = overlap.gpu_windows(inside)
    ne = g[ge > gs]
    return {"inference_gpu": bool((inf["gpu_start_ns"].notna() & inf["gpu_end_ns"].notna()).any()),
            "inside": bool(len(inside) and (inside["event"] == "inference").any()),
            "windows": bool(len(g)), "nonempty": bool(len(ne)),
            "per": int(ne.groupby(overlap.KEY, observed=True)["subgraph"].nunique().max()) if len(ne) else 0,
            "subs": set(schema.natural_order(inside.loc[inside["event"].isin(overlap.GPU_EVENTS), "subgraph"].unique())),
            "timed": set(schema.natural_order(ne["subgraph"].unique())), "gaps": len(gaps)}


def combine_facts(facts: list[dict]) -> dict:
    return {"inference_gpu": any(f["inference_gpu"] for f in facts), "inside": any(f["inside"] for f in facts),
            "windows": any(f["windows"] for f in facts), "nonempty": any(f["nonempty"] for f in facts),
            "per": max((f["per"] for f in facts), default=0), "subs": set().union(*(f["subs"] for f in facts)),
            "timed": set().union(*(f["timed"] for f in facts)), "gaps": sum(f["gaps"] for f in facts)}


def gap_reason(df: pd.DataFrame, gaps: pd.DataFrame, gpu_times: bool, summary: pd.DataFrame | None = None,
               facts: dict | None = None) -> str:
    """Why the gap table (`summary`, the per-transition means; `gaps` when not given) is empty, from
    the data (`facts`: `gap_facts` of it, when given instead of `df`); "" when it is not. In order:
    GPU times only per inference (level minimal); no GPU times at all; no inference recorded;
    subgraph GPU times only outside inferences; empty GPU intervals; one subgraph per inference (no
    graph break); several subgraphs but GPU times on only one of them; gaps only in inferences left
    out of the statistics; GPU work of each subgraph starting before or as the previous one ended."""
    shown = gaps if summary is None else summary
    if len(shown):
        return ""
    f = gap_facts(df, gaps) if facts is None else facts
    if not gpu_times:
        if f["inference_gpu"]:
            return ("GPU times were recorded only around each inference (recording level minimal, or --no-brackets "
                    "with no kernel attributed), not per "
                    "subgraph, so the gaps between subgraphs cannot be measured")
        return ("no GPU times in this capture (recorded without CUDA, or CUDA events failed), so GPU idle gaps "
                "cannot be measured")
    if not f["inside"]:
        return ("no top-level inference was recorded (the engines ran outside a compiled model's call), and gaps "
                "are measured inside an inference")
    if not f["windows"]:
        return "GPU times were recorded only outside inferences, so there is no inference to look for gaps in"
    if not f["nonempty"]:
        return "every GPU interval inside an inference is empty (its end is not after its start), so no gap can be measured"
    subs, timed = schema.natural_order(f["subs"]), schema.natural_order(f["timed"])
    if f["per"] <= 1 and len(subs) <= 1:
        return (f"each inference runs a single subgraph on the GPU ({timed[0]}: one engine, no graph break), so "
                "there is no gap between subgraphs to measure")
    if f["per"] <= 1:
        untimed = [s for s in subs if s not in timed]
        return (f"only {', '.join(timed)} has GPU times in each inference; "
                f"{', '.join(untimed) or 'the other subgraphs'} ha{'s' if len(untimed) == 1 else 've'} none, so "
                "the gaps between subgraphs cannot be measured")
    if f["gaps"]:
        return (f"the GPU idled between subgraphs only in inferences left out of the statistics ({f['gaps']:,} "
                "gaps, e.g. the first inference after pre-allocated outputs were switched on)")
    return ("the GPU never idled between subgraphs: each subgraph's GPU work started before or as the "
            "previous one ended")


def analyse(df: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED, kernels: pd.DataFrame | None = None,
            meta: dict | None = None) -> Results:
    """Run every analysis once over a timeline (`kernels`: the capture's kernels.parquet, if any;
    `meta`: its meta.json, else `df.attrs['trtprof']` as `trtprof.load` sets it)."""
    infs = overlap.inferences(df)
    lat = inference_latency(df, infs)
    allocs, caveat = overlap_known(df, overlap.alloc_overlap(df, kernels))
    gaps = overlap.gpu_gaps(df, infs)
    gpu_times = overlap.has_gpu_times(df)
    changes = shapes.shape_changes(df, allocs)
    if meta is None:
        meta = df.attrs.get("trtprof") if isinstance(df.attrs.get("trtprof"), dict) else {}
    breaks = subgraphs.break_costs(df, gaps, infs)
    gap_sum = schema.sort_subgraphs(overlap.gap_summary(gaps, infs), by=("model", "mode", "before", "after"))
    freq = shapes.change_frequency(df)
    r = Results(
        infs=infs, latency=lat, by_mode=latency_summary(lat, ("model", "mode")),
        by_shape=latency_summary(lat, ("model", "mode", "input_shapes")),
        comparisons=compare_modes(lat, n_boot, seed), allocs=allocs,
        exposure=schema.sort_subgraphs(unknown_exposure(overlap.exposed_per_inference(df, allocs, infs),
                                                         unknown_groups(allocs, infs)),
                                       by=("model", "subgraph", "mode")),
        gaps=gaps, gap_summary=gap_sum,
        changes=changes, frequency=freq, shape_advice=shapes.advice(freq), breaks=breaks,
        subgraphs=subgraphs.table(df, allocs, breaks, kinds=("engine", "fallback")),
        recommendations=pd.DataFrame(columns=REC_COLUMNS), gpu_times=gpu_times,
        transitions=shapes.transitions(changes), streams=stream_names(df), overlap_caveat=caveat,
        gap_reason=gap_reason(df, gaps, gpu_times, gap_sum), kernels=has_kernels(df),
        level=level_of(meta), data_notes=repair_notes(meta) + kernel_notes(meta), busy_source=overlap.busy_source(df, kernels))
    r.cudagraphs = cudagraphs.compare(df, lat, n_boot, seed)
    r.recommendations = recommendations(r)
    return r
