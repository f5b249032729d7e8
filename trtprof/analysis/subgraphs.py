"""The per-subgraph table: one row per (model, subgraph), the numbers the terminal summary and the
report both show.

One implementation on purpose: the terminal summary printed at the end of `trtprof capture` and the
report's table must compute their medians over the same rows, or they disagree. The rules come from the timeline
contract: calls are counted on `schema.call_rows` (every call, excluded ones too), times are taken
over the calls that are kept (`schema.kept`: excluded calls are left out of timing statistics only),
GPU times over `schema.timed_rows`. Allocation counts cover every allocation; allocation times, like
every other time, leave excluded calls out. Stateless DataFrame -> DataFrame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis import overlap
from trtprof.analysis.latency import dur
from trtprof.timeline import schema

COLUMNS = ["model", "subgraph", "kind", "runtime", "calls", "gpu_ms_total", "gpu_us_median", "host_us_median",
           "enqueue_us_median", "allocs", "allocs_before_exec", "allocs_after_enqueue", "alloc_us_median",
           "alloc_ms_total", "hidden_ms_total", "exposed_ms_total", "bytes_total", "calls_preallocated",
           "calls_new_outputs", "shape_changes", "break_cost_us_per_inference", "kernels_median",
           "kernel_busy_us_median", "kernel_span_us_median", "gpu_idle_us_median", "copies_median",
           "copy_us_median", "bound"]
# `bound`, from medians per call where kernels were recorded: the GPU was busy less than half of the
# call's event bracket while the host took at least 80 % of it -> the host (launching) sets the pace
LAUNCH_BUSY_SHARE, LAUNCH_HOST_SHARE, GPU_BUSY_SHARE = 0.5, 0.8, 0.8
KEYS = ["model", "subgraph"]
_CALL_READS = KEYS + ["subgraph_kind", "event", "exclude", "host_start_ns", "host_end_ns", "outputs", "shape_changed"]
_READS = KEYS + ["subgraph_kind", "runtime", "event", "exclude", "host_start_ns", "host_end_ns", "gpu_start_ns",
                 "gpu_end_ns", "outputs", "shape_changed", "alloc_phase", "bytes", "kernel_count", "kernel_busy_ns",
                 "kernel_first_ns", "kernel_last_ns", "copy_count", "copy_ns"]
_KIND_ORDER = {"model": 0, "engine": 1, "fallback": 1}


def break_costs(df: pd.DataFrame, gaps: pd.DataFrame, infs: pd.DataFrame) -> pd.DataFrame:
    """Per fallback subgraph: mean cost per inference of the graph break = its GPU time (host time
    without GPU times) plus the GPU idle gaps right before and after it."""
    cols = ["model", "subgraph", "inferences", "fallback_us", "gaps_us", "break_cost_us_per_inference"]
    fb = df[(df["event"] == "fallback") & (df["inference"] >= 0)]
    if fb.empty:
        return pd.DataFrame(columns=cols)
    ok = infs.loc[~infs["excluded"], overlap.KEY]
    fb = fb.merge(ok, on=overlap.KEY)
    gpu = dur(fb, "gpu_start_ns", "gpu_end_ns")
    fb = fb.assign(_t=gpu.fillna(dur(fb, "host_start_ns", "host_end_ns")))
    per = fb.groupby(["model", "subgraph"] + ["pid", "inference"], sort=False)["_t"].sum().reset_index()
    if len(gaps):
        g = gaps[~gaps["excluded"]]
        parts = [g.rename(columns={side: "subgraph"})[["model", "subgraph", "pid", "inference", "gap_ns"]]
                 for side in ("before", "after")]
        gsum = pd.concat(parts).groupby(["model", "subgraph", "pid", "inference"])["gap_ns"].sum()
        per = per.merge(gsum.reset_index(), on=["model", "subgraph", "pid", "inference"], how="left")
    else:
        per["gap_ns"] = 0.0
    per["gap_ns"] = per["gap_ns"].fillna(0.0)
    out = per.groupby(["model", "subgraph"], sort=False).agg(
        inferences=("_t", "size"), fallback_us=("_t", "mean"), gaps_us=("gap_ns", "mean")).reset_index()
    out["fallback_us"] /= 1e3
    out["gaps_us"] /= 1e3
    out["break_cost_us_per_inference"] = out["fallback_us"] + out["gaps_us"]
    return out[cols]


def _bound(t: pd.DataFrame) -> pd.Series:
    """'launch-bound' / 'GPU-bound' / 'mixed' per subgraph from its kernel medians; null without kernels."""
    busy, bracket, host = (t[c].astype(float) for c in ("kernel_busy_us_median", "gpu_us_median", "host_us_median"))
    known = busy.notna() & bracket.notna() & (bracket > 0)
    share = busy / bracket
    verdict = np.where(share >= GPU_BUSY_SHARE, "GPU-bound",
                       np.where((share < LAUNCH_BUSY_SHARE) & (host >= LAUNCH_HOST_SHARE * bracket), "launch-bound",
                                "mixed"))
    return pd.Series(np.where(known, verdict, None), index=t.index, dtype=object)


def _is(values: pd.Series, what: str) -> np.ndarray:
    return (values == what).fillna(False).to_numpy(np.int64)


def _identity(df: pd.DataFrame) -> pd.DataFrame:
    """model and subgraph with '' for nulls (an in-memory frame may hold them), as strings of the
    pandas string dtype: an object column would make a Python string per row. Without nulls (what
    the loader guarantees) the frame is returned as it is, not copied."""
    if not (df["model"].isna().any() or df["subgraph"].isna().any()):
        return df
    return df.assign(model=df["model"].astype("string").fillna(""), subgraph=df["subgraph"].astype("string").fillna(""))


def table(df: pd.DataFrame, allocs: pd.DataFrame | None = None, breaks: pd.DataFrame | None = None,
          kinds=None) -> pd.DataFrame:
    """One row per (model, subgraph) of the given kinds (None: every row), in natural order (the
    model's own row first).

    `allocs`: `overlap.alloc_overlap(df)`, for hidden/exposed allocation time (null without it);
    `breaks`: `break_costs(...)`, for the cost of each graph break (null without it)."""
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = df[[c for c in _READS if c in df]]  # the copies below then carry only what the table reads
    d = _identity(df if kinds is None else df[df["subgraph_kind"].isin(list(kinds)).fillna(False).to_numpy(bool)])
    if d.empty:
        return pd.DataFrame(columns=COLUMNS)
    keep = schema.kept(d)
    # each subset carries only the columns read from it (a row subset copies every column it has)
    calls = schema.call_rows(d[[c for c in d if c in _CALL_READS]])
    timed = schema.timed_rows(d[[c for c in d if c not in ("outputs", "shape_changed", "alloc_phase", "bytes")]])
    timed = timed.assign(_gpu=dur(timed, "gpu_start_ns", "gpu_end_ns"),
                         _enq=np.where(timed["event"] == "exec", dur(timed, "host_start_ns", "host_end_ns"), np.nan))
    kc = calls[keep.loc[calls.index]]
    kc = kc.assign(_host=dur(kc, "host_start_ns", "host_end_ns"))
    a = d.loc[(d["event"] == "alloc").fillna(False).to_numpy(bool),
              KEYS + ["alloc_phase", "bytes", "host_start_ns", "host_end_ns", "exclude"]]
    ka = a[keep.loc[a.index]]
    ka = ka.assign(_dur=dur(ka, "host_start_ns", "host_end_ns"))
    first = d.groupby(KEYS, sort=False).agg(kind=("subgraph_kind", "first"), runtime=("runtime", "first"))
    first["kind"] = first["kind"].astype(object).where(first["kind"].notna(), "unknown")
    flags = calls[KEYS].assign(
        calls_preallocated=_is(calls["outputs"], "preallocated"), calls_new_outputs=_is(calls["outputs"], "new"),
        shape_changes=calls["shape_changed"].fillna(False).astype(bool).to_numpy(np.int64))
    cg = flags.groupby(KEYS, sort=False)
    out = first.join(cg.size().rename("calls")).join(cg.sum())
    if "kernel_busy_ns" in timed:
        timed = timed.assign(_kn=timed["kernel_count"].astype("Float64").astype(float),
                             _kb=timed["kernel_busy_ns"].astype("Float64").astype(float),
                             _ks=dur(timed, "kernel_first_ns", "kernel_last_ns"))
    else:
        timed = timed.assign(_kn=np.nan, _kb=np.nan, _ks=np.nan)
    # copies CUPTI saw inside the call (a CUDA-graph replay's staging copies in per-engine mode)
    timed = timed.assign(**{n: timed[c].astype("Float64").astype(float) if c in timed else np.nan
                            for n, c in (("_cn", "copy_count"), ("_cns", "copy_ns"))})
    timed = timed.assign(_idle=timed["_gpu"] - timed["_kb"])
    tg = timed.groupby(KEYS, sort=False)
    out = out.join(pd.DataFrame({"gpu_ms_total": tg["_gpu"].sum(min_count=1) / 1e6,
                                 "gpu_us_median": tg["_gpu"].median() / 1e3,
                                 "enqueue_us_median": tg["_enq"].median() / 1e3,
                                 "kernels_median": tg["_kn"].median(),
                                 "kernel_busy_us_median": tg["_kb"].median() / 1e3,
                                 "kernel_span_us_median": tg["_ks"].median() / 1e3,
                                 "gpu_idle_us_median": tg["_idle"].median() / 1e3,
                                 "copies_median": tg["_cn"].median(), "copy_us_median": tg["_cns"].median() / 1e3}))
    out = out.join((kc.groupby(KEYS, sort=False)["_host"].median() / 1e3).rename("host_us_median"))
    ag = a[KEYS].assign(allocs_before_exec=_is(a["alloc_phase"], "before_exec"),
                        allocs_after_enqueue=_is(a["alloc_phase"], "after_enqueue")).groupby(KEYS, sort=False)
    out = out.join(ag.size().rename("allocs")).join(ag.sum())
    ka = ka.assign(_b=ka["bytes"].astype("Float64").fillna(0).astype(float))
    kg = ka.groupby(KEYS, sort=False)
    out = out.join(pd.DataFrame({"alloc_us_median": kg["_dur"].median() / 1e3,
                                 "alloc_ms_total": kg["_dur"].sum() / 1e6, "bytes_total": kg["_b"].sum()}))
    if allocs is not None and len(allocs):
        ov = _identity(allocs[~allocs["exclude"].fillna(False).astype(bool)]).groupby(KEYS, sort=False)
        out = out.join(pd.DataFrame({"hidden_ms_total": ov["hidden_ns"].sum(min_count=1) / 1e6,
                                     "exposed_ms_total": ov["exposed_ns"].sum(min_count=1) / 1e6}))
    if breaks is not None and len(breaks):
        out = out.join(_identity(breaks).set_index(KEYS)["break_cost_us_per_inference"])
    out = out.reindex(columns=[c for c in COLUMNS if c not in KEYS])
    for c in ("calls", "allocs", "allocs_before_exec", "allocs_after_enqueue", "calls_preallocated",
              "calls_new_outputs", "shape_changes"):
        out[c] = out[c].fillna(0).astype(int)
    for c in ("alloc_ms_total", "bytes_total"):
        out[c] = out[c].astype(float).fillna(0.0)
    out["bound"] = _bound(out)
    out = out.reset_index()
    out[KEYS] = out[KEYS].astype(object)  # one row per subgraph: plain strings for the renderers
    out["_k"] = out["kind"].map(_KIND_ORDER).fillna(2)
    order = sorted(range(len(out)), key=lambda i: (schema.natural_key(out["model"].iat[i]), out["_k"].iat[i],
                                                   schema.natural_key(out["subgraph"].iat[i])))
    return out.iloc[order].drop(columns="_k").reset_index(drop=True)[COLUMNS]
