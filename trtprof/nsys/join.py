"""Join an Nsight Systems trace to trtprof's timeline: which NVTX range is which row, how nsys's clock
maps to the host clock, and the GPU work (kernels, copies) each row launched.

Why: trtprof times GPU work with CUDA events, which cost nothing to keep but measure the interval
between two points in a stream, idle time included; nsys sees every kernel. Putting both on one row
says how far the cheap measurement can be trusted, per subgraph.

How rows and ranges are paired: trtprof names its ranges "<subgraph> <event>[ (<alloc phase>)]" on the
thread that ran them, so on each (trtprof thread, nsys thread) pair the k-th row of a name is the k-th
range of that name. When nsys recorded fewer ranges than trtprof (`--capture-range=nvtx` starts late),
each name's ranges are a contiguous run of its rows, and the run is chosen whose timing agrees with the
rest. Threads are paired by how many rows line up. A pairing is kept only if the row's host end and the
range's end agree (trtprof reads the clock just before every pop), so a report of another run matches
nothing.

The clock: `host = nsys + offset + drift * (nsys - t_ref)`, fitted on the range starts of the events
whose host start is read right after the push (ALIGN_EVENTS; inference and fallback rows record a CUDA
event in between, so their host start lags the push). The offset reported is the median of those start
differences, as asked; the drift term matters only for long runs (CLOCK_MONOTONIC is NTP-slewed, nsys's
clock need not be).

GPU work of a row: the CUDA API calls that thread made inside the range, their correlationIds, and the
kernels / memcpys / memsets with those ids. Rows without a range of their own (the C++ runtime's call
and allocation rows: it pushes one `exec` range) use their host interval on the paired thread instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trtprof.errors import NsysError
from trtprof.nsys.reader import NsysTrace
from trtprof.nsys.store import COLUMNS, KERNEL_COLUMNS
from trtprof.timeline import schema
from trtprof.timeline.nvtx import range_names  # noqa: F401 - the rule the pairing uses

ALIGN_EVENTS = ("call", "alloc", "exec")
END_TOLERANCE_NS = 50_000  # a pairing whose end disagrees by more is not the same range
MAX_END_MAD_NS = 10_000  # same run: ends agree within ~0.2 us (MAD, H100 data); another run: tens of us
MIN_RANGE_SHARE = 0.5  # at least this share of the report's trtprof ranges must pair
_SAMPLE = 64  # ranges per name used to choose among candidate runs


@dataclass
class Clock:
    """nsys session ns -> host CLOCK_MONOTONIC ns."""

    offset_ns: float
    t_ref: float = 0.0
    drift: float = 0.0

    def to_host(self, t):
        return np.rint(np.asarray(t, dtype="float64") + self.offset_ns + self.drift * (np.asarray(t, dtype="float64") - self.t_ref))


@dataclass
class Join:
    """Result of `join`: the per-row columns (one row per timeline row, keyed by seq) and a summary."""

    rows: pd.DataFrame
    summary: dict
    clock: Clock
    notes: list[str] = field(default_factory=list)
    kernels: pd.DataFrame | None = None  # each kernel and copy an engine or fallback row launched (KERNEL_COLUMNS)


# -- pairing rows with ranges ----------------------------------------------------------------------------
def _runs(a: int, b: int):
    """Candidate alignments of a rows and b ranges of one name: (row offset, range offset, length)."""
    n = min(a, b)
    return [(s, 0, n) for s in range(a - n + 1)] if a >= b else [(0, s, n) for s in range(b - n + 1)]


def _pair_thread(t: pd.DataFrame, r: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in t, in r) of paired rows and ranges of one thread pair. t: name, host_start_ns,
    host_end_ns, sorted by host start; r: name, start, end, sorted by start."""
    tn, rn = t["name"].to_numpy(), r["name"].to_numpy()
    te, re_ = t["host_end_ns"].to_numpy("int64"), r["end"].to_numpy("int64")
    names = sorted(set(tn) & set(rn))
    pos_t = {n: np.flatnonzero(tn == n) for n in names}
    pos_r = {n: np.flatnonzero(rn == n) for n in names}

    def end_diffs(n, run, sample=True):
        s0, s1, k = run
        i, j = pos_t[n][s0:s0 + k], pos_r[n][s1:s1 + k]
        if sample and k > _SAMPLE:
            pick = np.linspace(0, k - 1, _SAMPLE).astype(int)
            i, j = i[pick], j[pick]
        return te[i] - re_[j]

    runs = {n: _runs(len(pos_t[n]), len(pos_r[n])) for n in names}
    fixed = {n: r[0] for n, r in runs.items() if len(r) == 1}
    if fixed:
        ref = float(np.median(np.concatenate([end_diffs(n, run) for n, run in fixed.items()])))
    else:  # every name truncated: trust the name whose best run is tightest
        best = None
        for n in names:
            for run in runs[n]:
                d = end_diffs(n, run)
                mad = float(np.median(np.abs(d - np.median(d))))
                if best is None or mad < best[0]:
                    best = (mad, float(np.median(d)))
        ref = best[1] if best else 0.0
    ti, ri = [], []
    for n in names:
        run = fixed.get(n) or min(runs[n], key=lambda run: abs(float(np.median(end_diffs(n, run))) - ref))
        s0, s1, k = run
        ti.append(pos_t[n][s0:s0 + k])
        ri.append(pos_r[n][s1:s1 + k])
    if not ti:
        return np.empty(0, int), np.empty(0, int)
    ti, ri = np.concatenate(ti), np.concatenate(ri)
    d = te[ti] - re_[ri]
    keep = np.abs(d - np.median(d)) <= END_TOLERANCE_NS if len(d) else np.ones(0, bool)
    return ti[keep], ri[keep]


