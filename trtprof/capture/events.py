"""GPU timestamps from pooled CUDA events, converted to the host clock, and how ranges share them.

Why events and not a profiler: a CUDA event costs a few microseconds to record and nothing to keep
until we read it, so it can bracket every engine call without changing what is measured. Events only
give GPU-relative times; `anchor()` ties a reference event to a host timestamp once (after a
synchronize, so the GPU is idle and the event completes at once), and every other event becomes
``anchor_host + elapsed(ref, event)``. `cudaEventElapsedTime` returns a 32-bit float in ms, whose
resolution degrades past a few seconds, so the reference is moved forward to a recently resolved event
about once a second.

Why the clock is anchored again: the GPU's timer runs at its own rate. On the H100 machine event times
drifted from the host clock by 2.2 us per second (two ranks of `scripts/gpu_run.sh OUT ranks`,
2026-12-07: the end event's lead over the engine's last CUPTI kernel end grew linearly), so 30 s after
one anchor the windows sat ~60 us late, and on GPU-paced work (kernels back to back) a window edge
moved past the next kernel's start: each kernel went to the previous row. Moving the reference
forward keeps that error (its host time is converted, not measured). So at most once a second, at the
start of a top-level inference (where a loop that synchronizes after each inference leaves the GPU
idle, GPU-paced or not) and at safe points with no event pending, and only when the GPU has caught
up (the new event completes within `REANCHOR_ERR_NS` of its record, no synchronize), a fresh event is
tied to the host clock (`reanchor`): at the old conversion's time when the host window the event
completed in allows it, else at the window's nearest edge, so a fresh anchor never moves the windows
by more than the drift it measured. How far the old conversion had drifted is kept (`drift`), for
meta.json.

Why nothing is recorded during a stream capture: an event recorded while a stream is being captured
into a CUDA graph (`torch.cuda.graph`, Torch-TensorRT's CUDA-graph modes) becomes a node of the graph
and can never be resolved ("CUDA error: invalid argument"), and querying events then can invalidate
the capture. Asking CUDA at every record costs a driver call on the hot path, so the state is a
counter kept by wrapping `torch.cuda.CUDAGraph.capture_begin/capture_end` (`watch_captures`), the
one door every Python-level capture goes through; while it is non-zero, `record` returns
`NOT_RECORDED` (the row keeps its host times, with a note) and the recorder does not query events.
A capture begun elsewhere (C++, another library) is not seen by the counter. Where a wrong call
would raise into the user's code, CUDA itself is asked (`torch.cuda.is_current_stream_capturing()`,
once, not per event): before anchoring (a synchronize) and before synchronizing. Events recorded
during such a capture fail when they are resolved, and the recorder keeps those rows with host
times and a note too. `GpuClock.capturing` is the one answer the rest of trtprof reads.
"""
from __future__ import annotations

import functools
import time

_REBASE_MS = 1000.0
REANCHOR_NS = 1_000_000_000  # at most one fresh anchor a second (at safe points)
REANCHOR_ERR_NS = 10_000  # accepted when the event completed within this of its record (GPU idle) and the
# window it completed in is no wider (the polling thread was not preempted)


class _NotRecorded:
    """What `record` returns during a stream capture: an event that was never recorded."""

    def __repr__(self):
        return "NOT_RECORDED"


NOT_RECORDED = _NotRecorded()


class Captures:
    """How many CUDA-graph captures are in progress in this process (all threads)."""

    depth = 0


def watch_captures(torch) -> list:
    """Wrap CUDAGraph.capture_begin/capture_end so `Captures.depth` follows them; returns the
    (class, name, original) triples to restore. Nothing to wrap without torch.cuda.CUDAGraph."""
    cls = getattr(torch.cuda, "CUDAGraph", None)
    begin, end = (getattr(cls, n, None) for n in ("capture_begin", "capture_end"))
    if cls is None or begin is None or end is None:
        return []

    @functools.wraps(begin)
    def capture_begin(self, *args, **kwargs):
        Captures.depth += 1
        try:
            return begin(self, *args, **kwargs)
        except BaseException:
            Captures.depth -= 1
            raise

    @functools.wraps(end)
    def capture_end(self, *args, **kwargs):
        try:
            return end(self, *args, **kwargs)
        finally:
            Captures.depth = max(Captures.depth - 1, 0)

    saved = [(cls, "capture_begin", cls.__dict__.get("capture_begin", begin)),
             (cls, "capture_end", cls.__dict__.get("capture_end", end))]
    cls.capture_begin, cls.capture_end = capture_begin, capture_end
    return saved


