"""`compare.compare_timelines` of captures read chunk by chunk: the same comparison in memory bounded
by a chunk and the per-inference tables.

Why it can be the same comparison: of the rows, a comparison needs each inference's latency, mode
and input shapes (the end-to-end difference, and which inferences are compared) and, per subgraph,
the host and GPU time of each call of the compared inferences, of which it takes medians and
bootstrap intervals. Those come exactly from value counts (integer nanoseconds repeat: `counts`),
which chunks add up, read without expanding (`counts.Counted`). Chunks hold whole inferences
(`chunks.plan`). Each capture is read twice: once for the per-inference tables, from which both
sides' selection is made (it depends on the other side: shapes run in both), then for the rows of
the inferences chosen. A side may be several captures (the ranks of a run), each read in turn, its
process ids offset (by rank: `timeline.ranks.merged_sides`) so no two ranks share one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis import chunks, compare, counts, overlap, streamed
from trtprof.analysis.bootstrap import MIN_N, N_BOOT, SEED
from trtprof.analysis.latency import inference_latency
from trtprof.errors import TrtprofError
from trtprof.timeline import schema, store

KEYS = ["model", "subgraph"]
STATS = {"host": "host_us", "gpu": "gpu_us"}


def _frames(timelines: list, chunk_rows: int, plans: dict | None = None):
    """Each chunk of each (timeline, pid offset) of a side as a frame, pids offset. `plans` keeps
    each timeline's chunk plan (a read of its key columns) for the second pass."""
    plans = {} if plans is None else plans
    for tl, offset in timelines:
        p = plans.get(id(tl))
        if p is None:
            p = plans[id(tl)] = chunks.plan(tl, chunk_rows, max(1, min(store.ROW_GROUP, chunk_rows // 2)))
        for _, c, _ in streamed.chunks_of(tl, p):
            if offset:
                c["pid"] = c["pid"].to_numpy(np.int64) + offset
            yield c
            del c
            streamed.release()


def latencies(timelines: list, chunk_rows: int, plans: dict | None = None) -> tuple[pd.DataFrame, bool, list, list, list]:
    """First pass: the side's per-inference latencies (`inference_latency`, as `streamed` keeps
    them), whether it has GPU times, the runtimes its engines ran, the timelines read and a note for
    each left out. A timeline found damaged while it is read (one rank of a folder: `open_ranks`
    checks two columns only) is left out with a note when the side has others, as `load_ranks`
    leaves such a rank out; its own error otherwise."""
    parts, gpu, runtimes, kept, notes = [], False, set(), [], []
    for tl, offset in timelines:
        mine, g, r = [], False, set()
        try:
            for c in _frames([(tl, offset)], chunk_rows, plans):
                mine.append(streamed.compact(inference_latency(c, overlap.inferences(c))))
                g |= overlap.has_gpu_times(c)
                r |= set(compare.engine_runtimes(c))
        except TrtprofError as e:
            if len(timelines) == 1:
                raise
            notes.append(f"{tl.path} left out: {e}")
            continue
        parts += mine
        gpu |= g
        runtimes |= r
        kept.append((tl, offset))
    lat = streamed.join_parts(parts) if parts else inference_latency(schema.empty_frame())
    streamed.release()
    return lat, gpu, sorted(runtimes), kept, notes


def _chosen_index(chosen: pd.DataFrame) -> dict:
    """(pid, model) -> a bool array over inference numbers: whether that inference is compared."""
    out = {}
    for (pid, model), g in chosen.groupby(["pid", "model"], sort=False, observed=True):
        inf = g["inference"].to_numpy(np.int64)
        m = np.zeros(int(inf.max()) + 1, bool)
        m[inf] = True
        out[(int(pid), model)] = m
    return out


def _chosen_in(c: pd.DataFrame, index: dict) -> pd.DataFrame:
    """The KEY rows of the chunk's compared inferences."""
    inside = c.loc[(c["inference"] >= 0).to_numpy(bool), overlap.KEY].drop_duplicates()
    ok = np.zeros(len(inside), bool)
    for (pid, model), pos in inside.groupby(["pid", "model"], sort=False, observed=True).indices.items():
        m = index.get((int(pid), model))
        if m is not None:
            inf = inside["inference"].to_numpy(np.int64)[pos]
            ok[pos] = np.where(inf < len(m), m[np.minimum(inf, len(m) - 1)], False)
    return inside[ok]


class _Side:
    """A side's per-subgraph summary, added up chunk by chunk: what `compare._side` gives of a
    whole timeline."""

    def __init__(self):
        self.first = {True: [], False: []}  # kind and runtime of each subgraph's first row (inside / outside inferences)
        self.calls, self.alloc, self.counts = [], [], []

    def add(self, c: pd.DataFrame, chosen: pd.DataFrame, mode: str) -> None:
        rows = compare._rows_of(c, chosen, mode)
        main, timed = compare._per_call(rows)
        inside = (main["inference"] >= 0).to_numpy(bool)
        for flag in (True, False):
            part = main[inside == flag]
            if len(part):
                self.first[flag].append(part.groupby(KEYS, sort=False, observed=True)[["subgraph_kind", "runtime"]].first())
        if len(main):
            self.calls.append(main.groupby(KEYS, sort=False, observed=True).size())
        al = compare.alloc_sums(rows)
        if len(al):
            self.alloc.append(al)
        self.counts.append(counts.combine([counts.value_counts(main, KEYS, ["host_us"]),
                                           counts.value_counts(timed, KEYS, ["gpu_us"])], KEYS))
        if len(self.counts) >= 4:  # a running total: it grows with distinct values, not with rows
            self.counts = [counts.combine(self.counts, KEYS)]

    def summary(self, chosen: pd.DataFrame) -> dict:
        parts = self.first[True] + self.first[False]  # the whole timeline's order: inside inferences first
        first = pd.concat(parts).groupby(level=KEYS, sort=False, observed=True).first() if parts else None
        if first is not None:
            calls = pd.concat(self.calls).groupby(level=KEYS, sort=False, observed=True).sum()
            info = pd.DataFrame({"kind": first["subgraph_kind"], "runtime": first["runtime"],
                                 "calls": calls.reindex(first.index).to_numpy(np.int64)}, index=first.index)
        else:
            info = pd.DataFrame({"kind": [], "runtime": [], "calls": []},
                                index=pd.MultiIndex.from_tuples([], names=KEYS))
        alloc = compare.in_us(pd.concat(self.alloc).groupby(level=KEYS, sort=False, observed=True).sum() if self.alloc else
                              pd.DataFrame({"allocs": [], "alloc_ns": [], "bytes": []},
                                           index=pd.MultiIndex.from_tuples([], names=KEYS)))
        c = counts.combine(self.counts, KEYS)
        out = {"info": info, "alloc": alloc, "n_inf": chosen.groupby("model", observed=True).size()}
        for m, stat in STATS.items():
            out[m] = counts.counted(c, KEYS, stat)
        return out


def compare_sides(a: list, b: list, *, mode: str = "all", shape: str = compare.SHAPES_COMMON,
                  n_boot: int = N_BOOT, seed: int = SEED, min_n: int = MIN_N,
                  chunk_rows: int | None = None) -> compare.CaptureDiff:
    """Compare side B against side A, each a list of (`scan.Timeline`, pid offset); the result is
    `compare.compare_timelines`' on the timelines read whole (the tests hold them to it)."""
    chunk_rows = chunk_rows or streamed.CHUNK_ROWS
    streamed.heap()  # large arrays from pages of their own, given back when freed (as the report does)
    plans: dict = {}  # id(timeline) -> its chunk plan, made in the first pass and read in the second
    (lat_a, ga, ra, a, notes_a), (lat_b, gb, rb, b, notes_b) = (latencies(a, chunk_rows, plans),
                                                                latencies(b, chunk_rows, plans))
    chosen_a, chosen_b, sel = compare.select(lat_a, lat_b, mode, shape)
    cold = compare.cold_mismatch(lat_a, lat_b)
    # of every inference only its model is read again (`assemble`): the tables go, the chosen ones stay
    lat_a, lat_b = (lat[["model"]].drop_duplicates() for lat in (lat_a, lat_b))
    streamed.release()  # the first pass's and the selection's temporaries: at 10 M rows 186 MB of heap
    sides = []
    for timelines, chosen in ((a, chosen_a), (b, chosen_b)):
        side, index = _Side(), _chosen_index(chosen)
        for c in _frames(timelines, chunk_rows, plans):
            side.add(c, _chosen_in(c, index), mode)
        sides.append(side.summary(chosen))
        del side
        streamed.release()
    res = compare.assemble(lat_a, lat_b, chosen_a, chosen_b, sel, tuple(sides), (ga, gb), (ra, rb),
                           mode, n_boot, seed, min_n)
    if cold:
        res.warnings.append(cold)
    res.warnings += [f"{side}: {n}" for side, ns in (("A", notes_a), ("B", notes_b)) for n in ns]
    return res