def _spread(d: np.ndarray) -> dict:
    if not len(d):
        return {}
    med = float(np.median(d))
    dev = np.abs(d - med)
    return {"median_ns": med, "mad_ns": float(np.median(dev)), "p99_ns": float(np.percentile(dev, 99)),
            "max_ns": float(dev.max()), "n": int(len(d))}


def _fit_clock(ns: np.ndarray, host: np.ndarray) -> Clock:
    """Offset (median) plus a drift fitted by least squares after dropping outliers; drift only
    when the points span at least a second (below that, sub-microsecond jitter makes it noise)."""
    d = host.astype("float64") - ns.astype("float64")
    off = float(np.median(d))
    t_ref = float(np.median(ns))
    if len(ns) < 10 or float(ns.max() - ns.min()) < 1e9:
        return Clock(off, t_ref, 0.0)
    mad = float(np.median(np.abs(d - off))) or 1.0
    ok = np.abs(d - off) <= 5 * mad + 1000
    x, y = ns[ok].astype("float64") - t_ref, d[ok]
    slope = float(np.polyfit(x, y, 1)[0]) if len(x) >= 10 and np.ptp(x) > 0 else 0.0
    resid = d - slope * (ns.astype("float64") - t_ref)
    return Clock(float(np.median(resid)), t_ref, slope)


