"""The recorder: takes records from the hooks, resolves their CUDA events, hands batches to a sink.

Why batches: converting GPU events and writing rows is the expensive part of a capture, so it never
happens inside a range. Records wait in memory until their end event has completed; `drain()` runs at
safe points (after a top-level inference, or when too many wait) and at the end, and passes resolved
records to the sink (the capture writer, which spills them to disk), so memory stays bounded.
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
    def __init__(self, sink, gpu=None, marks=None, batch: int = 4096, resolve_every: int = 256):
        self.sink = sink
        self.gpu = gpu
        self.marks = marks
        self.batch = batch
        self.resolve_every = resolve_every
        self.pid = os.getpid()
        self._seq = itertools.count()
        self._pending: deque = deque()  # (record, start_event, end_event)
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

    @staticmethod
    def derive(base: list, event: str, **slots) -> list:
        """A copy of `base` with other slots: rows of one call share most of their fields."""
        rec = base.copy()
        rec[_EVENT] = event
        for k, v in slots.items():
            rec[_INDEX[k]] = v
        return rec

    def add(self, rec: list, start_ev=None, end_ev=None) -> None:
        rec[0] = next(self._seq)
        rec[1] = self.pid
        if rec[2] is None:
            rec[2] = threading.get_ident()
        if end_ev is not None:
            self._pending.append((rec, start_ev, end_ev))
        else:
            self._ready.append(rec)
        if len(self._pending) + len(self._ready) >= 4 * self.batch:
            self.drain()  # no safe point came for a long time (engines called on their own)

    def safe_point(self) -> None:
        """Called outside every range (after a top-level inference): do the batched work if due.
        At least once a second what is ready is written even below a batch, so a SIGKILL loses
        little on a slow run."""
        if len(self._pending) >= self.resolve_every or len(self._ready) >= self.batch:
            self.drain()
        elif self._ready and now() - self._last_write > 1_000_000_000:
            self.drain(flush=True)

    def drain(self, wait: bool = False, flush: bool = False) -> None:
        """Resolve completed events (all of them if `wait`); write ready rows once a batch is full
        (always if `wait`), so the sink sees few, large batches."""
        if not self._lock.acquire(blocking=wait):
            return  # another thread is draining
        try:
            if wait and self._pending:
                self.gpu.synchronize()
            self._resolve()
            if self._ready and (wait or flush or len(self._ready) >= self.batch):
                out, self._ready = self._ready, []
                for rec in out:
                    rec[R.INDEX["input_shapes"]] = format_shapes(rec[R.INDEX["input_shapes"]])
                    rec[R.INDEX["shapes"]] = format_shapes(rec[R.INDEX["shapes"]])
                self.sink(out)
                self.rows += len(out)
                self._last_write = now()
        finally:
            self._lock.release()

    def _resolve(self) -> None:
        gs, ge = R.INDEX["gpu_start_ns"], R.INDEX["gpu_end_ns"]
        keep = deque()
        gpu = self.gpu
        while self._pending:
            item = self._pending.popleft()
            rec, ev0, ev1 = item
            if not gpu.done(ev1):
                keep.append(item)
                continue
            rec[gs] = gpu.to_host_ns(ev0) if ev0 is not None else None
            rec[ge] = gpu.to_host_ns(ev1)
            self._ready.append(rec)
        self._pending = keep
