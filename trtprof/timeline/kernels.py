"""Kernels per row: which kernels each row launched or ran, and how busy the GPU was there.

Why not CUPTI's API records: correlating through RUNTIME/DRIVER records doubled latency on the H200.
A kernel's launch time (`queued_ns`) lies inside the host window of the call that launched it, so
that is the first rule (`attribute_timeline`); the rows' CUDA-event windows serve records without
one (there, 528 of 528 BERT calls got all their kernels by "kernel start inside [event start, event
end] on the host clock"). Pure numpy/pandas: it runs at import of a capture as well as at its end.

Edge policy of `attribute` (kernels and windows on trtprof's host clock, streams as CUPTI stream ids,
-1 or null for a window whose stream is unknown):

1. By stream. A kernel belongs to the window on its own stream that contains its START:
   window start <= kernel start <= window end, both edges inclusive; where two windows of a stream
   touch, the later one takes the kernel. A kernel that starts inside a window and ends after it still
   belongs to it: its end lengthens that row's kernel_last_ns (and busy) past the window end, which is
   how a late tail shows instead of vanishing. Windows of one stream must not overlap (engine and
   fallback rows never do); overlapping ones are a ValueError, so pass inference rows, which contain
   their subgraph rows, in a separate call.
2. By time, "window on any stream" (by_time=True). A kernel on a stream that carries no window at
   all belongs to the one window, of any stream, that contains its start. This is the C++ runtime of
   Torch-TensorRT 2.11: the engine runs on its own pool stream while trtprof's events sit on the
   caller stream. If windows of several streams contain the start, the kernel is ambiguous and stays
   unattributed.
3. Everything else is unattributed and counted: kernels between the windows of their own stream
   (the caller's own work between calls), foreign-stream kernels outside every window, ambiguous ones.

Per row: kernel_count, kernel_first_ns (first kernel start), kernel_last_ns (last kernel end),
kernel_busy_ns (length of the union of the row's kernel intervals: what the GPU was doing, where
last - first is the span and the window the event bracket); memcpy/memset records are kept apart as
copy_count and copy_ns (union length of the row's copy intervals), so kernel figures stay kernels.
Rows whose window is missing get nulls; a valid window without kernels gets 0 (watched, none ran).
With launch times a row's host window counts as its window for the kernel columns (a row without
events, e.g. at the minimal level, then gets the kernels it launched); the copy columns need a GPU
window, since copies carry no launch time. Attribute only the windows of rows recorded while kernel
activity was on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtprof import _files
from trtprof.timeline.schema import parquet_options

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FILE = "kernels.parquet"
ROW_COLUMNS = ("kernel_count", "kernel_first_ns", "kernel_last_ns", "kernel_busy_ns", "copy_count", "copy_ns")


def _ints(obj, *names, fill=-1):
    """(int64 values, valid mask) of the first column of `obj` found among `names`."""
    for n in names:
        if n in obj:
            s = pd.Series(obj[n])
            ok = s.notna().to_numpy()
            return s.where(ok, fill).astype(np.int64).to_numpy(), ok
    raise ValueError(f"missing column {names[0]!r}")


def busy(starts, ends) -> int:
    """Length of the union of intervals [start, end): sort by start, and each interval adds what
    sticks out past the largest end before it."""
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    if s.size == 0:
        return 0
    o = np.argsort(s, kind="stable")
    s, e = s[o], e[o]
    prev = np.concatenate(([s[0]], np.maximum.accumulate(e)[:-1]))
    return int(np.clip(e - np.maximum(s, prev), 0, None).sum())


@dataclass
class Attribution:
    index: np.ndarray   # per kernel record: position of its window in `windows`, -1 when none
    how: np.ndarray     # per kernel record: 0 unattributed, 1 by stream, 2 by time
    seq: pd.array       # per kernel record: its window's seq (nullable), for kernels.parquet
    rows: pd.DataFrame  # per window, in the order given: seq and ROW_COLUMNS
    counts: dict        # records: total, by_stream, by_time, between, outside, ambiguous
    ambiguous: np.ndarray | None = None  # per kernel record: inside several windows of different streams


def attribute(kernels, windows, *, by_time: bool = True, at: str = "start_ns", summary: bool = True) -> Attribution:
    """Give each kernel record (start_ns, end_ns, stream[, kind]) to a window (seq, stream,
    start_ns/gpu_start_ns, end_ns/gpu_end_ns) by the module's edge policy; vectorised per stream.
    `at`: the record's time that must lie in the window (its start; `queued_ns` for host windows).
    `summary=False` leaves `rows` and `seq` empty (a caller that merges several passes summarises once)."""
    ks, _ = _ints(kernels, "start_ns")
    ke, _ = _ints(kernels, "end_ns")
    kt = _ints(kernels, at)[0] if at != "start_ns" else ks
    kst, _ = _ints(kernels, "stream")
    ws, okw = _ints(windows, "start_ns", "gpu_start_ns")
    we, oke = _ints(windows, "end_ns", "gpu_end_ns")
    wst, oks = _ints(windows, "stream")
    seq = _ints(windows, "seq")[0] if "seq" in windows else np.arange(len(ws))
    valid = okw & oke & (we >= ws)
    wst = np.where(oks, wst, -1)
    n, m = len(ks), len(ws)
    index = np.full(n, -1, dtype=np.int64)
    how = np.zeros(n, dtype=np.int8)

    known = np.unique(wst[valid & (wst >= 0)])
    for s in known:
        w = np.flatnonzero(valid & (wst == s))
        w = w[np.argsort(ws[w], kind="stable")]
        st, en = ws[w], we[w]
        if np.any(st[1:] < en[:-1]):
            i = int(np.flatnonzero(st[1:] < en[:-1])[0])
            raise ValueError(f"windows overlap on stream {s}: seq {seq[w[i]]} and {seq[w[i + 1]]}; "
                             "attribute inference rows apart from their subgraph rows")
        kk = np.flatnonzero(kst == s)
        j = np.searchsorted(st, kt[kk], side="right") - 1
        hit = (j >= 0) & (kt[kk] <= en[np.maximum(j, 0)])
        index[kk[hit]], how[kk[hit]] = w[j[hit]], 1

    foreign = ~np.isin(kst, known)
    ambiguous = np.zeros(n, dtype=bool)
    w = np.flatnonzero(valid)
    if by_time and w.size and foreign.any():
        w = w[np.argsort(ws[w], kind="stable")]
        st, en = ws[w], we[w]
        kk = np.flatnonzero(foreign)
        t = kt[kk]
        after = np.searchsorted(st, t, side="right")            # windows starting at or before t
        inside = after - np.searchsorted(np.sort(en), t, side="left")   # ... minus those ended before t
        # with exactly one window containing t, it is the one with the largest end among those
        # starting at or before t: a running argmax of the ends finds it
        cm = np.maximum.accumulate(en)
        arg = np.maximum.accumulate(np.where(en >= cm, np.arange(en.size), 0))
        one = inside == 1
        index[kk[one]], how[kk[one]] = w[arg[after[one] - 1]], 2
        ambiguous[kk[inside > 1]] = True

    rows, kseq = summarise(kernels, index, seq, valid) if summary else (pd.DataFrame(), pd.array([], dtype="Int64"))
    none = index < 0
    counts = {"total": n, "by_stream": int((how == 1).sum()), "by_time": int((how == 2).sum()),
              "between": int((none & ~foreign).sum()), "ambiguous": int(ambiguous.sum()),
              "outside": int((none & foreign & ~ambiguous).sum())}
    return Attribution(index, how, kseq, rows, counts, ambiguous)


def summarise(kernels, index, seq, valid, copy_valid=None) -> tuple[pd.DataFrame, pd.array]:
    """(per window: seq and ROW_COLUMNS; per record: its window's seq, nullable) from each record's
    window position `index` (-1: none). Windows not `valid` get nulls, valid ones without kernels 0;
    the copy columns follow `copy_valid` where given (copies are placed by GPU window only)."""
    ks, _ = _ints(kernels, "start_ns")
    ke, _ = _ints(kernels, "end_ns")
    n, m = len(ks), len(seq)
    kind = np.asarray(kernels["kind"], dtype=object) if "kind" in kernels else None
    is_kernel = np.ones(n, dtype=bool) if kind is None else (kind == "kernel")
    kc, kf, kl, kb = _per_row(index[is_kernel], ks[is_kernel], ke[is_kernel], m)
    cc, _, _, cb = _per_row(index[~is_kernel], ks[~is_kernel], ke[~is_kernel], m)
    none_in = ~valid | (kc == 0)
    cv = valid if copy_valid is None else copy_valid
    rows = pd.DataFrame({"seq": seq})
    for name, col, na in zip(ROW_COLUMNS, (kc, kf, kl, kb, cc, cb),
                             (~valid, none_in, none_in, ~valid, ~cv, ~cv)):
        rows[name] = pd.arrays.IntegerArray(col, na)
    none = index < 0
    kseq = pd.array(np.where(none, 0, seq[np.maximum(index, 0)]) if m else np.zeros(n, np.int64),
                    dtype="Int64")
    kseq[none] = pd.NA
    return rows, kseq


def _per_row(g, s, e, m):
    """(count, first start, last end, busy) per window 0..m-1 of records given to window g (-1: none)."""
    keep = g >= 0
    g, s, e = g[keep], s[keep], e[keep]
    count = np.bincount(g, minlength=m).astype(np.int64)
    first = np.zeros(m, dtype=np.int64)
    last = np.zeros(m, dtype=np.int64)
    if g.size == 0:
        return count, first, last, np.zeros(m, dtype=np.int64)
    o = np.lexsort((s, g))
    g, s, e = g[o], s[o], e[o]
    head = np.concatenate(([True], g[1:] != g[:-1]))
    tail = np.concatenate((head[1:], [True]))
    cm = pd.Series(e).groupby(g).cummax().to_numpy()   # running max of ends within each row
    prev = np.where(head, s, np.concatenate(([0], cm[:-1])))
    add = np.clip(e - np.maximum(s, prev), 0, None)
    first[g[head]] = s[head]
    last[g[tail]] = cm[tail]
    total = np.bincount(g, weights=add, minlength=m)  # float64: exact below 2**53 ns per row
    return count, first, last, np.rint(total).astype(np.int64)


KERNEL_COLUMNS = {
    "name": (pa.string(), "kernel name as CUPTI gives it (mangled C++); null for memcpy and memset"),
    "kind": (pa.dictionary(pa.int8(), pa.string()), "kernel, memcpy or memset"),
    "start_ns": (pa.int64(), "GPU start, ns on trtprof's host clock (CUPTI's clock + measured offset)"),
    "end_ns": (pa.int64(), "GPU end, ns on trtprof's host clock"),
    "stream": (pa.int64(), "CUPTI stream id (not the cudaStream_t handle; KernelActivity.stream_id maps it)"),
    "device": (pa.int64(), "CUDA device id"),
    "correlation": (pa.int64(), "CUPTI correlation id of the launching API call"),
    "queued_ns": (pa.int64(), "when the launch was queued (CUPTI latency timestamp), ns on trtprof's host clock; "
                              "null where CUPTI gave none (memcpy, older captures). Not moved by the "
                              "calibration that moves start/end (`calibrate`): start - queued includes it"),
    "seq": (pa.int64(), "seq of the timeline row the record was attributed to; null when none"),
}
SCHEMA = pa.schema([(n, t) for n, (t, _) in KERNEL_COLUMNS.items()])
ADDED = ("queued_ns",)  # columns later than the first kernels.parquet: null when a file lacks them


def to_table(records, seq=None) -> pa.Table:
    """KernelActivity.flush() output (or a DataFrame of KERNEL_COLUMNS) -> an Arrow table; `seq`,
    e.g. Attribution.seq, overrides the records' own (nullable, -1 or NA for none)."""
    n = len(records["start_ns"])
    cols = {}
    for name, (typ, _) in KERNEL_COLUMNS.items():
        v = seq if name == "seq" and seq is not None else (records[name] if name in records else None)
        if v is None:
            cols[name] = pa.nulls(n, typ)
        elif name == "kind":
            cols[name] = pa.array(np.asarray(v, dtype=object).tolist(), pa.string()).dictionary_encode() \
                .cast(typ)
        elif name == "name":
            cols[name] = pa.array(pd.Series(v, dtype=object).where(pd.notna(v), None).tolist(), typ)
        else:
            s = pd.Series(v)
            s = s.astype("Int64")
            if name == "seq":  # -1: no row
                s = s.mask(s < 0)
            elif name == "queued_ns":  # 0 (CUPTI_TIMESTAMP_UNKNOWN) or -1: no launch time
                s = s.mask(s <= 0)
            cols[name] = pa.array(s, typ, from_pandas=True)
    return pa.table(cols, schema=SCHEMA)


def write(folder, records, seq=None) -> Path:
    """kernels.parquet in a capture folder (an exclusive temporary, then renamed: never half a file)."""
    path = Path(folder) / FILE
    with _files.atomic_path(path) as tmp:  # an exclusive random temporary: never through a planted link
        table = to_table(records, seq)
        pq.write_table(table, tmp, **parquet_options(table.schema))
    return path


CALIBRATION_SLACK_NS = 10_000_000  # how far CUPTI's times may be off and the kernels still be found
EVENT_RESOLUTION_NS = 1_000  # CUDA event times: about half a microsecond each (cudaEventElapsedTime)


def calibrate(k: dict, cal: dict | None) -> tuple[dict, dict | None]:
    """The kernel records with CUPTI's times mapped onto the events' (`capture/calibrate.py`): each
    calibration kernel ran between its two events, so the offset lies in [max(event before - kernel
    start), min(event after - kernel end)] over the rounds. The least offset in those bounds (0 when
    they hold it: CUPTI's conversion is kept unless the kernels show it wrong, as the clock's fresh
    anchors keep the old conversion) is added to every record's times, and the calibration kernels
    (trtprof's own) are left out. (records, what was found for
    meta.json); the records unchanged when the calibration is missing, its kernels are not all found,
    or the bounds do not meet (then the reason is said)."""
    if not cal or "pairs" not in cal:
        return k, ({"reason": cal["error"]} if cal and "error" in cal else None)
    pairs = np.asarray(cal["pairs"], dtype=np.int64).reshape(-1, 2)
    lo_t, hi_t = cal["host_ns"]
    start, end = np.asarray(k["start_ns"], np.int64), np.asarray(k["end_ns"], np.int64)
    names = pd.Series(k["name"], dtype=object).fillna("").str.lower()
    mine = names.str.contains(cal.get("kernel", "spin_kernel"), regex=False).to_numpy(bool) \
        & (start >= lo_t - CALIBRATION_SLACK_NS) & (end <= hi_t + CALIBRATION_SLACK_NS)
    if "kind" in k:
        mine &= pd.Series(k["kind"], dtype=object).eq("kernel").to_numpy(bool)
    found = np.flatnonzero(mine)
    if len(found) != len(pairs):
        return k, {"reason": f"{len(found)} calibration kernels found of {len(pairs)}: CUPTI's times kept as they are"}
    order = found[np.argsort(start[found], kind="stable")]
    lo = int((pairs[:, 0] - start[order]).max())
    hi = int((pairs[:, 1] - end[order]).min())
    if lo > hi + EVENT_RESOLUTION_NS:
        return k, {"reason": f"the calibration kernels do not fit between their events (bounds {lo} > {hi} ns): "
                             "CUPTI's times kept as they are"}
    # bounds crossed by no more than the events' resolution (back-to-back work): where they cross
    offset = min(max(0, lo), hi) if lo <= hi else (lo + hi) // 2
    keep = ~mine
    out = {c: np.asarray(v)[keep] for c, v in k.items()}
    out["start_ns"] = start[keep] + offset
    out["end_ns"] = end[keep] + offset
    return out, {"offset_ns": offset, "bounds_ns": [lo, hi], "rounds": int(len(pairs))}


def attribute_timeline(rows: pd.DataFrame, kernels, watched=None):
    """Kernel columns for the rows of a timeline: (per-row DataFrame indexed by seq with ROW_COLUMNS,
    each kernel's seq for kernels.parquet, counts).

    Two levels, because windows of one level must not overlap: first the subgraph rows (`exec`,
    `fallback`), whose kernel seq goes into kernels.parquet; then the `inference` rows, which contain
    them. At each level a kernel goes, best first:

    1. By launch: to the row whose HOST window contains the kernel's `queued_ns` (CUPTI's latency
       timestamp: when its launch was queued, which happens on the launching thread inside the call
       that launched it). No GPU clock is involved, so neither the events' drift from the host clock
       nor a GPU running behind the host can move a kernel into the neighbouring row (on GPU-paced
       work the event windows drifted by ~5 us/s against CUPTI's times: H100, 2026-12-08, graph-broken
       BERT at batch 128). A kernel launched outside every row (the caller's own code between calls) is
       counted `outside` and given to none. Host windows of several threads can overlap: a kernel in
       more than one, or launched while inferences of more than one thread were open (a kernel carries
       no thread), goes on to rule 2. Without inference rows (engines called on their own) a second
       thread's launch between its own rows can still land in another thread's open row.
    2. By GPU window (the module docstring's rules), for records without a launch time (memcpy,
       kernels CUPTI gave none, a CUPTI without latency timestamps, older captures) and those above.
       A window's stream is the row's CUDA stream handle, kept apart from CUPTI's stream ids (it never
       equals one), so kernels go by time ("window on any stream"), which is what the engine's own pool
       stream needs. Where event windows overlap (two threads on one stream), every window is treated
       as a stream of its own: a kernel inside several is ambiguous and unattributed.

    `watched`: mask of rows recorded while kernel activity was on (the others get nulls)."""
    watch = pd.Series(True if watched is None else watched, index=rows.index).astype(bool).to_numpy()
    gpu_ok = _window_ok(rows, "gpu_start_ns", "gpu_end_ns") & watch
    n = len(kernels["start_ns"])
    launch = _launched(kernels, n)
    host_ok = _window_ok(rows, "host_start_ns", "host_end_ns") & watch if launch.any() \
        else np.zeros(len(rows), dtype=bool)
    if launch.any() and "thread" in rows:
        launch &= ~_several_threads(rows, kernels, launch)
    ev = rows["event"].astype(object)
    out, kseq, counts = [], None, {}
    for level, events in (("subgraph", ("exec", "fallback")), ("inference", ("inference",))):
        sel = ev.isin(events).to_numpy(bool) & (gpu_ok | host_ok)
        if not sel.any():
            continue
        w = rows[sel]
        seq = w["seq"].to_numpy(np.int64)
        index, c = _level(kernels, launch, w, gpu_ok[sel], host_ok[sel])
        table, ks = summarise(kernels, index, seq, gpu_ok[sel] | host_ok[sel], gpu_ok[sel])
        out.append(table)
        counts[level] = c
        if kseq is None:
            kseq = ks
    table = pd.concat(out, ignore_index=True).set_index("seq") if out else \
        pd.DataFrame(columns=list(ROW_COLUMNS)).rename_axis("seq")
    return table, kseq if kseq is not None else pd.array([pd.NA] * n, dtype="Int64"), counts


def _window_ok(rows: pd.DataFrame, start: str, end: str) -> np.ndarray:
    """Rows whose window has both edges, the end not before the start."""
    s, e = rows[start].astype("Float64"), rows[end].astype("Float64")
    return (s.notna() & e.notna() & (e >= s).fillna(False)).to_numpy(bool)


def _several_threads(rows: pd.DataFrame, kernels, launch: np.ndarray) -> np.ndarray:
    """Launched kernels whose launch time lies inside inferences of more than one thread: a kernel
    carries no thread, so another thread's launch between its own rows would otherwise land in this
    thread's open row. Those go by GPU window (where windows overlap there too, they stay ambiguous)."""
    inf = rows[(rows["event"].astype(object) == "inference").to_numpy(bool)
               & _window_ok(rows, "host_start_ns", "host_end_ns")]
    threads = inf["thread"].dropna().unique()
    if len(threads) < 2:
        return np.zeros(len(launch), dtype=bool)
    q, _ = _ints(kernels, "queued_ns")
    seen = np.zeros(len(launch), dtype=np.int64)
    for t in threads:
        w = inf[(inf["thread"] == t).to_numpy(bool)]
        st = w["host_start_ns"].astype("int64").to_numpy()
        o = np.argsort(st, kind="stable")
        st, en = st[o], np.maximum.accumulate(w["host_end_ns"].astype("int64").to_numpy()[o])
        j = np.searchsorted(st, q, side="right") - 1
        seen += (j >= 0) & (q <= en[np.maximum(j, 0)])
    return launch & (seen > 1)


def _launched(kernels, n: int) -> np.ndarray:
    """Mask of the kernel records that carry a usable launch time: known (`queued_ns` > 0) and no later
    than the kernel's start (a launch is queued before it runs: 2,600 of 2,600 kernels in
    scripts/probe_launch_time.py, H100, 2026-12-08; a record where it is not goes by GPU window)."""
    if "queued_ns" not in kernels:
        return np.zeros(n, dtype=bool)
    q, ok = _ints(kernels, "queued_ns")
    ks, _ = _ints(kernels, "start_ns")
    kind = np.asarray(kernels["kind"], dtype=object) if "kind" in kernels else None
    return ok & (q > 0) & (q <= ks) & (True if kind is None else (kind == "kernel"))


_MATCHED = ("kind", "start_ns", "end_ns", "stream", "queued_ns")  # what attribute() reads of a record


def _subset(kernels, mask: np.ndarray) -> dict:
    return {k: np.asarray(kernels[k])[mask] for k in _MATCHED if k in kernels}


def _level(kernels, launch, w: pd.DataFrame, gpu_ok, host_ok) -> tuple[np.ndarray, dict]:
    """(each record's window position in `w`, -1 for none; counts) by launch, then by GPU window."""
    n = len(launch)
    index = np.full(n, -1, dtype=np.int64)
    counts = {"total": n, "by_launch": 0, "by_stream": 0, "by_time": 0, "between": 0, "ambiguous": 0,
              "outside": 0}
    rest = ~launch
    seq = w["seq"].to_numpy(np.int64)
    if launch.any() and host_ok.any():
        hw = pd.DataFrame({"seq": seq, "stream": -1,
                           "start_ns": w["host_start_ns"].astype("Int64").mask(~host_ok),
                           "end_ns": w["host_end_ns"].astype("Int64").mask(~host_ok)})
        a = attribute(_subset(kernels, launch), hw, at="queued_ns", summary=False)
        li = np.flatnonzero(launch)
        index[li] = a.index
        rest[li[a.ambiguous]] = True
        counts["by_launch"] = int((a.index >= 0).sum())
        counts["outside"] = int(((a.index < 0) & ~a.ambiguous).sum())
    else:
        rest = np.ones(n, dtype=bool)
    if rest.any():
        stream = w["stream"].astype("Int64").fillna(-1).to_numpy(np.int64)
        gw = pd.DataFrame({"seq": seq, "stream": -(np.abs(stream) + 2),
                           "start_ns": w["gpu_start_ns"].astype("Int64").mask(~gpu_ok),
                           "end_ns": w["gpu_end_ns"].astype("Int64").mask(~gpu_ok)})
        sub = _subset(kernels, rest)
        try:
            a = attribute(sub, gw, summary=False)
        except ValueError:  # overlapping windows on one stream: each window a stream of its own
            gw["stream"] = -(np.arange(len(gw), dtype=np.int64) + 2)
            a = attribute(sub, gw, summary=False)
        index[np.flatnonzero(rest)] = a.index
        for k in ("by_stream", "by_time", "between", "ambiguous", "outside"):
            counts[k] += a.counts[k]
    return index, counts


def read(folder):
    """The kernels of a capture folder (or of a kernels.parquet path) as a DataFrame; None when the
    capture has none (older captures, no CUPTI). A damaged file is a ValueError that says which."""
    path = Path(folder)
    if path.is_dir() or path.suffix != ".parquet":
        path = path / FILE
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        missing = [c for c in KERNEL_COLUMNS if c not in table.column_names and c not in ADDED]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}")
        for c in ADDED:  # a file from before the column: nulls
            if c not in table.column_names:
                table = table.append_column(c, pa.nulls(table.num_rows, KERNEL_COLUMNS[c][0]))
        table = table.select(list(KERNEL_COLUMNS)).cast(SCHEMA)
        df = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    except Exception as e:
        raise ValueError(f"{path}: not a readable kernels table ({type(e).__name__}: {e})") from None
    return df