# -- GPU work of each range ------------------------------------------------------------------------------
def _gpu_work(trace: NsysTrace, gtid: np.ndarray, lo: np.ndarray, hi: np.ndarray, clock: Clock,
              seq: np.ndarray, own: np.ndarray) -> tuple[dict, pd.DataFrame]:
    """Aggregates of the GPU activities launched by API calls on thread `gtid` starting in [lo, hi],
    and each activity launched inside a row where `own` holds (an engine's or a fallback's), with the
    `seq` of that row and its times on the host clock (`KERNEL_COLUMNS`)."""
    n = len(gtid)
    out = {c: np.full(n, np.nan) for c in ("nsys_kernel_count", "nsys_kernel_ns", "nsys_copy_count", "nsys_copy_ns",
                                          "nsys_gpu_start_ns", "nsys_gpu_end_ns", "nsys_busy_ns")}
    rt = trace.runtime
    if not n or rt.empty:
        return out, pd.DataFrame(columns=KERNEL_COLUMNS)
    rt = rt.reset_index(drop=True)  # sorted by (gtid, start) by the reader
    keys = rt[["pid", "correlation"]].assign(api=np.arange(len(rt))).drop_duplicates(["pid", "correlation"])
    act = trace.activity.merge(keys, on=["pid", "correlation"], how="inner").sort_values(["api", "start"], kind="stable")
    api_pos = act["api"].to_numpy("int64")
    a_start, a_end = act["start"].to_numpy("int64"), act["end"].to_numpy("int64")
    kern = (act["kind"] == "kernel").to_numpy()
    dur = a_end - a_start
    cum = lambda v: np.concatenate([[0], np.cumsum(v)])  # noqa: E731
    ck, ckn, cc, ccn = cum(kern), cum(dur * kern), cum(~kern), cum(dur * ~kern)
    r_g, r_s = rt["gtid"].to_numpy("int64"), rt["start"].to_numpy("int64")
    bounds = {g: (np.searchsorted(r_g, g, "left"), np.searchsorted(r_g, g, "right")) for g in np.unique(gtid)}
    owner = np.full(len(act), -1, dtype="int64")
    for i in range(n):
        g0, g1 = bounds[gtid[i]]
        s = r_s[g0:g1]
        p0 = g0 + np.searchsorted(s, lo[i], "left")
        p1 = g0 + np.searchsorted(s, hi[i], "right")
        a0, a1 = np.searchsorted(api_pos, p0, "left"), np.searchsorted(api_pos, p1, "left")
        out["nsys_kernel_count"][i] = ck[a1] - ck[a0]
        out["nsys_kernel_ns"][i] = ckn[a1] - ckn[a0]
        out["nsys_copy_count"][i] = cc[a1] - cc[a0]
        out["nsys_copy_ns"][i] = ccn[a1] - ccn[a0]
        if own[i]:
            owner[a0:a1] = seq[i]
        if a1 > a0:
            st, en = a_start[a0:a1], a_end[a0:a1]
            order = np.argsort(st, kind="stable")
            st, en = st[order], en[order]
            reach = np.maximum.accumulate(en)
            prev = np.concatenate([[st[0]], reach[:-1]])
            out["nsys_busy_ns"][i] = float(np.sum(np.clip(en - np.maximum(st, prev), 0, None)))
            out["nsys_gpu_start_ns"][i] = clock.to_host(st[0])
            out["nsys_gpu_end_ns"][i] = clock.to_host(reach[-1])
    k = act[owner >= 0]
    kernels = pd.DataFrame({"kind": k["kind"].astype(object).to_numpy(), "name": k["name"].to_numpy(object),
                            "start_ns": np.rint(clock.to_host(k["start"].to_numpy("int64"))).astype("int64"),
                            "end_ns": np.rint(clock.to_host(k["end"].to_numpy("int64"))).astype("int64"),
                            "stream": k["stream"].to_numpy("int64"), "seq": owner[owner >= 0]})
    return out, kernels.sort_values("start_ns", kind="stable").reset_index(drop=True)[KERNEL_COLUMNS]


# -- the join ----------------------------------------------------------------------------------------------
def _candidates(trace: NsysTrace, capture_pid) -> list[int]:
    pids = sorted(trace.ranges["pid"].unique().tolist())
    if capture_pid in pids:
        return [capture_pid]
    return pids


def _pair_process(df: pd.DataFrame, ranges: pd.DataFrame):
    """Pair threads and rows for one process: list of (thread, gtid, row index array, range index array)."""
    pairs = []
    threads = {t: g.sort_values(["host_start_ns", "seq"], kind="stable") for t, g in df.groupby("thread", sort=True)}
    gts = {g: r.sort_values("start", kind="stable") for g, r in ranges.groupby("gtid", sort=True)}
    for t, tg in threads.items():
        for g, rg in gts.items():
            ti, ri = _pair_thread(tg, rg)
            if len(ti):
                pairs.append((len(ti), t, g, tg.index.to_numpy()[ti], rg.index.to_numpy()[ri]))
    chosen, used_t, used_g = [], set(), set()
    for n, t, g, ti, ri in sorted(pairs, key=lambda p: -p[0]):
        if t not in used_t and g not in used_g:
            chosen.append((t, g, ti, ri))
            used_t.add(t)
            used_g.add(g)
    return chosen


