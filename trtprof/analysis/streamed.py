"""The report's analysis of a capture read chunk by chunk (`analysis.chunks`), in memory bounded by
a chunk and the per-inference tables, with the statistics of `report.analyse` on the whole timeline.

How it stays the same analysis: each chunk holds whole inferences, so the per-inference tables
(inferences, latency, GPU gaps, allocations, shape changes) are those of the whole timeline for the
chunk's rows, computed by the same functions; what the chunk before left open is carried in (the
last two calls of each subgraph and the allocations of the last, for shape changes; GPU work still
running, for hidden allocation time). Tables over all rows (per subgraph, exposure, gaps, shape
change frequency, stream names) come from each function's parts, added up (`*_parts`/`*_finish`);
the latency statistics and comparisons run on the concatenated per-inference tables. Only the rows
of the inferences the timeline draws are read again, at the end (`Streamed.window`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trtprof.analysis import chunks, cudagraphs, overlap, report, shapes, subgraphs
from trtprof.analysis.bootstrap import N_BOOT, SEED
from trtprof.analysis.latency import inference_latency, latency_summary
from trtprof.analysis.prealloc import compare_modes
from trtprof.analysis.recommend import REC_COLUMNS, recommendations
from trtprof.analysis.streams import names_from, stream_parts
from trtprof.timeline import schema, store
from trtprof.timeline.store import repair_notes

CHUNK_ROWS = 256 * 1024  # rows analysed at a time: a chunk's frame and its analysis take a few hundred MB
# what the analyses read: every column but the thread, the output shapes and new_segment (the note: whether
# an inference raised, so that a first inference that raised is not taken for the cold start)
READ = [c for c in schema.COLUMNS if c not in ("thread", "shapes", "new_segment")]
SUB = shapes.SUB
# what the analyses that follow calls in order read (shape changes, their frequency, re-allocation causes)
SEQ_READS = ["seq", "pid", "model", "inference", "subgraph", "subgraph_kind", "runtime", "event", "call",
             "host_start_ns", "input_shapes", "prealloc", "shape_changed", "reallocated", "exclude"]
GPU_READS = ["seq", "pid", "model", "inference", "subgraph", "call", "prealloc", "alloc_phase", "reallocated",
             "shape_changed", "bytes", "exclude", "event", "host_start_ns", "host_end_ns", "gpu_start_ns",
             "gpu_end_ns", "kernel_first_ns", "kernel_last_ns"]


@dataclass
class Carry:
    """What a chunk needs of the chunks before it."""
    gpu: pd.DataFrame | None = None  # GPU rows whose work may hide a later allocation
    calls: pd.DataFrame | None = None  # the last two calls of each subgraph
    allocs: pd.DataFrame | None = None  # the allocations of each subgraph's last call


@dataclass
class Streamed:
    """The analysis of a chunked capture: `results`, the first start of each inference (for choosing
    the timeline's window), and what is needed to read the window's rows again."""
    results: report.Results
    starts: pd.DataFrame
    rows: int
    timeline: object = None
    plan: chunks.Plan | None = None
    carries: list = field(default_factory=list)  # Carry entering each chunk
    spans: list = field(default_factory=list)  # per chunk: (pid, model) -> (first, last inference)

    def window(self, keys: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(rows, allocations, gaps) of the chunks holding the inferences `keys` (KEY columns), each
        computed as the whole timeline gives them for those rows."""
        hit = [j for j, span in enumerate(self.spans)
               if any(lo <= i <= hi for p, m, i in keys[overlap.KEY].itertuples(index=False)
                      for (lo, hi) in [span.get((p, m), (1, 0))])]
        if not hit:
            return schema.empty_frame(), self.results.allocs, self.results.gaps
        c = _read(self.timeline, self.plan, hit[0], hit[-1])
        infs = overlap.inferences(c)
        allocs, _, _ = _allocs(c, self.carries[hit[0]], self.plan.kernel_pids)
        return c, allocs, overlap.gpu_gaps(c, infs)


def _tables(tl, plan: chunks.Plan, first: int = 0, last: int | None = None):
    """(chunk index, its rows as Arrow tables) for chunks first..last, read batch by batch."""
    last = len(plan.chunks) - 1 if last is None else last
    j, buf = first, []
    for b, t in enumerate(tl.batches(READ, batch_rows=plan.batch_rows)):
        while j <= last:
            (b0, r0), (b1, r1) = plan.chunks[j]
            if b < b0:
                break
            lo = r0 if b == b0 else 0
            hi = r1 if b == b1 else t.num_rows
            if hi > lo:
                buf.append(t.slice(lo, hi - lo))
            if b < b1:
                break
            yield j, buf
            j, buf = j + 1, []
        if j > last:
            return


def _frame(tables: list) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pa.concat_tables(tables)
    if "note" in t.column_names:  # read for the inference rows alone (`raised`): no string per allocation row
        i = t.schema.get_field_index("note")
        keep = pc.equal(t.column("event"), "inference")
        t = t.set_column(i, "note", pc.if_else(keep, t.column(i), pa.scalar(None, t.schema.field(i).type)))
    return schema.to_frame(t, consume=True)


def _read(tl, plan: chunks.Plan, first: int, last: int) -> pd.DataFrame:
    """The rows of chunks first..last as one frame of the schema's dtypes."""
    return _frame([t for _, ts in _tables(tl, plan, first, last) for t in ts])


def _chunks(tl, plan: chunks.Plan):
    """(index, frame, first row) of each chunk."""
    row = 0
    for j, ts in _tables(tl, plan):
        c = _frame(ts)
        yield j, c, row
        row += len(c)


chunks_of = _chunks  # for the other chunked analyses (compare_streamed)


def _cat(frames: list, rows: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """`rows` (carried in) then `frames`, concatenated; a single frame is returned as it is."""
    frames = [f for f in ([rows] + frames) if f is not None and len(f)]
    if len(frames) <= 1:
        return frames[0] if frames else None
    return pd.concat(frames, ignore_index=True)


def _allocs(c: pd.DataFrame, carry: Carry, kernel_pids: set):
    """The chunk's allocations as the whole timeline gives them (GPU work carried in), the frame
    the sequence analyses read (the carried calls before the chunk's rows), and the caveat."""
    if carry.gpu is None:
        allocs = overlap.alloc_overlap(c)
    else:  # the chunk's allocations and GPU rows after those carried in: a copy of what is read only
        rows = c.loc[c["event"].isin(("alloc",) + overlap.GPU_EVENTS).to_numpy(bool), list(carry.gpu.columns)]
        allocs = overlap.alloc_overlap(pd.concat([carry.gpu, rows], ignore_index=True))
    ev = c["event"]
    mine = c.loc[((ev == "call") | (ev == "fallback") | (ev == "alloc")).to_numpy(bool), SEQ_READS]
    seq = _cat([mine.assign(_carried=False)], carry.calls)
    allocs, caveat = report.overlap_known(seq, allocs, kernel_pids)
    return allocs, seq, caveat


def _next_carry(carry: Carry, c: pd.DataFrame, seq: pd.DataFrame, allocs: pd.DataFrame, until: int) -> Carry:
    open_ = []
    for f in (carry.gpu, c):
        if f is not None:
            g, _, ge = overlap.gpu_windows(f)
            open_.append(g.loc[ge > until, GPU_READS])
    gpu = pd.concat(open_, ignore_index=True)
    calls = shapes.calls_in_order(seq).groupby(SUB, sort=False, observed=True).tail(2)
    calls = calls[list(seq.columns)].assign(_carried=True)
    last = calls.groupby(SUB, sort=False, observed=True)["call"].max().rename("_last").reset_index()
    a = _cat([allocs], carry.allocs)
    if a is not None and len(a):
        a = a.merge(last, on=SUB)
        a = a[a["call"] == a["_last"]].drop(columns="_last")
    return Carry(gpu=gpu if len(gpu) else None, calls=calls, allocs=a)


def analyse(tl, meta: dict, n_boot: int = N_BOOT, seed: int = SEED, chunk_rows: int | None = None,
            batch_rows: int | None = None) -> Streamed:
    """`report.analyse` of the capture `tl` (a `scan.Timeline`), read chunk by chunk (`chunk_rows`,
    default `CHUNK_ROWS`; `batch_rows`: rows read at a time, default a row group or half a chunk: a
    chunk ends inside a batch, at most once in each)."""
    _heap()
    chunk_rows = chunk_rows or CHUNK_ROWS
    p = chunks.plan(tl, chunk_rows, batch_rows or max(1, min(store.ROW_GROUP, chunk_rows // 2)))
    acc: dict[str, list] = {k: [] for k in ("infs", "lat", "cg", "gaps", "breaks", "exposure", "unknown",
                                            "subgraphs", "freq", "changes", "streams", "facts")}
    flags = {"gpu": False, "spans": False, "kernels": False, "caveat": None}
    carry, carries, spans = Carry(), [], []
    for j, c, offset in _chunks(tl, p):
        carries.append(carry)
        infs = overlap.inferences(c)
        lat = inference_latency(c, infs)
        allocs, seq, caveat = _allocs(c, carry, p.kernel_pids)
        gaps = overlap.gpu_gaps(c, infs)
        flags["caveat"] = flags["caveat"] or caveat
        flags["gpu"] |= overlap.has_gpu_times(c)
        flags["spans"] |= bool(c.loc[c["event"].isin(overlap.GPU_EVENTS), "kernel_first_ns"].notna().any())
        flags["kernels"] |= report.has_kernels(c)
        inside = c.loc[(c["inference"] >= 0).to_numpy(bool), overlap.KEY + ["host_start_ns"]]
        # each inference's first start, in the order of `infs` (both group the same rows by KEY in order)
        infs["_start"] = inside.groupby(overlap.KEY, sort=False, dropna=False, observed=True)["host_start_ns"].min().to_numpy()
        rows = c[((c["event"] == "inference") & (c["inference"] >= 0)).to_numpy(bool)].drop_duplicates(overlap.KEY)
        acc["cg"].append(rows.loc[rows["cudagraph"].notna(), overlap.KEY + ["event", "cudagraph"]])
        acc["infs"].append(compact(infs))
        acc["lat"].append(latency_part(lat, infs))
        reduced = overlap.reduce_gaps(gaps) if len(gaps) else ()
        if len(reduced):  # included gaps: the summary has rows
            acc["gaps"].append(reduced)
        if not acc["gaps"]:  # the reason there are no gaps is asked only when there are none
            acc["facts"].append(report.gap_facts(c, gaps))
        acc["breaks"].append(subgraphs.break_parts(c, gaps, infs))
        acc["exposure"].append(overlap.exposure_parts(c, allocs, infs))
        acc["unknown"].append(report.unknown_groups(allocs, infs))
        acc["subgraphs"] = [subgraphs.merge(acc["subgraphs"] + [subgraphs.parts(c, allocs, kinds=("engine", "fallback"))])]
        calls = shapes.calls_in_order(seq)
        acc["freq"].append(shapes.frequency_parts(calls, keep=~calls["_carried"].astype(bool).to_numpy()))
        ch = shapes.shape_changes(seq, _cat([allocs], carry.allocs))
        if len(ch) and carry.calls is not None:
            old = carry.calls[SUB + ["call"]].assign(_old=True)
            ch = ch.merge(old, on=SUB + ["call"], how="left")
            ch = ch[ch["_old"].isna().to_numpy(bool)].drop(columns="_old")
        acc["changes"].append(compact(ch, CHANGE_LABELS))
        acc["streams"].append(stream_parts(c, offset))
        span = inside.groupby(["pid", "model"], sort=False, observed=True)["inference"].agg(["min", "max"]).reset_index()
        spans.append({(int(pid), m): (int(lo), int(hi)) for pid, m, lo, hi in span.itertuples(index=False)})
        carry = _next_carry(carry, c, seq, allocs, p.carry_until[j])
        del c, seq, allocs, gaps, inside, calls, ch, rows, infs, lat
        _release()
    return _finish(acc, flags, p, meta, n_boot, seed, Streamed(None, None, p.rows, tl, p, carries, spans))


LABELS = ("model", "mode", "input_shapes")  # per-inference text: a few distinct values, kept as categories
CHANGE_LABELS = ("model", "subgraph", "kind", "old_shapes", "new_shapes")


INTS = ("pid", "inference", "engine_calls", "call")  # per-inference numbers that fit 32 bits
UNREAD = ("host_ns", "gpu_ns")  # latency columns no part of the report reads (latency_ns is)


def compact(frame: pd.DataFrame, labels=LABELS) -> dict:
    """A per-inference table as the report keeps it for 14 M inferences (a 100 M-row capture), as
    independent columns (so `join_parts` can free each as it goes): labels as categories (a byte or two
    instead of a string), process ids, inference and call numbers in 32 bits where they fit, and
    without the latency columns nothing reads."""
    out = {}
    for c in frame.columns:
        if c in UNREAD:
            continue
        v = frame[c]
        if c in labels:
            out[c] = pd.Categorical(v)
        elif c in INTS and v.dtype.kind == "i" and len(v) and -2**31 < v.min() and v.max() < 2**31:
            out[c] = v.to_numpy(np.int32)
        else:
            out[c] = v.array.copy()
    return out


SHARED = overlap.KEY + ["mode", "excluded", "raised", "input_shapes"]  # latency columns equal to the inferences' ones


def latency_part(lat: pd.DataFrame, infs: pd.DataFrame) -> dict:
    """A chunk's latency table as kept: its latencies alone when its other columns are the
    inference table's, row for row (each inference has its `inference` row, in the order its rows
    began: one thread's inferences), so that `_finish` builds the latency table on the inference
    table's columns (12 bytes an inference less: 160 MB of a 100 M-row capture); whole otherwise."""
    if len(lat) == len(infs) and lat[SHARED].reset_index(drop=True).equals(infs[SHARED].reset_index(drop=True)):
        return {"latency_ns": lat["latency_ns"].array.copy()}
    return compact(lat)


def _latency_table(infs_parts: list, lat_parts: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inferences, latency) from the chunks' parts: the latency table on the inference table's
    columns when every chunk's were the same (`latency_part`), else each made whole and joined."""
    shared = [len(p) == 1 for p in lat_parts]
    if not all(shared):
        for i, p in enumerate(lat_parts):
            if shared[i]:
                lat_parts[i] = {**{c: infs_parts[i][c] for c in SHARED}, **p}
    infs = join_parts(infs_parts)
    lat = join_parts(lat_parts)
    if all(shared) and len(lat):
        lat = pd.DataFrame({**{c: infs[c] for c in SHARED}, "latency_ns": lat["latency_ns"]}, copy=False)
    return infs, lat


def join_parts(parts: list, labels=LABELS) -> pd.DataFrame:
    """The chunks' per-inference tables as one, labels as categories in sorted order (what grouping
    sorts them by; pandas groups categories as observed, as it groups strings). Column by column,
    each chunk's column let go once joined: the parts and the whole are not held at once."""
    from pandas.api.types import union_categoricals

    parts = [p for p in parts if len(next(iter(p.values()), ()))] or parts[:1]
    cols = list(parts[0])
    out = {}
    for c in cols:
        vals = [p.pop(c) for p in parts]
        if c in labels:
            out[c] = union_categoricals(vals, sort_categories=True) if len(vals) > 1 else vals[0]
        else:
            out[c] = pd.concat([pd.Series(v, copy=False) for v in vals], ignore_index=True).array \
                if len(vals) > 1 else vals[0]
        del vals
    return pd.DataFrame(out, copy=False)


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc, loaded once (each chunk asks for it); None elsewhere."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def _heap() -> None:
    """Large arrays from the heap's own pages (mmap) from 256 KB up, so freeing a chunk's temporaries
    gives their pages back. Why: glibc raises that threshold to the largest block freed, after which
    a chunk's arrays come from the heap, where the small tables kept between them pin the pages
    (10 M rows: 940 MB between chunks instead of 780 MB)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD


def _release() -> None:
    """Give the pages of a chunk's freed temporaries back: Arrow's pool and glibc's heap keep them
    otherwise, and the process grows chunk after chunk (10 M rows: 1.75 GB instead of 1.3 GB)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


release = _release  # what a chunked analysis calls after each chunk
heap = _heap  # and once before the first


def _finish(acc, flags, p, meta, n_boot, seed, out: Streamed) -> Streamed:
    infs, lat = _latency_table(acc.pop("infs"), acc.pop("lat"))
    _release()  # the joins' temporaries: at 10 M rows 200 MB stayed in the heap, under the statistics' peaks
    start = infs.pop("_start").to_numpy() if "_start" in infs else []
    out.starts = infs[overlap.KEY].assign(host_start_ns=start)  # shares the key columns (copy on write)
    empty = pd.DataFrame(columns=overlap.KEY)
    gap_rows = _cat(acc["gaps"])
    gap_sum = schema.sort_subgraphs(overlap.gap_summary(gap_rows if gap_rows is not None else empty, infs),
                                    by=("model", "mode", "before", "after"))
    changes = shapes.order_changes(join_parts(acc.pop("changes"), CHANGE_LABELS))
    unknown = _cat(acc["unknown"])
    breaks = subgraphs.break_finish(acc["breaks"])
    freq = shapes.frequency_finish(acc["freq"])
    exposure = overlap.exposure_finish(acc["exposure"], flags["gpu"])
    exposure = report.unknown_exposure(exposure, unknown if unknown is not None else empty)
    busy = "kernel spans" if flags["spans"] else "event brackets" if flags["gpu"] else None
    cg = _cat(acc["cg"])
    cg = cg if cg is not None else pd.DataFrame({c: [] for c in overlap.KEY + ["event", "cudagraph"]})
    _release()
    r = report.Results(
        infs=infs, latency=lat, by_mode=latency_summary(lat, ("model", "mode")),
        by_shape=latency_summary(lat, ("model", "mode", "input_shapes")),
        comparisons=compare_modes(lat, n_boot, seed), allocs=pd.DataFrame(columns=["seq"]),
        exposure=schema.sort_subgraphs(exposure, by=("model", "subgraph", "mode")),
        gaps=pd.DataFrame(columns=overlap.KEY + ["gap_ns"]), gap_summary=gap_sum, changes=changes, frequency=freq,
        shape_advice=shapes.advice(freq), breaks=breaks, subgraphs=subgraphs.finish(acc["subgraphs"], breaks),
        recommendations=pd.DataFrame(columns=REC_COLUMNS), gpu_times=flags["gpu"],
        transitions=shapes.transitions(changes), streams=names_from(acc["streams"]),
        overlap_caveat=flags["caveat"],
        gap_reason=report.gap_reason(None, empty, flags["gpu"], gap_sum, facts=report.combine_facts(acc["facts"])),
        kernels=flags["kernels"], level=report.level_of(meta), data_notes=repair_notes(meta) + report.kernel_notes(meta), busy_source=busy)
    # no inference ran a CUDA graph: every one is "off", which `compare` answers with no comparison
    r.cudagraphs = cudagraphs.compare(cg, lat, n_boot, seed) if len(cg) else []
    r.recommendations = recommendations(r)
    out.results = r
    _release()  # what the statistics freed, before the page is made
    return out
