"""The Perfetto trace of `perfetto.py`, written while the capture is read: memory bounded by the rows
that overlap in time, not by the capture (the whole-frame builder needs about 5 KB per row).

Same trace, built in one sweep: ranges are taken in start order (the capture gives batches in the
order of their earliest start, with a bound no later row starts before, `scan.Timeline.in_time_order`),
each lane's sub-tracks kept as stacks the way `perfetto._tracks` keeps them, so every slice lands on
the sub-track, with the parent, that the whole-frame builder gives it. A slice is written when it
opens (parents before children, as viewers need); a flow is written once both its slices can have no
more children (no later range starts before their ends). What differs from `perfetto.build_trace`
is only bookkeeping: the order of events in the file, and the numbers of tids and flow ids.

Which call an after_enqueue allocation feeds is the next call of its (model, subgraph, thread), taken
here in start order where the builder sorts by call index: the two agree, calls of one subgraph run
one after another.
"""
from __future__ import annotations

import heapq
import json

from trtprof.render.perfetto import ARG_COLUMNS, RANK, _inner_point, _py, _stream_name

COLUMNS = sorted({"pid", "thread", "event", "subgraph", "model", "call", "host_start_ns", "host_end_ns",
                  "gpu_start_ns", "gpu_end_ns", "stream", "outputs", "alloc_phase", "shape_changed",
                  "input_shapes", "inference", *ARG_COLUMNS})
FACT_COLUMNS = ["pid", "thread", "host_start_ns", "gpu_start_ns", "gpu_end_ns"]


# one encoder for every event (json.dumps with options builds one per call); as `perfetto.to_json`
_dump = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class _Span:
    __slots__ = ("start", "end", "children", "pid", "tid")

    def __init__(self, start, end, keep_children):
        self.start, self.end = start, end
        self.children = [] if keep_children else None


def facts(batches) -> dict:
    """What the trace needs before its first slice, from one pass over FACT_COLUMNS: the time
    origin, the host pids, the threads in order of their first range, whether any row has GPU
    times, and how many have only one of the two."""
    import numpy as np

    t0, pids, first, gpu, half, pos = None, set(), {}, False, 0, 0
    for t in batches:
        c = {n: t.column(n).to_numpy(zero_copy_only=False) for n in ("pid", "thread", "host_start_ns")}
        gs, ge = t.column("gpu_start_ns"), t.column("gpu_end_ns")
        gs_ok = ~np.asarray(gs.is_null().to_numpy(zero_copy_only=False))
        ge_ok = ~np.asarray(ge.is_null().to_numpy(zero_copy_only=False))
        half += int((gs_ok != ge_ok).sum())
        gpu = gpu or bool((gs_ok & ge_ok).any())
        lows = [int(c["host_start_ns"].min())] if t.num_rows else []
        if gs_ok.any():
            lows.append(int(gs.drop_null().to_numpy().min()))
        if lows:
            t0 = min(lows) if t0 is None else min(t0, *lows)
        pids.update(int(p) for p in np.unique(c["pid"]))
        order = np.lexsort((np.arange(t.num_rows), c["host_start_ns"]))
        uniq, at = np.unique(c["thread"][order], return_index=True)  # each thread's first range in that order
        for th, i in zip(uniq.tolist(), order[at].tolist()):
            key = (int(c["host_start_ns"][i]), pos + i)
            if th not in first or key < first[th]:
                first[th] = key
        pos += t.num_rows
    threads = {th: n + 1 for n, th in enumerate(sorted(first, key=lambda th: first[th]))}
    return {"t0": t0 or 0, "pids": sorted(pids) or [0], "threads": threads, "gpu": gpu, "half_timed": half}


