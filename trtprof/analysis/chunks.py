"""Where a capture can be cut into chunks that are analysed one at a time and give, added up, what
the whole timeline gives.

Why a plan, read first: most of the report is per inference (its latency, mode, GPU gaps, the
allocations it made), so a chunk must hold whole inferences; shape changes compare a call with the
previous call of the same subgraph, so calls must not go back in order across a cut; an allocation
is hidden by GPU work that may have been recorded in another chunk. A first pass over a few columns
finds the batch boundaries where all three hold: for every (process, model) the inferences before
the cut are all numbered below those after it, for every subgraph the calls likewise, and every
allocation before the cut ends before any GPU work after it starts (GPU work before the cut that is
still running is carried into the next chunks, `carry_until`). A capture whose rows interleave more
than that only gets longer chunks, never a different result.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trtprof.analysis import report
from trtprof.analysis.overlap import GPU_EVENTS
from trtprof.timeline import store

READ = ["pid", "model", "inference", "subgraph", "subgraph_kind", "event", "call", "host_start_ns",
        "host_end_ns", "gpu_start_ns", "kernel_first_ns", "kernel_busy_ns"]
INF = np.iinfo(np.int64).max
_STARTS = ("gpu_start_ns", "kernel_first_ns")  # where overlap.gpu_windows may start a row's GPU work


@dataclass
class Plan:
    """Chunks as ((first batch, row in it), (end batch, row in it)) over `Timeline.batches(...,
    batch_rows)`: a chunk ends inside a batch, where its last whole inference ends."""
    batch_rows: int
    chunks: list = field(default_factory=list)
    carry_until: list = field(default_factory=list)  # per chunk: GPU work ending after this matters later
    kernel_pids: set = field(default_factory=set)  # processes with kernel activity on their GPU rows
    rows: int = 0


def _frame(t: pa.Table) -> pd.DataFrame:
    """A batch of the plan's columns as pandas, strings as categories (cheap to group)."""
    cols = {}
    for name in t.column_names:
        c = t.column(name)
        if name in _STARTS:  # exact int64, a missing start never the earliest
            c = pc.fill_null(c, pa.scalar(INF, c.type))
        cols[name] = (pc.dictionary_encode(c) if pa.types.is_string(c.type) else c).to_pandas()
    return pd.DataFrame(cols)


