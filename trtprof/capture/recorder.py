"""The recorder: takes what the hooks saw, resolves CUDA events, hands batches of rows to a sink.

Why deferred: building rows, converting GPU events and writing are the expensive part of a capture,
so none of it happens inside a range. The hooks hand over a finished range as it is (`defer`: an
emit function, the range's object and its events); it waits in memory until its events complete.
`drain()` runs at safe points (after a top-level inference, or when too many wait) and at the end:
it emits the ranges in the order they were deferred, converting their events to host time, and
passes the rows to the sink (the capture writer, which spills them to disk), so memory stays
bounded. An event shared by two ranges (the end of one subgraph, the start of the next) is owned by
the later one, which is emitted later: only its owner returns it to the pool.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque

from trtprof.capture import records as R

now = time.perf_counter_ns
_INDEX = R.INDEX
_EVENT = R.INDEX["event"]
_IS, _SH = R.INDEX["input_shapes"], R.INDEX["shapes"]


_SHAPE_TEXT: dict = {}


def format_shapes(shapes) -> str:
    """((1, 128), (1, 128)) -> '(1,128);(1,128)'; the hot path keeps raw torch.Size tuples.
    Cached: a run sees few distinct shape tuples."""
    if shapes is None or isinstance(shapes, str):
        return shapes
    text = _SHAPE_TEXT.get(shapes)
    if text is None:
        text = ";".join("(" + ",".join(str(int(d)) for d in s) + ")" for s in shapes)
        if len(_SHAPE_TEXT) < 10_000:
            _SHAPE_TEXT[shapes] = text
    return text


class Recorder:
    def __init__(self, sink, gpu=None, marks=None, batch: int = 4096, resolve_every: int = 32):
        self.sink = sink
        self.gpu = gpu
        self.marks = marks
        self.batch = batch
        self.resolve_every = resolve_every
        self.pid = os.getpid()
        self._seq = itertools.count()
        self._pending: deque = deque()  # (emit, object, events, owned events, gate) of finished ranges
        self._ready: list = []
        self._lock = threading.Lock()
        self.rows = 0
        self._last_write = now()

    @staticmethod
    def new(event: str, **slots) -> list:
        rec = R.blank()
        rec[_EVENT] = event
        for k, v in slots.items():
            rec[_INDEX[k]] = v
        return rec

    def add(self, rec: list, start_ev=None, end_ev=None) -> None:
        """A ready-made record (its GPU slots filled from the two events once they complete)."""
        if rec[2] is None:
            rec[2] = threading.get_ident()
        evs = (start_ev, end_ev) if end_ev is not None else ()
        self.defer(_emit_record, (rec, start_ev, end_ev), evs, evs)

    def defer(self, emit, obj, events: tuple = (), owned: tuple = (), gate=None) -> None:
        """Hot path: keep a finished range. Ranges are emitted in the order they were deferred:
        `emit(recorder, obj, host)` builds the rows (`row()`) once all `events` have completed and
        `gate.ready` (if a gate is given) is true; `host(ev)` gives an event's time on the host clock
        (None for None). Only `owned` events go back to the pool afterwards: an event shared with a
        later range (the start of the next subgraph) is owned by that range, which is emitted later."""
        self._pending.append((emit, obj, events, owned, gate))
        if len(self._pending) >= 4 * self.batch:
            self.drain()  # no safe point came for a long time (engines called on their own)

    def row(self, rec: list) -> None:
        """Called by emit functions (inside drain): number a finished row and queue it for the sink.
        The emit function sets the thread slot: drain may run on another thread than the range."""
        rec[0] = next(self._seq)
        rec[1] = self.pid
        rec[_IS] = format_shapes(rec[_IS])
        rec[_SH] = format_shapes(rec[_SH])
        # a tuple of plain values: the garbage collector stops tracking it at its first pass, so
        # rows waiting for a full batch do not make the process's full collections more frequent
        # (as lists they did: measured ~8 us per inference of extra GC time on the CI machine)
        self._ready.append(tuple(rec))

    def safe_point(self) -> None:
        """Called outside every range (after a top-level inference): do the batched work if due.
        At least once a second what is ready is written even below a batch, so a SIGKILL loses
        little on a slow run."""
        waiting = len(self._pending)
        if waiting >= self.resolve_every or waiting + len(self._ready) >= self.batch:
            self.drain()
        elif (self._ready or self._pending) and now() - self._last_write > 1_000_000_000:
            self.drain(flush=True)

    def drain(self, wait: bool = False, flush: bool = False) -> None:
        """Resolve completed events (all of them if `wait`); write ready rows once a batch is full
        (always if `wait`), so the sink sees few, large batches."""
        if not self._lock.acquire(blocking=wait):
            return  # another thread is draining
        try:
            if wait and self._pending and self.gpu is not None:
                self.gpu.synchronize()
            self._resolve()
            if self._ready and (wait or flush or len(self._ready) >= self.batch):
                out, self._ready = self._ready, []
                self.sink(out)
                self.rows += len(out)
                self._last_write = now()
        finally:
            self._lock.release()

    def _resolve(self) -> None:
        """Emit the pending ranges, oldest first, up to the first one not ready yet."""
        pending, gpu = self._pending, self.gpu
        owned = []
        try:
            while pending:
                emit, obj, events, own, gate = pending[0]
                if gate is not None and not gate.ready:
                    break
                if events and not all(e is None or gpu.done(e) for e in events):
                    break
                pending.popleft()
                emit(self, obj, gpu.host_ns if events else _no_events)
                owned += own
        finally:
            for ev in owned:
                if ev is not None:
                    gpu.recycle(ev)


def _no_events(ev):
    return None


_GS, _GE = R.INDEX["gpu_start_ns"], R.INDEX["gpu_end_ns"]


def _emit_record(recorder, obj, host) -> None:
    """emit for a ready-made record (`add`): GPU slots from its two events."""
    rec, ev0, ev1 = obj
    if ev1 is not None:
        rec[_GS], rec[_GE] = host(ev0), host(ev1)
    recorder.row(rec)