class _Writer:
    def __init__(self, out, f: dict):
        self.out, self.f, self.n, self.parts = out, f, 0, []
        self.t0 = f["t0"]
        self.gpu_pid = max(f["pids"]) + 1
        self.next_tid = self.gpu_pid + 1
        self.tids: dict = {}  # (lane, key, sub-track) -> tid
        self.key_order: dict = {}
        self.stacks: dict = {}  # (lane, key) -> list of stacks of open spans
        self.waiting: dict = {}  # row position -> the first opened of an exec row's host and GPU slices
        self.allocs: dict = {}  # (model, subgraph, thread, call) -> [alloc span] (after_enqueue)
        self.last_call: dict = {}  # (model, subgraph, thread) -> call index of the last call row
        self.last_shapes: dict = {}  # (model, subgraph) -> input shapes of the last call / fallback
        self.flows: list = []  # heap of (time both ends are final, n, name, src span, dst span)
        self.flow_id, self.dropped = 0, {}
        out.write('{"traceEvents":[')
        for i, pid in enumerate(f["pids"]):
            self.emit({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"host pid {pid}"}})
            self.emit({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": i}})
        if f["gpu"]:
            self.emit({"name": "process_name", "ph": "M", "pid": self.gpu_pid, "tid": 0, "args": {"name": "GPU"}})
            self.emit({"name": "process_sort_index", "ph": "M", "pid": self.gpu_pid, "tid": 0,
                       "args": {"sort_index": len(f["pids"])}})

    def emit(self, ev: dict) -> None:
        self.parts.append(_dump(ev))
        if len(self.parts) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.out.write(("," if self.n else "") + ",".join(self.parts))
            self.n += len(self.parts)
            self.parts = []

    def us(self, ns: int) -> float:
        return round((ns - self.t0) / 1000, 3)

    def tid(self, lane: str, key, k: int, pid: int) -> int:
        tk = (lane, key, k)
        if tk not in self.tids:
            self.tids[tk] = tid = self.next_tid
            self.next_tid += 1
            rank = self.key_order.setdefault((lane, key), len(self.key_order))
            name = (f"thread {self.f['threads'][key[1]]} (ident {key[1]})" if lane == "host"
                    else _stream_name(key[0])) + (f" #{k + 1}" if k else "")
            self.emit({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
            self.emit({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"sort_index": rank * 4096 + k}})
        return self.tids[tk]

    def place(self, lane: str, key, start: int, end: int, pid: int, keep: bool) -> _Span:
        """The sub-track of `perfetto._tracks` for a span taken in start order; the new open span."""
        stacks = self.stacks.setdefault((lane, key), [])
        for k, st in enumerate(stacks):
            while st and st[-1].end <= start:
                st.pop()
            if not st or end <= st[-1].end:
                break
        else:
            k, st = len(stacks), []
            stacks.append(st)
        span = _Span(start, end, keep)
        if st and st[-1].children is not None:
            st[-1].children.append((start, end))
        st.append(span)
        span.pid, span.tid = pid, self.tid(lane, key, k, pid)
        return span

    def row(self, lane: str, r: dict, pos: int) -> None:
        event = r["event"]
        if lane == "host":
            key, pid = (int(r["pid"]), int(r["thread"])), int(r["pid"])
            start, end = int(r["host_start_ns"]), int(r["host_end_ns"])
        else:
            key, pid = (_py(r["stream"]),), self.gpu_pid
            start, end = int(r["gpu_start_ns"]), int(r["gpu_end_ns"])
        timed = r["gpu_start_ns"] is not None and r["gpu_end_ns"] is not None
        after = event == "alloc" and r["alloc_phase"] == "after_enqueue"
        keep = event in ("exec", "call") or after
        span = self.place(lane, key, start, max(end, start), pid, keep)
        # values from Arrow are plain Python, and its strings valid UTF-8: `_py` has nothing to do
        args = {c: v for c in ARG_COLUMNS if (v := r[c]) is not None}
        if end < start:
            args["negative_duration_ns"] = end - start
        if (stream := _py(r["stream"])) is not None:
            args["stream"] = hex(stream)
        self.emit({"name": f"{_py(r['subgraph']) or '?'} {event}", "cat": event if lane == "host" else f"{event},gpu",
                   "ph": "X", "pid": pid, "tid": span.tid, "ts": self.us(start),
                   "dur": round(max(end - start, 0) / 1000, 3), "args": args})
        if event == "exec" and timed:  # the enqueue flow, once both of the row's slices are open
            other = self.waiting.pop(pos, None)
            if other is None:
                self.waiting[pos] = span
            else:
                self.flow("enqueue -> GPU", *((span, other) if lane == "host" else (other, span)))
        if lane == "gpu":
            return
        sub = (r["model"], r["subgraph"], r["thread"])
        if after:
            self.allocs.setdefault(sub + (r["call"],), []).append(span)
        if event == "call":
            prev = self.last_call.get(sub)
            fed = self.allocs.pop(sub + (prev,), []) if prev is not None else []
            if r["outputs"] == "preallocated":
                for a in fed:
                    self.flow("prealloc -> use", a, span)
            self.last_call[sub] = r["call"]
        if event in ("call", "fallback"):
            prev_shapes = self.last_shapes.get((r["model"], r["subgraph"]))
            self.last_shapes[(r["model"], r["subgraph"])] = r["input_shapes"]
            if r["shape_changed"]:
                a = {"input_shapes": _py(r["input_shapes"]), "previous_input_shapes": _py(prev_shapes),
                     "call": _py(r["call"]), "inference": _py(r["inference"])}
                self.emit({"name": f"{_py(r['subgraph']) or '?'} shape change", "cat": "shape", "ph": "i", "s": "t",
                           "pid": pid, "tid": span.tid, "ts": self.us(start),
                           "args": {k: v for k, v in a.items() if v is not None}})

    def flow(self, name: str, src: _Span, dst: _Span) -> None:
        heapq.heappush(self.flows, (max(src.end, dst.end), len(self.flows) + self.flow_id, name, src, dst))

    def finish_flows(self, bound: float) -> None:
        """Write the flows whose slices can gain no child any more (both end at or before `bound`)."""
        while self.flows and self.flows[0][0] <= bound:
            _, _, name, src, dst = heapq.heappop(self.flows)
            t0 = _inner_point(src.start, src.end, src.children)
            t1 = _inner_point(dst.start, dst.end, dst.children, not_before=t0)
            if t1 is None:
                self.dropped[name] = self.dropped.get(name, 0) + 1
                continue
            self.flow_id += 1
            for ph, sl, t in (("s", src, t0), ("f", dst, t1)):
                ev = {"name": name, "cat": "flow", "ph": ph, "id": self.flow_id, "pid": sl.pid, "tid": sl.tid,
                      "ts": self.us(t)}
                if ph == "f":
                    ev["bp"] = "e"
                self.emit(ev)


def write(out, fact: dict, ordered, meta: dict | None = None) -> dict:
    """Write the trace into the text stream `out`. `fact`: `facts(...)` of the capture; `ordered`:
    (Arrow table of COLUMNS and `_pos`, bound) in start order (`scan.Timeline.in_time_order`).
    Returns the flows left out because they would go backwards, by name."""
    w = _Writer(out, fact)
    heap: list = []  # (start, -end, rank, position, lane, row): the order of perfetto._tracks
    for table, bound in ordered:
        for r in table.to_pylist():
            pos, rank = r["_pos"], RANK.get(r["event"], 9)
            s, e = r["host_start_ns"], r["host_end_ns"]
            heapq.heappush(heap, (s, -max(e, s), rank, pos, 0, r))
            if r["gpu_start_ns"] is not None and r["gpu_end_ns"] is not None:
                s, e = r["gpu_start_ns"], r["gpu_end_ns"]
                heapq.heappush(heap, (s, -max(e, s), rank, pos, 1, r))
        while heap and heap[0][0] < bound:
            item = heapq.heappop(heap)
            w.row("gpu" if item[4] else "host", item[5], item[3])
        w.finish_flows(bound)
    while heap:
        item = heapq.heappop(heap)
        w.row("gpu" if item[4] else "host", item[5], item[3])
    w.finish_flows(float("inf"))
    w.flush()
    other = {"trtprof": json.loads(json.dumps(meta or {}, default=str)), "time_origin_ns": w.t0,
             "clock": "host CLOCK_MONOTONIC; ts in us from time_origin_ns",
             "gpu_ranges_with_one_time": fact["half_timed"], "flows_left_out_backwards": w.dropped}
    out.write('],"otherData":' + _dump(other) + "}")
    return w.dropped