def _around(pos: np.ndarray, v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For every cut p in 0..n: the largest value at rows before p, the smallest at rows from p."""
    low = np.full(n, -INF, np.int64)
    low[pos] = v
    high = np.full(n, INF, np.int64)
    high[pos] = v
    return np.r_[-INF, np.maximum.accumulate(low)], np.r_[np.minimum.accumulate(high[::-1])[::-1], INF]


class _Batch:
    """One batch's candidate cut: the last row where, inside the batch, every key's values before it
    are below those from it and no allocation before it ends after GPU work from it starts; with
    each key's values on both sides of it and of the whole batch, to check against the other batches."""

    def __init__(self, d: pd.DataFrame):
        n = self.n = len(d)
        ev = d["event"]  # categories: compared once per distinct value
        ok = np.ones(n + 1, bool)
        ok[0] = ok[n] = False  # inside the batch: its last rows may go on in the next one
        self.keys = {}  # (kind, key) -> (lo, hi of the batch, before cut, after cut)
        is_call = ((ev == "call") & (d["subgraph_kind"] == "engine")) | (ev == "fallback")
        sides = {}
        for kind, mask, keys, col in (("inf", (d["inference"] >= 0).to_numpy(bool), ["pid", "model"], "inference"),
                                      ("call", is_call.to_numpy(bool), ["pid", "model", "subgraph"], "call")):
            sub = d[mask]
            if sub.empty:
                continue
            pos = np.flatnonzero(mask)
            # dropna=False: a null model or subgraph is a key of its own, as the analysis groups it
            codes = sub.groupby(keys, observed=True, sort=False, dropna=False).ngroup().to_numpy()
            v = sub[col].to_numpy(np.int64)
            for k, at in zip(*np.unique(codes, return_index=True)):
                m = codes == k
                before, after = _around(pos[m], v[m], n)
                ok &= before < after
                key = tuple(None if pd.isna(x) else x.item() if hasattr(x, "item") else x for x in sub[keys].iloc[at])
                sides[(kind, key)] = (int(v[m].min()), int(v[m].max()), before, after)
        alloc = (ev == "alloc").to_numpy(bool)
        gpu = ev.isin(GPU_EVENTS).to_numpy(bool)
        hs, he = d["host_start_ns"].to_numpy(np.int64), d["host_end_ns"].to_numpy(np.int64)
        # GPU work starts at the earliest of its host start and the start overlap.gpu_windows takes
        # (kernel span or event bracket, which clock error can put before the host start)
        gs = hs
        for c in _STARTS:
            if c in d:
                gs = np.minimum(gs, d[c].to_numpy(np.int64))
        a_end, _ = _around(np.flatnonzero(alloc), he[alloc], n)
        _, g_start = _around(np.flatnonzero(gpu), gs[gpu], n)
        _, a_start = _around(np.flatnonzero(alloc), hs[alloc], n)
        ok &= a_end <= g_start
        cut = int(np.flatnonzero(ok)[-1]) if ok.any() else None
        self.cut = cut
        for key, (lo, hi, before, after) in sides.items():
            self.keys[key] = (lo, hi) + ((int(before[cut]), int(after[cut])) if cut is not None else (None, None))
        at = cut if cut is not None else n
        self.alloc_end, self.gpu_start = int(a_end[n]), int(g_start[0])
        self.alloc_start = int(a_start[0])
        self.cut_alloc_end, self.cut_gpu_start, self.cut_alloc_start = int(a_end[at]), int(g_start[at]), int(a_start[at])
        self.kernel_pids = report.kernel_pids(d)


def plan(timeline, chunk_rows: int, batch_rows: int = store.ROW_GROUP) -> Plan:
    """Cut `timeline` (a `scan.Timeline`) into chunks of about `chunk_rows` rows at safe places."""
    batches = [_Batch(_frame(t)) for t in timeline.batches(READ, batch_rows=batch_rows)]
    n = len(batches)
    p = Plan(batch_rows=batch_rows, rows=sum(b.n for b in batches))
    p.kernel_pids = set().union(*(b.kernel_pids for b in batches)) if batches else set()
    keys = set().union(*(b.keys for b in batches)) if batches else set()
    # per key, the largest value in the batches before b and the smallest in those after it
    pre, suf = {}, {}
    for key in keys:
        lo = np.array([b.keys[key][0] if key in b.keys else INF for b in batches], np.int64)
        hi = np.array([b.keys[key][1] if key in b.keys else -INF for b in batches], np.int64)
        pre[key] = np.r_[-INF, np.maximum.accumulate(hi)[:-1]]
        suf[key] = np.r_[np.minimum.accumulate(lo[::-1])[::-1][1:], INF]
    a_pre = np.r_[-INF, np.maximum.accumulate(np.array([b.alloc_end for b in batches], np.int64))[:-1]] if n else []
    g_suf = np.r_[np.minimum.accumulate(np.array([b.gpu_start for b in batches], np.int64)[::-1])[::-1][1:], INF] if n else []
    s_suf = np.r_[np.minimum.accumulate(np.array([b.alloc_start for b in batches], np.int64)[::-1])[::-1][1:], INF] if n else []
    start, rows = (0, 0), 0
    for i, b in enumerate(batches):
        rows += b.n
        if i == n - 1:
            break
        if b.cut is None or rows - (b.n - b.cut) < chunk_rows:
            continue
        safe = max(a_pre[i], b.cut_alloc_end) <= min(b.cut_gpu_start, g_suf[i])
        for key in keys:
            lo, hi, before, after = b.keys.get(key, (None, None, -INF, INF))
            safe &= max(pre[key][i], before) < min(after, suf[key][i])
        if safe:
            p.chunks.append((start, (i, b.cut)))
            p.carry_until.append(int(min(b.cut_alloc_start, s_suf[i])))
            start, rows = (i, b.cut), b.n - b.cut
    if n:
        p.chunks.append((start, (n - 1, batches[-1].n)))
        p.carry_until.append(INF)
    return p
