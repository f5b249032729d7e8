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

from trtprof.analysis import counts, overlap
from trtprof.analysis.latency import dur
from trtprof.timeline import schema

COLUMNS = ["model", "subgraph", "kind", "runtime", "calls", "gpu_ms_total", "gpu_us_median", "host_us_median",
           "enqueue_us_median", "allocs", "allocs_before_exec", "allocs_after_enqueue", "alloc_us_median",
           "alloc_ms_total", "hidden_ms_total", "exposed_ms_total", "bytes_total", "calls_preallocated",
           "calls_new_outputs", "shape_changes", "break_cost_us_per_inference", "kernels_median",
           "kernel_busy_us_median", "kernel_span_us_median", "gpu_idle_us_median", "copies_median",
           "copy_us_median", "bound"]
# `bound`, from kernels and host times (medians per call where kernels were recorded), never from the
# event bracket, so it needs no events and carries none of their drift. The call's window runs from its
# host start until both the host and its last kernel are done. Launch-bound: the kernels were busy under
# half of the window while the host took at least 80 % of it (the GPU kept up and waited for launches).
# GPU-bound: the host was done within the first half of the window and the kernels kept the GPU busy at
# least 80 % of their span (the GPU ran behind the host, back to back). Else mixed; null where the calls
# ran no kernel (nothing on the GPU to be bound by). On the committed H200 captures (reports/cases,
# reports/bert, reports/cudagraphs, its breaks-cpp at commit 66a8e7c; batch 1) this gives the event
# bracket rule's verdict on every subgraph but the 1-kernel fallbacks under CUDA graphs, whose brackets
# began at the previous engine's end event (busy 1.6 us of 16-21 us of host: launch-bound, not mixed).
LAUNCH_BUSY_SHARE, LAUNCH_HOST_SHARE, GPU_BUSY_SHARE, GPU_HOST_SHARE = 0.5, 0.8, 0.8, 0.5
KEYS = ["model", "subgraph"]
_CALL_READS = KEYS + ["subgraph_kind", "event", "exclude", "host_start_ns", "host_end_ns", "outputs", "shape_changed"]
_READS = KEYS + ["subgraph_kind", "runtime", "event", "exclude", "host_start_ns", "host_end_ns", "gpu_start_ns",
                 "gpu_end_ns", "outputs", "shape_changed", "alloc_phase", "bytes", "kernel_count", "kernel_busy_ns",
                 "kernel_first_ns", "kernel_last_ns", "copy_count", "copy_ns"]
_KIND_ORDER = {"model": 0, "engine": 1, "fallback": 1}


def break_parts(df: pd.DataFrame, gaps: pd.DataFrame, infs: pd.DataFrame) -> pd.DataFrame:
    """Per fallback subgraph: included inferences it ran in, and the sums over them of its time and of
    the GPU idle gaps right before and after it (what `break_costs` averages; chunks add up)."""
    fb = df[(df["event"] == "fallback") & (df["inference"] >= 0)]
    if fb.empty:
        return pd.DataFrame(columns=["model", "subgraph", "inferences", "_t", "gap_ns"])
    ok = infs.loc[~infs["excluded"], overlap.KEY]
    fb = fb.merge(ok, on=overlap.KEY)
    # the fallback's GPU window as the gaps see it (overlap.gpu_windows: its kernel span where
    # recorded, else its event bracket), so the window and the gaps around it never overlap; an event
    # bracket beside gaps between kernel spans would count the GPU's wait for the host twice.
    # Without GPU times, its host time.
    t = dur(fb, "host_start_ns", "host_end_ns")
    g, gs, ge = overlap.gpu_windows(fb)
    t.loc[g.index] = (ge - gs).astype(float)
    fb = fb.assign(_t=t)
    per = fb.groupby(["model", "subgraph"] + ["pid", "inference"], sort=False, observed=True)["_t"].sum().reset_index()
    if len(gaps):
        g = gaps[~gaps["excluded"]]
        parts = [g.rename(columns={side: "subgraph"})[["model", "subgraph", "pid", "inference", "gap_ns"]]
                 for side in ("before", "after")]
        gsum = pd.concat(parts).groupby(["model", "subgraph", "pid", "inference"], observed=True)["gap_ns"].sum()
        per = per.merge(gsum.reset_index(), on=["model", "subgraph", "pid", "inference"], how="left")
    else:
        per["gap_ns"] = 0.0
    per["gap_ns"] = per["gap_ns"].fillna(0.0)
    return per.groupby(["model", "subgraph"], sort=False, observed=True).agg(
        inferences=("_t", "size"), _t=("_t", "sum"), gap_ns=("gap_ns", "sum")).reset_index()