class GpuClock:
    def __init__(self, torch):
        self._torch = torch
        self._Event = torch.cuda.Event
        # the C-level record: torch.cuda.Event.record adds a Python frame (and, without a stream,
        # a torch.cuda.current_stream() call, ~5 us on the H100 machine's host)
        base = getattr(torch._C, "_CudaEventBase", torch.cuda.Event)
        self._record = base.record
        # and the C-level query / elapsed time: torch.cuda.Event's own add a Python frame each, and
        # the drain calls both for every event (53 of each per graph-broken BERT inference)
        self._query, self._elapsed = base.query, base.elapsed_time
        self.done = self._query  # done(ev): the C query itself, no method frame (the drain asks per event)
        self._raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        self._device = getattr(torch._C, "_cuda_getDevice", None)
        self._streams: dict = {}
        self._pool: list = []
        self._ref = None
        self._ref_host = 0
        self.anchor_error_ns = None  # half-width of the window the anchor event fell into
        self.on_anchor = None  # called once right after the first anchor (the GPU is idle then)
        self._anchored_at = 0  # host ns of the latest anchor
        self.next_anchor_ns = 1 << 62  # when a fresh anchor may be tried (callers compare, then call)
        # fresh anchors after the first: how many, the worst half-width, and the drift each found
        # (host time measured minus the time the previous anchor's conversion gave, ns; per second)
        self.drift = {"reanchors": 0, "max_error_ns": 0, "last_ns": None, "max_abs_ns": 0,
                      "ns_per_s": None, "tries": 0, "corrected_ns": 0}

    def anchor(self) -> None:
        """Tie a reference event to the host clock. Synchronizes: call once, before timing.

        The event completes after `record()` began and before the first `query()` that sees it
        done, and after the last one that did not; polling makes that window a few microseconds
        wide. The best of several tries is kept; its half-width is the anchoring error."""
        sync = self._torch.cuda.synchronize
        best = None
        for _ in range(5):
            ev = self._Event(enable_timing=True)
            sync()
            lo, hi = self._tie(ev)
            if best is None or hi - lo < best[2] - best[1]:
                best = (ev, lo, hi)
        self._ref, lo, hi = best
        self._ref_host = self._anchored_at = (lo + hi) // 2
        self.next_anchor_ns = self._anchored_at + REANCHOR_NS
        self.anchor_error_ns = (hi - lo) // 2
        hook, self.on_anchor = self.on_anchor, None
        if hook is not None:  # once: the kernel-clock calibration (capture/calibrate.py), GPU idle now
            hook()

    def _tie(self, ev, limit_ns: int | None = None):
        """Record `ev` on the current stream and poll it: (lo, hi), the host window it completed in
        (after the last query that saw it pending, before the first that saw it done); None when
        it is still pending `limit_ns` after the record."""
        start = lo = time.perf_counter_ns()
        self._record(ev, self.current_stream())
        while True:
            tq = time.perf_counter_ns()
            if self._query(ev):
                return lo, time.perf_counter_ns()
            if limit_ns is not None and tq - start > limit_ns:
                return None
            lo = tq

    def reanchor(self, now_ns: int) -> bool:
        """At a safe point: a fresh reference event tied to the host clock, if a second has passed
        since the last anchor and the GPU has caught up (no synchronize: the event must complete
        within REANCHOR_ERR_NS of its record, polled that long at most). True when it took."""
        if self._ref is None or now_ns - self._anchored_at < REANCHOR_NS or Captures.depth:
            return False
        self._anchored_at = now_ns  # tried: the next try a second later, whatever comes of this one
        self.next_anchor_ns = now_ns + REANCHOR_NS
        if self._stream_capturing():  # a capture trtprof did not see begin: no event now
            return False
        d = self.drift
        d["tries"] += 1
        ev = self._pool.pop() if self._pool else self._Event(enable_timing=True)
        got = self._tie(ev, REANCHOR_ERR_NS)
        if got is None or got[1] - got[0] > REANCHOR_ERR_NS:
            # the GPU is busy, or this thread was preempted while it polled (the window is wider than
            # the error allowed): keep the reference there is
            self._pool.append(ev)
            return False
        lo, hi = got
        was = self._ref_host + round(self._elapsed(self._ref, ev) * 1e6)
        # the event completed inside [lo, hi]: keep the old conversion's time where the window allows
        # it, else the nearest time it allows. Taking the window's middle instead moved every later
        # window by up to its half-width (5 us) on a GPU with no drift to speak of, enough to push a
        # fallback's 2 us kernel out of its bracket (H100, tests/gpu, 2026-12-07)
        host = min(max(was, lo), hi)
        mid = (lo + hi) // 2
        old, old_host = self._ref, self._ref_host
        self._ref, self._ref_host, self._anchored_at = ev, host, host
        self.next_anchor_ns = host + REANCHOR_NS
        if old is not None:
            self._pool.append(old)
        d["reanchors"] += 1
        d["max_error_ns"] = max(d["max_error_ns"], (hi - lo) // 2)
        d["last_ns"] = mid - was  # measured drift, to within the window's half-width
        d["max_abs_ns"] = max(d["max_abs_ns"], abs(mid - was))
        d["corrected_ns"] += host - was  # what the conversion was moved by, in all
        if host > old_host:
            d["ns_per_s"] = round((mid - was) * 1e9 / (host - old_host), 1)
        return True

    @property
    def anchored(self) -> bool:
        return self._ref is not None

    def record(self, stream=None):
        """Record a pooled event on `stream` (the current stream when None).

        The first call anchors the clock (one synchronize), so CUDA is not touched before the
        profiled code first runs an instrumented range. During a stream capture: nothing is
        recorded (`NOT_RECORDED`), and the clock is not anchored (a synchronize would break it)."""
        if Captures.depth:
            return NOT_RECORDED
        if self._ref is None:
            if self._stream_capturing():  # a capture trtprof did not see begin: no synchronize now
                return NOT_RECORDED
            self.anchor()
        ev = self._pool.pop() if self._pool else self._Event(enable_timing=True)
        self._record(ev, stream if stream is not None else self.current_stream())
        return ev

    def current_stream(self):
        """The current stream's torch object, cached by raw handle: torch.cuda.current_stream()
        costs microseconds (device-index resolution in Python), two C calls and a dict lookup don't."""
        if self._raw_stream is None or self._device is None:
            return self._torch.cuda.current_stream()
        handle = self._raw_stream(self._device())
        s = self._streams.get(handle)
        if s is None:
            s = self._streams[handle] = self._torch.cuda.current_stream()
        return s

    @property
    def capturing(self) -> bool:
        """A CUDA-graph capture in progress: the counter, and CUDA's answer for the current stream
        (not on the hot path: read by the recorder before it queries events)."""
        return Captures.depth > 0 or self._stream_capturing()

    def _stream_capturing(self) -> bool:
        ask = getattr(self._torch.cuda, "is_current_stream_capturing", None)
        try:
            return bool(ask()) if ask is not None else False
        except Exception:  # noqa: BLE001 - a CUDA error here is not ours to raise
            return False

    def host_ns(self, ev) -> int:
        """Host-clock ns of a completed event (which stays usable: `recycle` returns it to the pool)."""
        if ev is None:
            return None
        ms = self._elapsed(self._ref, ev)
        host = self._ref_host + round(ms * 1e6)
        if ms > _REBASE_MS:  # move the reference forward; `recycle` keeps it out of the pool
            self._ref, self._ref_host = ev, host
        return host

    def recycle(self, ev) -> None:
        """Give a converted event back to the pool, unless it became the reference."""
        if ev is not self._ref:
            self._pool.append(ev)

    def synchronize(self) -> None:
        if self._ref is not None and not self.capturing:
            self._torch.cuda.synchronize()


# -- CUDA events of subgraph ranges (full level) --------------------------------------------------
def start_event(ins, gpu, stream):
    """The start event of a range on `stream`: the previous range's end event when that ended on the
    same stream inside the same torch.fx graph call (nothing else can have run there in between),
    else a new one. One event instead of two at each boundary between subgraphs; the range that
    takes the event over owns it (returns it to the pool once emitted)."""
    st = ins.stacks
    last = st.last_end
    if last is not None:
        st.last_end = None
        if last[0] is stream:
            return last[1]
    return gpu.record(stream)


def adopt(ins, frame):
    """A subgraph range with events: the inference it is in (if any) takes its GPU span."""
    inf = ins.stacks.inferences
    frame.parent = inf[-1] if inf else None
    return frame.parent


def end_event(ins, frame, stream, ev1) -> bool:
    """After a subgraph range on the caller stream ended: offer its end event to the next range.
    Returns whether it was offered (then this range does not own it: the taker does, or nobody
    and the event is simply freed)."""
    inf = ins.stacks.inferences  # adopt(), inline: this runs at the end of every subgraph range
    parent = frame.parent = inf[-1] if inf else None
    if parent is not None and parent.info.shareable:
        ins.stacks.last_end = (stream, ev1)
        return True
    return False


def gpu_start(host, ev0, t0):
    """A range's GPU start on the host clock: its start event, but never before the host began the
    range. A shared start event completes when the previous range's work ended on the GPU, which is
    before this range was even called when the GPU was waiting for the host; an event of its own
    would have completed just after `t0` then. So: max(previous work done, host call)."""
    gs = host(ev0)
    return t0 if gs is not None and gs < t0 else gs


def span(frame, gs, ge) -> None:
    """Widen the parent inference's GPU span with a subgraph range's (at emit time)."""
    p = frame.parent
    if p is not None and gs is not None:
        if p.gs is None or gs < p.gs:
            p.gs = gs
        if p.ge is None or ge > p.ge:
            p.ge = ge
