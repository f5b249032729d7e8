"""Timeline -> Chrome trace-event JSON, the format the Perfetto UI and chrome://tracing both open.

Why this format: it needs no extra dependency, Perfetto and chrome://tracing read it as is, and it can
show what a table cannot: which GPU execution an enqueue launched, and which pre-allocation fed which
call (flow arrows). Layout:

* host lanes: one process per pid, one thread track per Python thread, a complete event ("X") per range;
* GPU lanes: a synthetic "GPU" process, one track per CUDA stream, a complete event per GPU interval;
* flows ("s" -> "f", `"bp": "e"`): enqueue (exec host slice) -> its GPU slice, and after_enqueue
  allocation -> the call that uses the buffers it made; a flow's finish is never before its start (one
  that would be is left out and counted in otherData "flows_left_out_backwards");
* shape changes: instant events ("i", thread scope) at the start of the call whose inputs changed.

Viewers stack the slices of one track by nesting, so a slice that partially overlaps another on its
track is drawn wrongly or dropped. Host ranges on a thread nest by construction; GPU intervals on a
stream usually do, but can cross (several threads on one stream, event-clock rounding). `_tracks`
puts every slice on the first sub-track where it nests and opens a new sub-track ("stream 0x.. #2")
where it does not; `check_nesting` verifies the result from the JSON alone, the way a viewer reads it.

Times are µs floats with 3 decimals (exact ns) relative to the earliest timestamp of the timeline. All
ids given to viewers (pid, tid) are small ints: Python thread idents and stream handles are 64-bit
and do not fit the 32-bit tids viewers expect; the real values are in the track names.
"""
from __future__ import annotations

import json
from collections import defaultdict

import pandas as pd

RANK = {"inference": 0, "fallback": 1, "call": 2, "exec": 3, "alloc": 4}  # parent first on equal spans
ARG_COLUMNS = ["model", "inference", "call", "runtime", "input_shapes", "shapes", "bytes", "prealloc",
               "alloc_phase", "outputs", "shape_changed", "reallocated", "exclude", "note", "seq"]


def _py(v):
    """A cell as a plain JSON-able value, None for nulls; strings safe for strict UTF-8 parsers."""
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, str):  # lone surrogates cannot be written as UTF-8: replace them
        return v.encode("utf-8", "replace").decode("utf-8")
    return v