def join(df: pd.DataFrame, trace: NsysTrace, meta: dict | None = None) -> Join:
    """Pair the timeline `df` with `trace` (`meta`: the capture's metadata: its pid picks the process,
    its clock anchor gives an independent check of the offset); NsysError when nothing pairs."""
    meta = meta or {}
    capture_pid = meta.get("pid")
    if df.empty:
        raise NsysError("the capture has no rows to join")
    df = df.reset_index(drop=True).assign(name=range_names(df))
    best = None
    for pid in _candidates(trace, capture_pid):
        chosen = _pair_process(df, trace.ranges[trace.ranges["pid"] == pid])
        n = sum(len(c[2]) for c in chosen)
        if best is None or n > best[0]:
            best = (n, pid, chosen)
    if best is None or best[0] == 0:
        raise NsysError(f"no trtprof range of this capture lines up with {trace.path.name}: "
                        "is the report of the same run?")
    _, pid, chosen = best
    ti = np.concatenate([c[2] for c in chosen])
    ri = np.concatenate([c[3] for c in chosen])
    rows, rng = df.loc[ti], trace.ranges.loc[ri]
    _check_same_run(trace, pid, rows, rng)
    ev = rows["event"].to_numpy()
    hs, rs = rows["host_start_ns"].to_numpy("int64"), rng["start"].to_numpy("int64")
    align = np.isin(ev, ALIGN_EVENTS)
    if not align.any():
        align = np.ones(len(ev), bool)
    clock = _fit_clock(rs[align], hs[align])
    start_d = hs - clock.to_host(rs)
    end_d = rows["host_end_ns"].to_numpy("int64") - clock.to_host(rng["end"].to_numpy("int64"))

    out = pd.DataFrame({"seq": df["seq"].to_numpy("int64")}, index=df.index)
    for c in COLUMNS:
        if c != "seq":
            out[c] = pd.NA
    out.loc[ti, "nsys_match"] = "nvtx"
    out.loc[ti, "nsys_range_start_ns"] = clock.to_host(rs)
    out.loc[ti, "nsys_range_end_ns"] = clock.to_host(rng["end"].to_numpy("int64"))
    gtid = rng["gtid"].to_numpy("int64")
    lo, hi = rs, rng["end"].to_numpy("int64")

    # rows whose name has no range on the paired thread: their host interval, where nsys was recording
    win_idx, win_g = [], []
    thread_of = {t: g for t, g, _, _ in chosen}
    rt = trace.runtime[trace.runtime["pid"] == pid]
    for t, g in thread_of.items():
        names = set(trace.ranges.loc[trace.ranges["gtid"] == g, "name"])
        cover = pd.concat([trace.ranges.loc[trace.ranges["gtid"] == g, ["start", "end"]],
                           rt.loc[rt["gtid"] == g, ["start", "end"]]])
        lo_c, hi_c = clock.to_host(cover["start"].min()), clock.to_host(cover["end"].max())
        cand = df[(df["thread"] == t) & ~df["name"].isin(names) & (df["host_start_ns"] >= lo_c)
                  & (df["host_end_ns"] <= hi_c)]
        win_idx.append(cand.index.to_numpy())
        win_g.append(np.full(len(cand), g, dtype="int64"))
    win_idx = np.concatenate(win_idx) if win_idx else np.empty(0, int)
    if len(win_idx):
        w = df.loc[win_idx]
        inv = lambda h: np.rint((np.asarray(h, "float64") - clock.offset_ns + clock.drift * clock.t_ref)  # noqa: E731
                                / (1 + clock.drift)).astype("int64")
        out.loc[win_idx, "nsys_match"] = "window"
        out.loc[win_idx, "nsys_range_start_ns"] = w["host_start_ns"].to_numpy("int64")
        out.loc[win_idx, "nsys_range_end_ns"] = w["host_end_ns"].to_numpy("int64")
        gtid = np.concatenate([gtid, np.concatenate(win_g)])
        lo = np.concatenate([lo, inv(w["host_start_ns"])])
        hi = np.concatenate([hi, inv(w["host_end_ns"])])
    all_idx = np.concatenate([ti, win_idx])
    own = df.loc[all_idx, "event"].isin(["exec", "fallback"]).to_numpy(bool)
    work, kernels = _gpu_work(trace, gtid, lo, hi, clock, df.loc[all_idx, "seq"].to_numpy("int64"), own)
    for c, v in work.items():
        out.loc[all_idx, c] = v
    for c in COLUMNS:
        if c not in ("seq", "nsys_match"):
            out[c] = pd.array(pd.to_numeric(out[c]).round(), dtype="Int64")
    out["nsys_match"] = out["nsys_match"].astype("string")
    out = out.sort_values("seq").reset_index(drop=True)
    summary = _summary(df, trace, pid, capture_pid, chosen, rows, clock, start_d, end_d, align, out)
    summary["clock"]["utc_check_us"] = check = _utc_check(trace, meta, clock)
    if check is not None and abs(check) > MAX_UTC_DISAGREEMENT_US:
        raise NsysError(f"the clock fit to {trace.path.name} is implausible: it puts the report "
                        f"{check / 1e6:+.3f} s away from where the two wall clocks put it (nsys session start, "
                        "the capture's clock anchor; they agree within microseconds on a real run): "
                        "is the report of the same run, or were its times altered?")
    return Join(out, summary, clock, list(trace.notes), kernels)


