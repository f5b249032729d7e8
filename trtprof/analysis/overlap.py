"""Does output allocation overlap GPU execution? Hidden vs exposed allocation time, and GPU idle gaps.

Why this module exists: pre-allocated outputs only pay off when the allocation runs on the host *while
the GPU is busy*. So for every `alloc` row we measure how much of its host interval is covered by GPU
work (hidden) and how much is not (exposed). "GPU busy" is, best source first: the union of the
kernels and copies CUPTI recorded (kernels.parquet: what the GPU really ran); else the union of the
rows' kernel spans (first kernel start to last kernel end); else the union of the CUDA-event brackets
of the `exec` and `fallback` rows of the same process, across all streams (which include the time the
GPU waited for the host: on the C++ runtime an upper bound of busy, so "hidden" is then not known). Inside one inference, the holes in that
union are GPU idle gaps; each gap is split by what the host was doing meanwhile (allocating, running a
fallback, enqueuing an engine, or nothing we recorded: "python").

Everything here is stateless DataFrame -> DataFrame and vectorised with numpy: interval unions and
intersections are sorts, cumulative maxima and binary searches, never Python loops over rows, so a
1,000,000-row timeline takes well under a second. Without GPU times (a CPU capture) hidden/exposed
and the gaps are unknown: the columns are NaN / the gap table is empty, never guessed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis.groups import group_sizes
from trtprof.timeline.columns import RAISED_NOTE

GPU_EVENTS = ("exec", "fallback")
HOST_ACTIVITIES = ("alloc", "fallback", "enqueue")  # in priority order when they overlap
GAP_CATEGORIES = ("alloc_ns", "fallback_ns", "enqueue_ns", "python_ns")
KEY = ["pid", "model", "inference"]  # one inference; inference == -1 means "outside any inference"


# -- interval arithmetic on plain numpy arrays -------------------------------------------------------
def union(starts, ends) -> tuple[np.ndarray, np.ndarray]:
    """Merge intervals [start, end) into disjoint sorted ones. Empty (end <= start) ones are dropped;
    touching and nested intervals merge."""
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    keep = e > s
    s, e = s[keep], e[keep]
    if not len(s):
        return s, e
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    reach = np.maximum.accumulate(e)  # furthest end seen so far
    new = np.empty(len(s), dtype=bool)
    new[0] = True
    new[1:] = s[1:] > reach[:-1]  # a gap before this interval: a new merged one starts
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(s) - 1]
    return s[first], reach[last]


def covered(us: np.ndarray, ue: np.ndarray, qs, qe) -> np.ndarray:
    """For each query [qs, qe), the length covered by the disjoint sorted intervals (us, ue)."""
    qs = np.asarray(qs, dtype=np.int64)
    qe = np.maximum(np.asarray(qe, dtype=np.int64), qs)
    if not len(us) or not len(qs):
        return np.zeros(len(qs), dtype=np.int64)
    cum = np.r_[0, np.cumsum(ue - us)]  # total length of the intervals before index i

    def upto(t):  # covered length of (-inf, t]
        i = np.searchsorted(us, t, side="right") - 1
        ok = i >= 0
        j = np.where(ok, i, 0)
        return np.where(ok, cum[j] + np.minimum(t, ue[j]) - us[j], 0)

    return upto(qe) - upto(qs)


class Packed:
    """Puts each group's intervals on its own stretch of one int64 axis, so a single global union or
    search never mixes groups (processes, inferences). Each group is shifted by its own minimum, then
    laid end to end with a spacing larger than any group's extent."""

    def __init__(self, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        codes = np.asarray(codes, dtype=np.int64)
        n = int(codes.max()) + 1 if len(codes) else 0
        self.base = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(self.base, codes, np.asarray(starts, dtype=np.int64))
        top = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(top, codes, np.maximum(np.asarray(ends, dtype=np.int64), np.asarray(starts, dtype=np.int64)))
        present = top >= self.base
        extent = int((top[present] - self.base[present]).max()) if present.any() else 0
        self.span = extent + 2
        if n and self.span * n >= 2 ** 62:
            raise OverflowError("timeline too long to pack; the clock values are implausible")

    def __call__(self, codes, t) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        return np.asarray(t, dtype=np.int64) - self.base[codes] + codes * self.span

    def unpack(self, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = packed // self.span
        return codes, packed - codes * self.span + self.base[codes]


# -- helpers on the timeline -------------------------------------------------------------------------
def _flag(s: pd.Series) -> np.ndarray:
    return s.fillna(False).astype(bool).to_numpy()


def _ns(s: pd.Series) -> np.ndarray:
    """Nullable int column -> int64 with -1 for missing (callers mask with `_known`)."""
    return s.astype("Int64").fillna(-1).to_numpy(dtype=np.int64)


def _timed(g: pd.DataFrame) -> pd.Series:
    """Rows with a GPU interval: an event bracket, or a kernel span (kernel activity attributes kernels
    by launch time to rows without events too, e.g. at the minimal level)."""
    ok = g["gpu_start_ns"].notna() & g["gpu_end_ns"].notna()
    if "kernel_first_ns" in g:
        ok |= g["kernel_first_ns"].notna() & g["kernel_last_ns"].notna()
    return ok


def has_gpu_times(df: pd.DataFrame) -> bool:
    """True when some exec/fallback row carries a GPU interval (event bracket or kernel span)."""
    g = df[df["event"].isin(GPU_EVENTS)]
    return bool(_timed(g).any())


def inferences(df: pd.DataFrame) -> pd.DataFrame:
    """One row per inference (pid, model, inference >= 0): its pre-alloc mode and whether it is excluded.

    mode: "on" / "off" when every engine call of the inference had pre-allocated outputs on / off,
    "mixed" when both, "none" without engine calls. excluded: the inference row or any of its rows is
    marked `exclude` (e.g. a cold start, the first call after a mode flip), so its latency is not representative.
    raised: the inference's call raised (its row's note says so), so its time is no finished inference's.
    """
    inf = df[df["inference"] >= 0]
    if inf.empty:
        return pd.DataFrame(columns=KEY + ["mode", "excluded", "raised", "input_shapes", "engine_calls"])
    eng = inf[(inf["event"] == "call") & (inf["subgraph_kind"] == "engine")]
    pre = eng.assign(_on=_flag(eng["prealloc"]), _off=~_flag(eng["prealloc"]))
    agg = pre.groupby(KEY, sort=False, dropna=False, observed=True).agg(on=("_on", "any"), off=("_off", "any"),
                                                           engine_calls=("_on", "size"))
    excl = inf.assign(_x=_flag(inf["exclude"])).groupby(KEY, sort=False, dropna=False, observed=True)["_x"].any()
    rows = inf[inf["event"] == "inference"].drop_duplicates(KEY).set_index(KEY)
    # a reader that left the note out: none raised
    raised = rows["note"].astype("string").str.startswith(RAISED_NOTE).fillna(False).astype(bool) \
        if "note" in rows else pd.Series(False, index=rows.index)
    out = pd.DataFrame({"excluded": excl})
    out = out.join(agg, how="left").join(rows["input_shapes"], how="left").join(raised.rename("raised"), how="left")
    out["raised"] = out["raised"].fillna(False).astype(bool)
    on, off = out["on"].fillna(False).astype(bool), out["off"].fillna(False).astype(bool)
    out["mode"] = np.select([on & off, on, off], ["mixed", "on", "off"], "none")
    out["engine_calls"] = out["engine_calls"].fillna(0).astype(int)
    return out.reset_index()[KEY + ["mode", "excluded", "raised", "input_shapes", "engine_calls"]]


def gpu_windows(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """exec/fallback rows with a GPU interval, and that interval: the row's kernel span where kernel
    activity was recorded for it, else its CUDA-event bracket."""
    g = df[df["event"].isin(GPU_EVENTS)]
    g = g[_timed(g)]
    s, e = _ns(g["gpu_start_ns"]), _ns(g["gpu_end_ns"])
    if "kernel_first_ns" in g and len(g):
        k = g["kernel_first_ns"].notna().to_numpy() & g["kernel_last_ns"].notna().to_numpy()
        s = np.where(k, _ns(g["kernel_first_ns"]), s)
        e = np.where(k, _ns(g["kernel_last_ns"]), e)
    return g, s, e


def busy_source(df: pd.DataFrame, kernels: pd.DataFrame | None = None) -> str | None:
    """What 'GPU busy' is measured from in this capture (see the module docstring); None: no GPU times."""
    if kernels is not None and len(kernels):
        return "kernels"
    if "kernel_first_ns" in df and df.loc[df["event"].isin(GPU_EVENTS), "kernel_first_ns"].notna().any():
        return "kernel spans"
    return "event brackets" if has_gpu_times(df) else None


def _kernel_busy(df: pd.DataFrame, kernels: pd.DataFrame) -> pd.DataFrame:
    """Union of the recorded kernels and copies, for the process of their rows (CUPTI records are
    per process; unattributed ones belong to the capture's main process)."""
    pid_of = df.set_index("seq")["pid"] if len(df) else pd.Series(dtype="int64")
    main = int(df["pid"].mode().iat[0]) if len(df) else 0
    seq = kernels["seq"].astype("Int64")
    pid = seq.map(pid_of).astype("Int64").fillna(main).to_numpy(np.int64)
    s, e = _ns(kernels["start_ns"]), _ns(kernels["end_ns"])
    codes, pids = pd.factorize(pd.Series(pid))
    pk = Packed(codes, s, e)
    us, ue = union(pk(codes, s), pk(codes, e))
    c, start = pk.unpack(us)
    return pd.DataFrame({"pid": np.asarray(pids)[c].astype(np.int64), "start_ns": start, "end_ns": ue - us + start})


def gpu_busy(df: pd.DataFrame, kernels: pd.DataFrame | None = None) -> pd.DataFrame:
    """The GPU busy intervals of each process, from the best source there is (`busy_source`)."""
    if kernels is not None and len(kernels):
        return _kernel_busy(df, kernels)
    g, s, e = gpu_windows(df)
    if g.empty:
        return pd.DataFrame({"pid": pd.Series(dtype="int64"), "start_ns": pd.Series(dtype="int64"),
                             "end_ns": pd.Series(dtype="int64")})
    codes, pids = pd.factorize(g["pid"])
    pk = Packed(codes, s, e)
    us, ue = union(pk(codes, s), pk(codes, e))
    c, start = pk.unpack(us)
    return pd.DataFrame({"pid": np.asarray(pids)[c].astype(np.int64), "start_ns": start,
                         "end_ns": ue - us + start})


def alloc_overlap(df: pd.DataFrame, kernels: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per alloc row: its host duration split into hidden (GPU busy) and exposed (GPU idle),
    GPU busy from `gpu_busy(df, kernels)`.

    hidden_ns / exposed_ns are NaN for processes without any GPU times.
    """
    cols = ["seq", "pid", "model", "inference", "subgraph", "call", "prealloc", "alloc_phase",
            "reallocated", "shape_changed", "bytes", "exclude"]
    a = df.loc[df["event"] == "alloc", cols + ["host_start_ns", "host_end_ns"]]
    out = a[cols].reset_index(drop=True)
    s, e = a["host_start_ns"].to_numpy(np.int64), a["host_end_ns"].to_numpy(np.int64)
    out["alloc_ns"] = np.maximum(e - s, 0)
    hidden = np.full(len(a), np.nan)
    busy = gpu_busy(df, kernels)
    if len(a) and len(busy):
        pids = pd.Index(busy["pid"].unique())
        codes = pids.get_indexer(a["pid"].to_numpy())
        known = codes >= 0
        bcodes = pids.get_indexer(busy["pid"].to_numpy())
        pk = Packed(np.r_[bcodes, codes[known]], np.r_[busy["start_ns"].to_numpy(), s[known]],
                    np.r_[busy["end_ns"].to_numpy(), e[known]])
        us, ue = pk(bcodes, busy["start_ns"].to_numpy()), pk(bcodes, busy["end_ns"].to_numpy())
        order = np.argsort(us)  # per-pid unions are disjoint; packing keeps them sorted globally
        hidden[known] = covered(us[order], ue[order], pk(codes[known], s[known]), pk(codes[known], e[known]))
    out["hidden_ns"] = hidden
    out["exposed_ns"] = out["alloc_ns"] - out["hidden_ns"]
    return out


EXPOSURE_COLUMNS = ["model", "subgraph", "mode", "inferences", "allocs_per_inference", "bytes_per_inference",
                    "alloc_ns_per_inference", "hidden_ns_per_inference", "exposed_ns_per_inference"]


def exposed_per_inference(df: pd.DataFrame, allocs: pd.DataFrame | None = None,
                          infs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (model, subgraph, pre-alloc mode): allocation time per inference, hidden and exposed.

    The denominator is every included inference of that mode in which the subgraph ran, so an
    inference that allocated nothing (pre-allocated outputs reused) counts as zero.
    """
    allocs = alloc_overlap(df) if allocs is None else allocs
    infs = inferences(df) if infs is None else infs
    return exposure_finish([exposure_parts(df, allocs, infs)], has_gpu_times(df))


def exposure_parts(df: pd.DataFrame, allocs: pd.DataFrame, infs: pd.DataFrame) -> pd.DataFrame | None:
    """The sums `exposure_finish` divides, per (model, subgraph, mode): included inferences the
    subgraph ran in, and their allocations, bytes and times (hidden/exposed null where none is known).
    Per inference, so the chunks of a capture add up."""
    if infs.empty:
        return None
    ok = infs.loc[~infs["excluded"], KEY + ["mode"]]
    calls = df.loc[(df["event"] == "call") & (df["subgraph_kind"] == "engine") & (df["inference"] >= 0),
                   KEY + ["subgraph"]].drop_duplicates()
    ran = calls.merge(ok, on=KEY)
    denom = ran.groupby(["model", "subgraph", "mode"], sort=False, observed=True).size().rename("inferences")
    a = allocs[allocs["inference"] >= 0].merge(ok, on=KEY)
    a = a.assign(_n=1, bytes=a["bytes"].astype("Float64").fillna(0).astype(float))
    gb = a.groupby(["model", "subgraph", "mode"], sort=False, observed=True)
    num = gb.agg(allocs=("_n", "sum"), bytes=("bytes", "sum"), alloc_ns=("alloc_ns", "sum"))
    num["hidden_ns"] = gb["hidden_ns"].sum(min_count=1)
    num["exposed_ns"] = gb["exposed_ns"].sum(min_count=1)
    return denom.to_frame().join(num, how="left")


def exposure_finish(parts: list, gpu_known: bool) -> pd.DataFrame:
    """`exposed_per_inference` from the `exposure_parts` of a frame or of a capture's chunks."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return pd.DataFrame(columns=EXPOSURE_COLUMNS)
    out = parts[0] if len(parts) == 1 else pd.concat(parts).groupby(level=[0, 1, 2], sort=False).sum(min_count=1)
    n = out["inferences"].astype(float)
    for src, dst in [("allocs", "allocs_per_inference"), ("bytes", "bytes_per_inference"),
                     ("alloc_ns", "alloc_ns_per_inference"), ("hidden_ns", "hidden_ns_per_inference"),
                     ("exposed_ns", "exposed_ns_per_inference")]:
        v = out[src].astype(float)
        if src in ("hidden_ns", "exposed_ns") and not gpu_known:
            out[dst] = np.nan
        else:
            out[dst] = v.fillna(0.0) / n
    out = out.reset_index()[EXPOSURE_COLUMNS]
    return out.sort_values(["model", "subgraph", "mode"]).reset_index(drop=True)


def gpu_gaps(df: pd.DataFrame, infs: pd.DataFrame | None = None) -> pd.DataFrame:
    """GPU idle gaps between consecutive GPU intervals inside each inference, and the host meanwhile.

    Columns: pid, model, inference, mode, excluded, start_ns, end_ns, gap_ns, before, after (the
    subgraphs whose GPU work ends / starts the gap), and alloc_ns, fallback_ns, enqueue_ns, python_ns:
    how the gap splits by host activity (priority alloc > fallback > enqueue when they overlap;
    python = none of them recorded). The four always sum to gap_ns.
    """
    cols = KEY + ["mode", "excluded", "start_ns", "end_ns", "gap_ns", "before", "after"] + list(GAP_CATEGORIES)
    reads = KEY + ["event", "subgraph", "host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns",
                   "kernel_first_ns", "kernel_last_ns"]
    d = df.loc[(df["inference"] >= 0).to_numpy(bool), [c for c in reads if c in df]]  # only what is read
    g, gs, ge = gpu_windows(d)  # kernel spans where recorded: gaps between kernels of two subgraphs
    keep = ge > gs
    g, gs, ge = g[keep], gs[keep], ge[keep]
    if g.empty:
        return pd.DataFrame(columns=cols)
    keys = pd.MultiIndex.from_frame(g[KEY])
    codes, uniq = pd.factorize(keys)
    host = d[d["event"].isin(("alloc", "fallback", "exec"))]
    hcodes = uniq.get_indexer(pd.MultiIndex.from_frame(host[KEY]))
    hk = hcodes >= 0
    host, hcodes = host[hk], hcodes[hk]
    hs, he = host["host_start_ns"].to_numpy(np.int64), host["host_end_ns"].to_numpy(np.int64)
    pk = Packed(np.r_[codes, hcodes], np.r_[gs, hs], np.r_[ge, he])
    ps, pe = pk(codes, gs), pk(codes, ge)
    us, ue = union(ps, pe)
    if len(us) < 2:
        return pd.DataFrame(columns=cols)
    ucode = us // pk.span
    inner = np.flatnonzero(ucode[1:] == ucode[:-1])  # gap between merged interval i and i+1, same inference
    if not len(inner):
        return pd.DataFrame(columns=cols)
    g0, g1 = ue[inner], us[inner + 1]
    # which rows end before / start after each gap
    member = np.searchsorted(us, ps, side="right") - 1
    names = g["subgraph"].to_numpy(dtype=object)
    ender = _pick(member, pe, len(us), last=True)  # the row with the latest end in each merged interval
    starter = _pick(member, ps, len(us), last=False)  # the row with the earliest start
    out = pd.DataFrame({"_code": ucode[inner], "gap_ns": g1 - g0})
    out["before"] = names[ender[inner]]
    out["after"] = names[starter[inner + 1]]
    # the host during each gap, by activity with priority
    ev = host["event"].to_numpy(dtype=object)
    prev = np.zeros(len(inner), dtype=np.int64)
    hps, hpe = pk(hcodes, hs), pk(hcodes, he)
    for name, events in zip(GAP_CATEGORIES[:3], (("alloc",), ("alloc", "fallback"), ("alloc", "fallback", "exec"))):
        m = np.isin(ev, events)
        cs, ce = union(hps[m], hpe[m])
        cov = covered(cs, ce, g0, g1)
        out[name] = cov - prev
        prev = cov
    out["python_ns"] = out["gap_ns"] - prev
    c, start = pk.unpack(g0)
    out["start_ns"], out["end_ns"] = start, start + out["gap_ns"].to_numpy()
    key = uniq[out.pop("_code").to_numpy()].to_frame(index=False)
    key.columns = KEY
    out = pd.concat([key, out], axis=1)
    infs = inferences(df) if infs is None else infs
    out = out.merge(infs[KEY + ["mode", "excluded"]], on=KEY, how="left")
    out["mode"] = out["mode"].fillna("none")
    out["excluded"] = out["excluded"].fillna(False).astype(bool)
    return out[cols]


def _pick(group: np.ndarray, value: np.ndarray, n: int, last: bool) -> np.ndarray:
    """Per group 0..n-1, the row index with the largest (last=True) or smallest value; -1 if none."""
    order = np.lexsort((value, group))
    g = group[order]
    edge = np.r_[g[1:] != g[:-1], True] if last else np.r_[True, g[1:] != g[:-1]]
    out = np.full(n, -1, dtype=np.int64)
    out[g[edge]] = order[edge]
    return out


def reduce_gaps(gaps: pd.DataFrame) -> pd.DataFrame:
    """The included gaps summed per (model, mode, before, after), with their number `_n`: what
    `gap_summary` needs of them, as gap rows it reads again (a capture's chunks, concatenated)."""
    g = gaps[~gaps["excluded"].astype(bool)]
    if "_n" not in g:
        g = g.assign(_n=1)
    out = g.groupby(["model", "mode", "before", "after"], sort=False, observed=True).agg(
        _n=("_n", "sum"), gap_ns=("gap_ns", "sum"), **{c: (c, "sum") for c in GAP_CATEGORIES}).reset_index()
    return out.assign(excluded=False)


def gap_summary(gaps: pd.DataFrame, infs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, mode, before -> after): mean GPU idle time per inference, split by host activity.

    Means are over all included inferences of the mode (a gap that did not occur counts as zero).
    """
    cols = ["model", "mode", "before", "after", "occurrences", "inferences", "gap_ns_per_inference"] + \
        [c.replace("_ns", "_ns_per_inference") for c in GAP_CATEGORIES]
    if gaps.empty or infs.empty:
        return pd.DataFrame(columns=cols)
    # counted without a copy of the inference table (14 M rows in a 100 M-row capture: +800 MB)
    n = group_sizes(infs, ["model", "mode"], ~infs["excluded"].astype(bool).to_numpy()).rename(columns={"size": "inferences"})
    agg = reduce_gaps(gaps).rename(columns={"_n": "occurrences"})  # reduced gaps reduce again
    agg = agg.merge(n, on=["model", "mode"], how="left")
    for c in ["gap_ns", *GAP_CATEGORIES]:
        agg[c.replace("_ns", "_ns_per_inference")] = agg[c] / agg["inferences"]
    return agg[cols].sort_values(["model", "mode", "gap_ns_per_inference"], ascending=[True, True, False]) \
        .reset_index(drop=True)