def break_finish(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """`break_costs` from the `break_parts` of one frame or of the chunks of a capture (in order)."""
    cols = ["model", "subgraph", "inferences", "fallback_us", "gaps_us", "break_cost_us_per_inference"]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = parts[0] if len(parts) == 1 else \
        pd.concat(parts, ignore_index=True).groupby(["model", "subgraph"], sort=False, observed=True).sum().reset_index()
    # sums of integer nanoseconds are exact in any order, so sum / count is the mean of the whole
    out["fallback_us"] = out["_t"] / out["inferences"] / 1e3
    out["gaps_us"] = out["gap_ns"] / out["inferences"] / 1e3
    out["break_cost_us_per_inference"] = out["fallback_us"] + out["gaps_us"]
    return out[cols]


def break_costs(df: pd.DataFrame, gaps: pd.DataFrame, infs: pd.DataFrame) -> pd.DataFrame:
    """Per fallback subgraph: mean cost per inference of the graph break = its GPU time (host time
    without GPU times) plus the GPU idle gaps right before and after it."""
    return break_finish([break_parts(df, gaps, infs)])


def _bound(t: pd.DataFrame) -> pd.Series:
    """'launch-bound' / 'GPU-bound' / 'mixed' per subgraph from its kernel and host medians (the rule
    above `LAUNCH_BUSY_SHARE`); null without kernels, or where its calls ran none."""
    busy, span, window, host, count = (t[c].astype(float) for c in (
        "kernel_busy_us_median", "kernel_span_us_median", "_window_us", "_timed_host_us", "kernels_median"))
    known = busy.notna() & window.notna() & (window > 0) & (count > 0)
    launch = (busy < LAUNCH_BUSY_SHARE * window) & (host >= LAUNCH_HOST_SHARE * window)
    gpu = (busy >= GPU_BUSY_SHARE * span) & (host <= GPU_HOST_SHARE * window)
    verdict = np.where(launch, "launch-bound", np.where(gpu, "GPU-bound", "mixed"))
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


# median column -> (the per-row value it is the median of, divisor to its unit)
_MEDIANS = {"gpu_us_median": ("_gpu", 1e3), "enqueue_us_median": ("_enq", 1e3), "kernels_median": ("_kn", None),
            "kernel_busy_us_median": ("_kb", 1e3), "kernel_span_us_median": ("_ks", 1e3),
            "gpu_idle_us_median": ("_idle", 1e3), "copies_median": ("_cn", None), "copy_us_median": ("_cns", 1e3),
            "host_us_median": ("_host", 1e3), "alloc_us_median": ("_dur", 1e3),
            "_window_us": ("_win", 1e3), "_timed_host_us": ("_th", 1e3)}  # the verdict's, not columns
_TIMED = ("_gpu", "_enq", "_kn", "_kb", "_ks", "_idle", "_cn", "_cns", "_win", "_th")


def table(df: pd.DataFrame, allocs: pd.DataFrame | None = None, breaks: pd.DataFrame | None = None,
          kinds=None) -> pd.DataFrame:
    """One row per (model, subgraph) of the given kinds (None: every row), in natural order (the
    model's own row first).

    `allocs`: `overlap.alloc_overlap(df)`, for hidden/exposed allocation time (null without it);
    `breaks`: `break_costs(...)`, for the cost of each graph break (null without it)."""
    return finish([parts(df, allocs, kinds)], breaks)


def parts(df: pd.DataFrame, allocs: pd.DataFrame | None = None, kinds=None) -> dict | None:
    """What `finish` needs of a frame (the whole timeline, or one chunk of a capture): the first kind
    and runtime per subgraph, the counts and sums, and the value counts the medians come from
    (`analysis.counts`); None without rows of the kinds."""
    if df.empty:
        return None
    df = df[[c for c in _READS if c in df]]  # the copies below then carry only what the table reads
    d = _identity(df if kinds is None else df[df["subgraph_kind"].isin(list(kinds)).fillna(False).to_numpy(bool)])
    if d.empty:
        return None
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
    first = d.groupby(KEYS, sort=False, observed=True).agg(kind=("subgraph_kind", "first"), runtime=("runtime", "first"))
    flags = calls[KEYS].assign(
        calls_preallocated=_is(calls["outputs"], "preallocated"), calls_new_outputs=_is(calls["outputs"], "new"),
        shape_changes=calls["shape_changed"].fillna(False).astype(bool).to_numpy(np.int64))
    cg = flags.groupby(KEYS, sort=False, observed=True)
    if "kernel_busy_ns" in timed:
        timed = timed.assign(_kn=timed["kernel_count"].astype("Float64").astype(float),
                             _kb=timed["kernel_busy_ns"].astype("Float64").astype(float),
                             # a call recorded with no kernel spans none: 0, so busy and span are
                             # medians over the same calls (NaN only where nothing was recorded)
                             _ks=dur(timed, "kernel_first_ns", "kernel_last_ns").mask(
                                 timed["kernel_count"].astype("Float64").eq(0).fillna(False).to_numpy(bool), 0.0))
        # the verdict's window and host time, over the calls with kernel records: from the call's host
        # start until the host and its last kernel are both done (a call that ran none: its host time)
        h0, h1 = (timed[c].astype("Float64").astype(float) for c in ("host_start_ns", "host_end_ns"))
        last = timed["kernel_last_ns"].astype("Float64").astype(float)
        rec = timed["_kb"].notna()
        timed = timed.assign(_win=(np.fmax(h1, last) - h0).where(rec), _th=(h1 - h0).where(rec))
    else:
        timed = timed.assign(_kn=np.nan, _kb=np.nan, _ks=np.nan, _win=np.nan, _th=np.nan)
    # copies CUPTI saw inside the call (a CUDA-graph replay's staging copies in per-engine mode)
    timed = timed.assign(**{n: timed[c].astype("Float64").astype(float) if c in timed else np.nan
                            for n, c in (("_cn", "copy_count"), ("_cns", "copy_ns"))})
    timed = timed.assign(_idle=timed["_gpu"] - timed["_kb"])
    sums = cg.size().rename("calls").to_frame().join(cg.sum(), how="outer")
    sums = sums.join(timed.groupby(KEYS, sort=False, observed=True)["_gpu"].sum(min_count=1).rename("_gpu_sum"), how="outer")
    ag = a[KEYS].assign(allocs_before_exec=_is(a["alloc_phase"], "before_exec"),
                        allocs_after_enqueue=_is(a["alloc_phase"], "after_enqueue")).groupby(KEYS, sort=False, observed=True)
    sums = sums.join(ag.size().rename("allocs"), how="outer").join(ag.sum(), how="outer")
    ka = ka.assign(_b=ka["bytes"].astype("Float64").fillna(0).astype(float))
    kg = ka.groupby(KEYS, sort=False, observed=True)
    sums = sums.join(pd.DataFrame({"_dur_sum": kg["_dur"].sum(), "_b_sum": kg["_b"].sum()}), how="outer")
    if allocs is not None and len(allocs):
        ov = _identity(allocs[~allocs["exclude"].fillna(False).astype(bool)]).groupby(KEYS, sort=False, observed=True)
        sums = sums.join(pd.DataFrame({"_hidden": ov["hidden_ns"].sum(min_count=1),
                                       "_exposed": ov["exposed_ns"].sum(min_count=1)}), how="outer")
    values = pd.concat([counts.value_counts(timed, KEYS, _TIMED), counts.value_counts(kc, KEYS, ["_host"]),
                        counts.value_counts(ka, KEYS, ["_dur"])], ignore_index=True)
    return {"first": first, "sums": sums, "counts": values}


def merge(chunks: list) -> dict | None:
    """The `parts` of chunks in order as the parts of them all (a running total stays small: the
    value counts grow with the distinct values, not with the rows)."""
    chunks = [c for c in chunks if c is not None]
    if len(chunks) <= 1:
        return chunks[0] if chunks else None
    first = pd.concat([c["first"] for c in chunks]).groupby(level=KEYS, sort=False).first()
    sums = pd.concat([c["sums"] for c in chunks]).groupby(level=KEYS, sort=False).sum(min_count=1)
    return {"first": first, "sums": sums, "counts": counts.combine([c["counts"] for c in chunks], KEYS)}


def finish(chunks: list, breaks: pd.DataFrame | None = None) -> pd.DataFrame:
    """The table from the `parts` of one frame, or of the chunks of a capture in their order: counts
    and sums add up (integer nanoseconds: exact in any order), medians come from the value counts."""
    part = merge(chunks)
    if part is None:
        return pd.DataFrame(columns=COLUMNS)
    first, sums, values = part["first"], part["sums"], part["counts"]
    out = first.copy()
    out["kind"] = out["kind"].astype(object).where(out["kind"].notna(), "unknown")
    out = out.join(sums)
    for c in ("_gpu_sum", "_dur_sum", "_b_sum", "_hidden", "_exposed"):
        if c not in out:
            out[c] = np.nan
    out["gpu_ms_total"] = out["_gpu_sum"] / 1e6
    out["alloc_ms_total"] = out["_dur_sum"] / 1e6
    out["bytes_total"] = out["_b_sum"]
    out["hidden_ms_total"] = out["_hidden"] / 1e6
    out["exposed_ms_total"] = out["_exposed"] / 1e6
    med = counts.medians(values, KEYS).reindex(out.index)
    for col, (stat, unit) in _MEDIANS.items():
        v = med[stat].astype(float) if stat in med else pd.Series(np.nan, index=out.index)
        out[col] = v if unit is None else v / unit
    if breaks is not None and len(breaks):
        out = out.join(_identity(breaks).set_index(KEYS)["break_cost_us_per_inference"])
    out["bound"] = _bound(out)
    out = out.reindex(columns=[c for c in COLUMNS if c not in KEYS])
    for c in ("calls", "allocs", "allocs_before_exec", "allocs_after_enqueue", "calls_preallocated",
              "calls_new_outputs", "shape_changes"):
        out[c] = out[c].fillna(0).astype(int)
    for c in ("alloc_ms_total", "bytes_total"):
        out[c] = out[c].astype(float).fillna(0.0)
    out = out.reset_index()
    out[KEYS] = out[KEYS].astype(object)  # one row per subgraph: plain strings for the renderers
    out["_k"] = out["kind"].map(_KIND_ORDER).fillna(2)
    order = sorted(range(len(out)), key=lambda i: (schema.natural_key(out["model"].iat[i]), out["_k"].iat[i],
                                                   schema.natural_key(out["subgraph"].iat[i])))
    return out.iloc[order].drop(columns="_k").reset_index(drop=True)[COLUMNS]