# The fitted offset against the one implied by the wall clocks: a few microseconds on real runs
# (reports/bench/nsys_accuracy.json); a second is far beyond any clock step NTP makes in a run.
MAX_UTC_DISAGREEMENT_US = 1_000_000.0


def _utc_check(trace: NsysTrace, meta: dict, clock: Clock) -> float | None:
    """Fitted offset minus the one implied by the two wall clocks (nsys's session start in UTC,
    trtprof's perf_counter/time_ns anchor): an independent check, None when either is missing."""
    a = meta.get("clock_anchor")
    if trace.session_start_utc_ns is None or not isinstance(a, dict):
        return None
    try:
        implied = trace.session_start_utc_ns - int(a["time_ns"]) + int(a["perf_counter_ns"])
    except (KeyError, TypeError, ValueError):
        return None
    return float(clock.to_host(0) - implied) / 1e3


def _check_same_run(trace: NsysTrace, pid: int, rows: pd.DataFrame, rng: pd.DataFrame) -> None:
    """Refuse a report whose ranges only pair by name: another run of the same script."""
    d = rows["host_end_ns"].to_numpy("int64") - rng["end"].to_numpy("int64")
    mad = float(np.median(np.abs(d - np.median(d))))
    total = int((trace.ranges["pid"] == pid).sum())
    if mad > MAX_END_MAD_NS or len(rng) < MIN_RANGE_SHARE * total:
        raise NsysError(f"the trtprof ranges of {trace.path.name} do not line up in time with this capture "
                        f"({len(rng)} of {total} paired, end differences spread {mad / 1e3:.1f} us): "
                        "is the report of the same run?")


