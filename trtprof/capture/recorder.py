"""The recorder: takes what the hooks saw, resolves CUDA events, hands batches of rows to a sink.

Why deferred: building rows, converting GPU events and writing are the expensive part of a capture,
so none of it happens inside a range. The hooks hand over a finished range as it is (`defer`: an
emit function, the range's object and its events); it waits in memory until its events complete.
`drain()` runs at safe points (after a top-level inference, or when too many wait) and at the end:
it emits the ranges in the order they were deferred, converting their events to host time, and
passes the rows to the sink (the capture writer, which spills them to disk), so memory stays
bounded. An event shared by two ranges (the end of one subgraph, the start of the next) is owned by
the later one, which is emitted later: only its owner returns it to the pool.

Why no event may cost a row: an event that cannot be resolved (recorded while a stream was being
captured into a CUDA graph: "CUDA error: invalid argument", a GPU error) used to abort the drain,
and every row after it was lost. Now the range is emitted anyway with host times, null GPU times
and a note; `lost` counts such rows and `skipped` those whose events were not recorded at all
(`events.NOT_RECORDED`, during a stream capture), for one line each in the capture's notes.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque

from trtprof.capture import records as R
from trtprof.capture.events import NOT_RECORDED

now = time.perf_counter_ns
_INDEX = R.INDEX
_EVENT = R.INDEX["event"]
_IS, _SH, _NOTE = R.INDEX["input_shapes"], R.INDEX["shapes"], R.INDEX["note"]
CAPTURING_NOTE = "recorded while a CUDA graph was being captured: no GPU times"


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
        self._note = None  # set when a row's events failed to convert: row() adds it to that row
        self._bad = None
        self.lost = 0  # rows whose CUDA events could not be resolved (host times kept)
        self.lost_reason = None  # the first such failure, one line
        self.skipped = 0  # rows whose events were not recorded (stream capture in progress)
        self.error = None  # why recording stopped (a failed write), one line
        self.on_error = None  # called with `error` when recording stops: the instrumentation disables itself

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
        note = self._note
        if note is not None:  # set by the host-time conversion of this row's events: they failed
            self._note = None
            rec[_NOTE] = f"{rec[_NOTE]}; {note}" if rec[_NOTE] else note
            if note is CAPTURING_NOTE:
                self.skipped += 1
            else:
                self.lost += 1
        # the shapes as text, from the cache where it has them (no call for a shape seen before)
        cache = _SHAPE_TEXT
        s = rec[_IS]
        if s is not None:
            rec[_IS] = cache.get(s) or format_shapes(s)
        s = rec[_SH]
        if s is not None:
            rec[_SH] = cache.get(s) or format_shapes(s)
        # a tuple of plain values: the garbage collector stops tracking it at its first pass, so
        # rows waiting for a full batch do not make the process's full collections more frequent
        # (as lists they did: measured ~8 us per inference of extra GC time on the CI machine)
        self._ready.append(tuple(rec))

    def safe_point(self) -> None:
        """Called outside every range (after a top-level inference): do the batched work if due.
        At least once a second what is ready is written even below a batch, so a SIGKILL loses
        little on a slow run."""
        waiting = len(self._pending)
        # the once-a-second write is checked first: when many ranges wait to be resolved at every
        # safe point (a model of 32+ engines), the resolve branch alone would never write below a batch
        due = (waiting or self._ready) and now() - self._last_write > 1_000_000_000
        if due or waiting >= self.resolve_every or waiting + len(self._ready) >= self.batch:
            self.drain(flush=bool(due))

    def drain(self, wait: bool = False, flush: bool = False) -> None:
        """Resolve completed events (all of them if `wait`: the end of the capture, where a range
        whose events never complete is emitted with host times only); write ready rows once a batch
        is full (always if `wait`), so the sink sees few, large batches. Never during a stream
        capture: querying an event then can invalidate the graph being captured."""
        if os.getpid() != self.pid or self.error is not None:
            self._pending.clear()  # a forked child (the rows and the sink are the parent's), or
            self._ready = []  # recording stopped after a failure: nothing more is written
            return
        if not wait and self.gpu is not None and getattr(self.gpu, "capturing", False):
            return
        if not self._lock.acquire(blocking=wait):
            return  # another thread is draining
        try:
            if wait and self._pending and self.gpu is not None:
                try:
                    self.gpu.synchronize()
                except Exception as e:  # noqa: BLE001 - a GPU error: keep the rows, lose their GPU times
                    self._failed(e)
            self._resolve(force=wait)
            if not self._pending and not wait and self.gpu is not None:
                reanchor = getattr(self.gpu, "reanchor", None)  # the GPU caught up: a fresh anchor, once a second
                if reanchor is not None:
                    reanchor(now())
            if self._ready and (wait or flush or len(self._ready) >= self.batch):
                out, self._ready = self._ready, []
                self._last_write = now()
                try:
                    self.sink(out)
                except Exception as e:  # noqa: BLE001 - disk full, file too large, ...
                    self._broken(e, f"the timeline could not be written ({_line(e)})")
                    return
                self.rows += len(out)
        except Exception as e:  # noqa: BLE001 - never into the user's model call
            if wait:
                raise
            self._broken(e, f"recording failed ({_line(e)})")
        finally:
            self._lock.release()

    def _broken(self, e: BaseException, what: str) -> None:
        """Stop recording for good: the rows already written stay, the capture ends incomplete
        with `error` as its reason. Called inside a hook, so it must not raise."""
        self.error = f"{what}: recording stopped, the rows written before are kept"
        self._pending.clear()
        self._ready = []
        if self.on_error is not None:
            try:
                self.on_error(self.error)
            except Exception:  # noqa: BLE001
                pass

    def _failed(self, e: BaseException) -> str:
        """The note for rows that lost their GPU times to `e` (the first failure is kept for the
        capture's notes)."""
        if self.lost_reason is None:
            self.lost_reason = _line(e)
        return f"GPU times lost: its CUDA event could not be resolved ({self.lost_reason})"

    def _resolve(self, force: bool = False) -> None:
        """Emit the pending ranges, oldest first, up to the first one not ready yet (`force`: all)."""
        pending, gpu = self._pending, self.gpu
        owned = []
        rec = self
        lost = None  # the note of the range being emitted when its events failed before it

        def host(ev):
            # the note goes to the next row built (the one these GPU times are for): row() takes it
            if ev is None:
                return None
            if ev is NOT_RECORDED:
                rec._note = rec._note or CAPTURING_NOTE
                return None
            if lost is not None:
                rec._note = lost
                return None
            try:
                return gpu.host_ns(ev)
            except Exception as e:  # noqa: BLE001
                rec._note = rec._bad = rec._failed(e)
                return None

        try:
            while pending:
                emit, obj, events, own, gate = pending[0]
                if gate is not None and not gate.ready and not force:
                    break
                lost = None
                if events:
                    done = True
                    try:
                        for e in events:  # a loop, not all(<generator>): one frame less per range
                            if e is not None and e is not NOT_RECORDED and not gpu.done(e):
                                done = False
                                break
                    except Exception as e:  # noqa: BLE001 - an event the GPU cannot query
                        done, lost = None, self._failed(e)
                    if done is False:
                        if not force:
                            break
                        lost = self._failed(TimeoutError("not completed when the capture ended"))
                pending.popleft()
                self._note = self._bad = None
                try:
                    emit(self, obj, host if events else _no_events)
                    failed = lost is not None or self._bad is not None
                finally:
                    self._note = None
                if not failed:  # an event that failed is not reused
                    owned += own
        finally:
            for ev in owned:
                if ev is not None and ev is not NOT_RECORDED:
                    gpu.recycle(ev)


def _line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0][:160]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _no_events(ev):
    return None


_GS, _GE = R.INDEX["gpu_start_ns"], R.INDEX["gpu_end_ns"]


def _emit_record(recorder, obj, host) -> None:
    """emit for a ready-made record (`add`): GPU slots from its two events."""
    rec, ev0, ev1 = obj
    if ev1 is not None:
        rec[_GS], rec[_GE] = host(ev0), host(ev1)
    recorder.row(rec)