def _tracks(spans: list[tuple[int, int, int]]) -> tuple[list[int], list[int]]:
    """For (start, end, rank) spans: a sub-track index each, so that slices on one sub-track nest or are
    disjoint, and the enclosing span on that sub-track (-1 for none). Equal spans: lower rank outside."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], -spans[i][1], spans[i][2], i))
    stacks: list[list[int]] = []  # per sub-track: the open spans, innermost last
    sub, parent = [0] * len(spans), [-1] * len(spans)
    for i in order:
        start, end, _ = spans[i]
        for k, st in enumerate(stacks):
            while st and spans[st[-1]][1] <= start:
                st.pop()
            if not st or end <= spans[st[-1]][1]:
                break
        else:
            k, st = len(stacks), []
            stacks.append(st)
        parent[i] = st[-1] if st else -1
        st.append(i)
        sub[i] = k
    return sub, parent


def _inner_point(start: int, end: int, children: list[tuple[int, int]], not_before: int | None = None) -> int | None:
    """A ns inside [start, end] but strictly inside no child, so a flow bound there binds to this slice.
    With `not_before`: the earliest such ns at or after it, None when the slice has none."""
    if not_before is None:
        cursor = start
        for c0, c1 in sorted(children):
            if c0 - cursor >= 2:
                return cursor + 1
            cursor = max(cursor, c1)
        return cursor + 1 if end - cursor >= 2 else start
    if not_before > end:
        return None
    if not_before <= start:
        return _inner_point(start, end, children)
    t = not_before
    for c0, c1 in sorted(children):  # inside a child: move to its end, which no child holds but the next's start
        if c0 <= t < c1:
            t = c1
    return t if t < end else None


class _Builder:
    def __init__(self, df: pd.DataFrame):
        self.rows = df.to_dict("records")
        starts = pd.concat([df["host_start_ns"], df["gpu_start_ns"].dropna()])
        self.t0 = int(starts.min()) if len(starts) else 0
        self.meta: list[dict] = []
        self.slices: dict[tuple[str, int], dict] = {}  # (lane, row position) -> "X" event
        self.spans: dict[int, tuple[tuple[int, int], list]] = {}  # id(event) -> (ns span, children spans)
        self.other: list[dict] = []  # flows and instants
        self.next_tid = self.flow_id = 0
        self.dropped: dict[str, int] = {}  # flow name -> arrows left out because they would go backwards

    def us(self, ns: int) -> float:
        return round((ns - self.t0) / 1000, 3)

    def add_lanes(self, lane: str, rows: list[tuple[int, tuple, int, int]], pid_of, name_of) -> None:
        """rows: (row position, track key, start ns, end ns) for one kind of lane (host or gpu)."""
        by_key = defaultdict(list)
        for r in rows:
            by_key[r[1]].append(r)
        for key in sorted(by_key, key=lambda k: min(r[2] for r in by_key[k])):
            group = by_key[key]
            spans = [(s, max(e, s), RANK.get(self.rows[pos]["event"], 9)) for pos, _, s, e in group]
            subs, parents = _tracks(spans)
            tids = {}
            for k in sorted(set(subs)):
                tids[k] = self.next_tid
                self.next_tid += 1
                self.meta_event("thread_name", pid_of(key), tids[k], name=name_of(key) + (f" #{k + 1}" if k else ""))
                self.meta_event("thread_sort_index", pid_of(key), tids[k], sort_index=tids[k])
            events = [self.slice(lane, pos, pid_of(key), tids[k], s, e) for (pos, _, s, e), k in zip(group, subs)]
            for ev, p in zip(events, parents):
                if p >= 0:
                    self.spans[id(events[p])][1].append(self.spans[id(ev)][0])

    def slice(self, lane: str, pos: int, pid: int, tid: int, start: int, end: int) -> dict:
        row = self.rows[pos]
        args = {c: v for c in ARG_COLUMNS if (v := _py(row[c])) is not None}
        if end < start:
            args["negative_duration_ns"] = end - start
        if (stream := _py(row["stream"])) is not None:
            args["stream"] = hex(stream)
        event = row["event"]
        ev = {"name": f"{_py(row['subgraph']) or '?'} {event}", "cat": event if lane == "host" else f"{event},gpu",
              "ph": "X", "pid": pid, "tid": tid, "ts": self.us(start), "dur": round(max(end - start, 0) / 1000, 3),
              "args": args}
        self.slices[(lane, pos)] = ev
        self.spans[id(ev)] = ((start, max(end, start)), [])
        return ev

    def meta_event(self, kind: str, pid: int, tid: int, **args) -> None:
        self.meta.append({"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": args})

    def flow(self, name: str, src: dict, dst: dict) -> None:
        """An arrow from slice `src` to slice `dst`, each end bound inside its slice, outside its children.
        The finish is never before the start: where `dst` ends before `src` begins (a GPU start
        before its enqueue, in a timeline the loader did not clamp), the arrow is left out and counted."""
        (s0, e0), k0 = self.spans[id(src)]
        (s1, e1), k1 = self.spans[id(dst)]
        t0 = _inner_point(s0, e0, k0)
        t1 = _inner_point(s1, e1, k1, not_before=t0)
        if t1 is None:
            self.dropped[name] = self.dropped.get(name, 0) + 1
            return
        self.flow_id += 1
        for ph, sl, t in (("s", src, t0), ("f", dst, t1)):
            ev = {"name": name, "cat": "flow", "ph": ph, "id": self.flow_id, "pid": sl["pid"], "tid": sl["tid"],
                  "ts": self.us(t)}
            if ph == "f":
                ev["bp"] = "e"
            self.other.append(ev)

    def events(self) -> list[dict]:
        """Metadata, then slices parents first (viewers nest equal-start slices in file order), then the rest."""
        xs = sorted(self.slices.values(),
                    key=lambda ev: (self.spans[id(ev)][0][0], -self.spans[id(ev)][0][1],
                                    RANK.get(ev["cat"].split(",")[0], 9)))
        return self.meta + xs + self.other


def build_trace(df: pd.DataFrame, meta: dict | None = None) -> dict:
    """The trace as a dict {"traceEvents": [...], "otherData": {...}}; `to_json` makes it text."""
    meta = meta if meta is not None else df.attrs.get("trtprof", {})
    df = df.reset_index(drop=True)
    for c in df.columns[df.dtypes == object]:  # hand-made frames may hold what UTF-8 cannot encode
        df[c] = pd.Series([_py(v) for v in df[c]], dtype=object)
    b = _Builder(df)
    host_pids = sorted({int(p) for p in df["pid"]}) or [0]
    gpu_pid = max(host_pids) + 1
    b.next_tid = gpu_pid + 1  # tids apart from every pid: viewers treat tid == pid as a main thread
    for i, pid in enumerate(host_pids):
        b.meta_event("process_name", pid, 0, name=f"host pid {pid}")
        b.meta_event("process_sort_index", pid, 0, sort_index=i)
    threads: dict[int, int] = {}
    for t in df.sort_values("host_start_ns", kind="stable")["thread"]:
        threads.setdefault(int(t), len(threads) + 1)
    host = [(pos, (int(r["pid"]), int(r["thread"])), int(r["host_start_ns"]), int(r["host_end_ns"]))
            for pos, r in enumerate(b.rows)]
    b.add_lanes("host", host, lambda k: k[0], lambda k: f"thread {threads[k[1]]} (ident {k[1]})")
    gpu = [(pos, (_py(r["stream"]),), int(r["gpu_start_ns"]), int(r["gpu_end_ns"]))
           for pos, r in enumerate(b.rows) if _py(r["gpu_start_ns"]) is not None and _py(r["gpu_end_ns"]) is not None]
    if gpu:
        b.meta_event("process_name", gpu_pid, 0, name="GPU")
        b.meta_event("process_sort_index", gpu_pid, 0, sort_index=len(host_pids))
        b.add_lanes("gpu", gpu, lambda k: gpu_pid, lambda k: _stream_name(k[0]))
    _flows(b, df)
    _shape_changes(b, df)
    half_timed = int((df["gpu_start_ns"].isna() != df["gpu_end_ns"].isna()).sum())
    return {"traceEvents": b.events(),
            "otherData": {"trtprof": json.loads(json.dumps(meta or {}, default=str)), "time_origin_ns": b.t0,
                          "clock": "host CLOCK_MONOTONIC; ts in us from time_origin_ns",
                          "gpu_ranges_with_one_time": half_timed, "flows_left_out_backwards": b.dropped}}


def _stream_name(handle: int | None) -> str:
    if handle is None:
        return "stream ?"
    return f"stream {handle:#x}" + (" (legacy default)" if handle == 0 else "")


def after_enqueue_targets(df: pd.DataFrame) -> list[tuple[int, int]]:
    """(alloc row, call row) positions: an after_enqueue allocation in call N feeds call N+1 of the same
    (model, subgraph, thread) when that call ran on pre-allocated outputs."""
    df = df.reset_index(drop=True)
    calls = df[df["event"] == "call"].sort_values("call")
    nxt = {}
    for key, g in calls.groupby(["model", "subgraph", "thread"], sort=False, dropna=False):
        idx = list(g.index)
        for a, b in zip(idx, idx[1:]):
            nxt[key + (int(df.at[a, "call"]),)] = b
    out = []
    allocs = df[(df["event"] == "alloc") & (df["alloc_phase"] == "after_enqueue")]
    for pos, r in allocs.iterrows():
        target = nxt.get((r["model"], r["subgraph"], r["thread"], int(r["call"])))
        if target is not None and df.at[target, "outputs"] == "preallocated":
            out.append((pos, target))
    return out


def _flows(b: _Builder, df: pd.DataFrame) -> None:
    for pos in df.index[df["event"] == "exec"]:
        if ("gpu", pos) in b.slices:
            b.flow("enqueue -> GPU", b.slices[("host", pos)], b.slices[("gpu", pos)])
    for a, c in after_enqueue_targets(df):
        b.flow("prealloc -> use", b.slices[("host", a)], b.slices[("host", c)])


def _shape_changes(b: _Builder, df: pd.DataFrame) -> None:
    main = df[df["event"].isin(["call", "fallback"])].sort_values("host_start_ns")
    prev = main.groupby(["model", "subgraph"], dropna=False)["input_shapes"].shift()
    for pos in main.index[main["shape_changed"].fillna(False).astype(bool)]:
        sl = b.slices[("host", pos)]
        args = {"input_shapes": _py(df.at[pos, "input_shapes"]), "previous_input_shapes": _py(prev.at[pos]),
                "call": _py(df.at[pos, "call"]), "inference": _py(df.at[pos, "inference"])}
        b.other.append({"name": f"{_py(df.at[pos, 'subgraph']) or '?'} shape change", "cat": "shape", "ph": "i",
                         "s": "t", "pid": sl["pid"], "tid": sl["tid"], "ts": sl["ts"],
                         "args": {k: v for k, v in args.items() if v is not None}})


def to_json(trace: dict) -> str:
    """Strict JSON (no NaN), UTF-8 text kept as is: some trace parsers reject \\ud83d-style escapes."""
    return json.dumps(trace, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def write_trace(df: pd.DataFrame, out, meta: dict | None = None) -> None:
    """Write the trace of `df` into the text stream `out` (the caller owns the file)."""
    out.write(to_json(build_trace(df, meta)))


# -- checks, from the JSON alone (used by the tests; cheap enough to run on any trace) ----------------
def _ns(us: float) -> int:
    return round(us * 1000)


def check_nesting(trace: dict) -> list[str]:
    """Problems a viewer would hit, one line each: on any (pid, tid), slices that partially overlap
    (instants count as empty slices), and negative times or durations. Empty when the trace is sound.

    Reads slices as viewers do: ordered by start, equal starts in file order (the first is the parent),
    so a longer slice written after a shorter one with the same start counts as crossing it."""
    tracks = defaultdict(list)
    problems = []
    for ev in trace["traceEvents"]:
        if ev.get("ph") == "X" or (ev.get("ph") == "i" and ev.get("s", "t") == "t"):
            start, dur = _ns(ev["ts"]), _ns(ev.get("dur", 0))
            if start < 0 or dur < 0:
                problems.append(f"{ev['name']!r} at {ev['ts']}us has a negative time or duration")
            tracks[(ev["pid"], ev["tid"])].append((start, start + dur, ev["name"]))
    for (pid, tid), spans in tracks.items():
        stack: list[tuple[int, int, str]] = []
        for s, e, name in sorted(spans, key=lambda x: x[0]):  # stable: file order on equal starts
            while stack and stack[-1][1] <= s:
                stack.pop()
            if stack and e > stack[-1][1]:
                o = stack[-1]
                problems.append(f"pid {pid} tid {tid}: {name!r} [{s}, {e}] ns crosses {o[2]!r} [{o[0]}, {o[1]}] ns")
                continue
            stack.append((s, e, name))
    return problems


def check_flows(trace: dict) -> list[str]:
    """Flow problems, one line each: a start without exactly one finish (or the reverse), a finish
    before its start, a finish not bound to its enclosing slice, an end outside every slice of its track."""
    slices = defaultdict(list)
    for ev in trace["traceEvents"]:
        if ev.get("ph") == "X":
            s = _ns(ev["ts"])
            slices[(ev["pid"], ev["tid"])].append((s, s + _ns(ev["dur"])))
    ends = defaultdict(lambda: {"s": [], "f": []})
    for ev in trace["traceEvents"]:
        if ev.get("ph") in ("s", "f"):
            ends[ev["id"]][ev["ph"]].append(ev)
    problems = []
    for fid, e in ends.items():
        if len(e["s"]) != 1 or len(e["f"]) != 1:
            problems.append(f"flow {fid}: {len(e['s'])} start(s) and {len(e['f'])} finish(es)")
            continue
        (s,), (f,) = e["s"], e["f"]
        if _ns(f["ts"]) < _ns(s["ts"]):
            problems.append(f"flow {fid}: finishes at {f['ts']}us, before it starts at {s['ts']}us")
        if (s["name"], s.get("cat")) != (f["name"], f.get("cat")):
            problems.append(f"flow {fid}: start and finish differ in name or category")
        if f.get("bp") != "e":
            problems.append(f"flow {fid}: finish is not bound to its enclosing slice (bp 'e')")
        for ev in (s, f):
            t = _ns(ev["ts"])
            if not any(a <= t <= b for a, b in slices[(ev["pid"], ev["tid"])]):
                problems.append(f"flow {fid}: {ev['ph']} at {ev['ts']}us is inside no slice of its track")
    return problems