def _summary(df, trace, pid, capture_pid, chosen, rows, clock, start_d, end_d, align, out) -> dict:
    ev = rows["event"].to_numpy()
    matched = out["nsys_match"].fillna("none")
    by_event = pd.crosstab(df["event"].to_numpy(), matched.to_numpy()).to_dict(orient="index")
    ranges = trace.ranges[trace.ranges["pid"] == pid]
    lag = {e: float(np.median(start_d[ev == e])) for e in sorted(set(ev))}
    span_s = float(np.ptp(rows["host_start_ns"].to_numpy("int64"))) / 1e9 if len(rows) else 0.0
    return {
        "report": str(trace.path), "nsys_pid": int(pid), "capture_pid": capture_pid,
        "threads": [{"thread": int(t), "nsys_tid": int(g) & 0xFFFFFF, "rows": int(len(ti))} for t, g, ti, _ in chosen],
        "rows": int(len(df)), "nsys_ranges": int(len(ranges)),
        "matched_nvtx": int((matched == "nvtx").sum()), "matched_window": int((matched == "window").sum()),
        "unmatched": int((matched == "none").sum()),
        "nsys_ranges_unmatched": int(len(ranges) - (matched == "nvtx").sum()),
        "by_event": {e: {k: int(v) for k, v in d.items()} for e, d in by_event.items()},
        "clock": {"offset_ns": clock.offset_ns, "t_ref_ns": clock.t_ref, "drift_ppm": clock.drift * 1e6,
                  "span_s": span_s, "align_events": list(ALIGN_EVENTS)},
        "start_spread": _spread(start_d[align]), "end_spread": _spread(end_d),
        "start_lag_by_event_ns": lag,
        "notes": list(trace.notes),
    }


# -- comparison: CUDA events vs nsys kernels ---------------------------------------------------------------------
COMPARE_COLUMNS = ["model", "subgraph", "kind", "event", "calls", "event_us", "span_us", "busy_us", "kernel_us",
                   "kernels", "diff_busy_pct", "diff_span_pct", "lead_us", "tail_us"]


def compare(df: pd.DataFrame, cols: pd.DataFrame) -> pd.DataFrame:
    """Per subgraph: CUDA-event GPU time against nsys's view of the same calls (medians per call).

    The row measured is the one `schema.timed_rows` picks: exec for engines, fallback for
    fallbacks, inference for the model; rows marked `exclude`, without GPU events or without nsys
    data are left out. event_us = CUDA event end - start; span_us = last kernel end - first kernel
    start; busy_us = union of kernel/copy intervals; diff_*_pct = (event - nsys) / nsys; lead_us =
    first kernel start - start event (GPU time before the first kernel), tail_us = end event - last
    kernel end.
    """
    m = schema.timed_rows(df).merge(cols, on="seq", how="inner")
    m = m[m["gpu_start_ns"].notna() & m["gpu_end_ns"].notna() & m["nsys_gpu_start_ns"].notna()]
    if m.empty:
        return pd.DataFrame(columns=COMPARE_COLUMNS)
    f = lambda s: s.astype("float64")  # noqa: E731
    m = m.assign(_ev=f(m["gpu_end_ns"] - m["gpu_start_ns"]), _span=f(m["nsys_gpu_end_ns"] - m["nsys_gpu_start_ns"]),
                 _busy=f(m["nsys_busy_ns"]), _kern=f(m["nsys_kernel_ns"]), _n=f(m["nsys_kernel_count"]),
                 _lead=f(m["nsys_gpu_start_ns"] - m["gpu_start_ns"]), _tail=f(m["gpu_end_ns"] - m["nsys_gpu_end_ns"]))
    out = []
    for (model, sub), g in m.groupby(["model", "subgraph"], sort=False):
        ev, span, busy = g["_ev"].median(), g["_span"].median(), g["_busy"].median()
        out.append({"model": model, "subgraph": sub, "kind": g["subgraph_kind"].iloc[0], "event": g["event"].iloc[0],
                    "calls": len(g), "event_us": ev / 1e3, "span_us": span / 1e3, "busy_us": busy / 1e3,
                    "kernel_us": g["_kern"].median() / 1e3, "kernels": g["_n"].median(),
                    "diff_busy_pct": (ev - busy) / busy * 100 if busy else float("nan"),
                    "diff_span_pct": (ev - span) / span * 100 if span else float("nan"),
                    "lead_us": g["_lead"].median() / 1e3, "tail_us": g["_tail"].median() / 1e3})
    res = pd.DataFrame(out, columns=COMPARE_COLUMNS)
    order = res["kind"].map({"model": 0}).fillna(1)
    num = res["subgraph"].str.extract(r"_(\d+)$", expand=False).astype(float)
    return res.assign(_o=order, _n=num).sort_values(["model", "_o", "_n", "subgraph"]).drop(columns=["_o", "_n"]).reset_index(drop=True)
