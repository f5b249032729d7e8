"""Allocations made inside the C++ runtime's `execute_engine`, from the CUDA caching allocator's log.

Why this mechanism: the C++ runtime allocates outputs (and, in dynamic resource mode, the workspace)
inside one opaque op, out of reach of Python hooks. The caching allocator can keep its own history
(`torch.cuda.memory._record_memory_history`, no stack traces): each alloc / free / new cudaMalloc
segment with a timestamp, at a cost measured on the H100 as within run-to-run noise. We harvest that
history at safe points (`torch.cuda.memory._snapshot()`), convert its wall-clock microseconds to the
host clock, and attribute to each C++ engine call the entries inside its host interval.

What the entries of one call say: Torch-TensorRT 2.11 makes each output as
`at::empty(shape, fp32).to(dtype)`, so an fp16 output shows as alloc(fp32) alloc(fp16) free(fp32):
the freed block is staging for a cast kernel; a `segment_alloc` right before an alloc means the cache
had no block and cudaMalloc was called. With pre-allocated outputs on, the outputs for the next call
are made after the enqueue: such a call can allocate twice, before execution and after the enqueue
(`_pass_end` finds where the second pass begins).
"""
from __future__ import annotations

import bisect
import operator
import time
from dataclasses import dataclass

MAX_ENTRIES = 200_000


@dataclass
class Entry:
    host_ns: int
    action: str
    addr: int
    size: int
    stream: int


class AllocatorLog:
    """Start/stop the allocator history and hand out the entries that fall inside given calls."""

    def __init__(self, torch, max_entries: int = MAX_ENTRIES):
        self._torch = torch
        self.max_entries = max_entries
        self.active = False
        self.dropped = False
        self.failed = None  # why the history could not be started or read, one line
        self.clears = True  # clear the history after each harvest (when this torch can)
        self.skips = True  # ask the allocator not to record actions we never read (when it can)
        self.paused = False  # stopped between recorded inferences (sampling), to start again before the next

    def start(self, clear: bool = False) -> None:
        kw = {"enabled": "all", "context": None, "stacks": "python", "max_entries": self.max_entries}
        if clear:
            kw["clear_history"] = True
        if self.skips:
            kw["skip_actions"] = list(UNREAD_ACTIONS)
        try:
            self._torch.cuda.memory._record_memory_history(**kw)
        except (TypeError, RuntimeError):  # an older torch: no skip_actions, or not these actions
            if not self.skips:
                raise
            self.skips = False
            self.start(clear)
            return
        self.active, self.paused = True, False

    def start_safely(self) -> bool:
        """start(), on the hot path (inside the first C++ engine call): a torch without the history,
        or one that refuses it, costs the capture its C++ allocations, never the user's call."""
        try:
            self.start()
        except Exception as e:  # noqa: BLE001
            self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"
        return self.active

    def stop(self) -> None:
        if self.active:
            self._torch.cuda.memory._record_memory_history(enabled=None)  # the allocator empties it
            self.active = False

    def pause(self) -> None:
        """stop(), to be started again before the next recorded inference (harvest first: the
        history is emptied)."""
        self.stop()
        self.paused = True

    def harvest(self, calls: list) -> dict[int, list[Entry]]:
        """{index in `calls`: the entries inside that call's host interval [t0, t1]}, oldest first;
        `calls` sorted by t0, each harvested once.

        Why windows: the log holds every allocation of the process (PyTorch fallbacks, skipped
        inferences), ~450 entries per inference of the graph-broken BERT; converting them all cost
        ms per inference on the H100 host. The trace is in time order, so each call's entries are
        found by bisection and only those become `Entry` objects."""
        if not self.active or not calls:
            return {}
        snap = self._torch.cuda.memory._snapshot()
        offset = time.time_ns() - time.perf_counter_ns()
        if self.clears:
            # empty the ring buffer: the next snapshot converts only what came after this one.
            # Harvests run between engine calls, so no pending call has entries still to come.
            try:
                self.start(clear=True)
            except TypeError:  # a torch without clear_history
                self.clears = False
        dev = self._torch.cuda.current_device()
        traces = snap.get("device_traces") or []
        trace = traces[dev] if dev < len(traces) else []
        if len(trace) >= self.max_entries and trace[0].get("time_us", 0) * 1000 - offset > calls[0].t0:
            self.dropped = True  # the ring buffer wrapped: the oldest calls' entries are gone
        out: dict[int, list[Entry]] = {}
        taken = 0  # calls on two threads can overlap (the log has no thread id): an entry goes to one
        for i, c in enumerate(calls):
            # entry host time = time_us * 1000 - offset, inside [t0, t1]
            lo = max(taken, bisect.bisect_left(trace, -(-(c.t0 + offset) // 1000), key=_TIME))
            hi = bisect.bisect_right(trace, (c.t1 + offset) // 1000, lo=lo, key=_TIME)
            if hi > lo:
                taken = hi
                out[i] = [Entry(e["time_us"] * 1000 - offset, e.get("action", ""), e.get("addr", 0),
                                e.get("size", 0), e.get("stream", 0)) for e in trace[lo:hi]]
        return out


_TIME = operator.itemgetter("time_us")
# actions group_call never reads: not recorded at all where the allocator can skip them
UNREAD_ACTIONS = ("free_completed", "segment_free", "snapshot")


@dataclass
class Group:
    """Allocations of one output-creation pass inside a call."""

    start_ns: int
    end_ns: int
    phase: str
    bytes: int = 0
    count: int = 0
    new_segments: int = 0
    temp_bytes: int = 0
    temp_count: int = 0


def _signature(entries: list[Entry]) -> list[tuple]:
    return [(e.action, e.size) for e in entries]


def _pass_end(entries: list[Entry], outputs: int) -> int | None:
    """Index where a second output-creation pass starts, or None when there is one pass.

    Why count kept blocks: each pass makes `outputs` blocks that outlive the call (the outputs it
    returns, or the buffers it keeps for the next call); everything else it allocates is freed
    within the call (2.11's fp32 staging of `at::empty(fp32).to(fp16)`, a dynamic workspace). The
    pass after the enqueue also frees the previous call's buffers, so the two passes differ and
    cannot be found by comparing halves (comparing them merged a shape change with pre-allocation
    on into one row). The second pass starts at the first allocation after the first pass's
    `outputs`-th kept block."""
    kept, last = [], {}
    for i, e in enumerate(entries):
        if e.action == "alloc":
            last[e.addr] = i
            kept.append(i)
        elif e.action == "free_requested" and e.addr in last:
            kept.remove(last.pop(e.addr))
    if outputs <= 0 or len(kept) < 2 * outputs:
        return None
    nth = kept[outputs - 1]
    for j in range(nth + 1, len(entries)):
        if entries[j].action in ("alloc", "segment_alloc"):
            return j
    return None


def group_call(entries: list[Entry], prealloc: bool, expect_after: bool, outputs: int | None = None,
               output_allocator: bool = False) -> list[Group]:
    """Split one call's entries into allocation groups (one per output-creation pass), label phases.

    With pre-allocation on, a call makes outputs before execution and buffers for the next call
    after the enqueue: two passes, found by `outputs` (the number of tensors the call returned,
    see `_pass_end`); without that count, two identical halves. One pass with pre-allocation on is
    after the enqueue when the runtime could reuse buffers made earlier (`expect_after`: previous
    call pre-allocated with the same shapes), else before execution. In output-allocator mode
    (data-dependent shapes) the runtime sizes buffers inside the enqueue and copies them out
    after it: one group, phase `output_allocator`.
    """
    entries = [e for e in entries if e.action in ("alloc", "free_requested", "segment_alloc")]
    if not any(e.action == "alloc" for e in entries):
        return []
    half = len(entries) // 2
    cut = _pass_end(entries, outputs) if prealloc and outputs and not output_allocator else None
    if output_allocator:
        parts = [(entries, "output_allocator")]
    elif cut is not None:
        parts = [(entries[:cut], "before_exec"), (entries[cut:], "after_enqueue")]
    elif prealloc and outputs is None and len(entries) % 2 == 0 and half and \
            _signature(entries[:half]) == _signature(entries[half:]):
        parts = [(entries[:half], "before_exec"), (entries[half:], "after_enqueue")]
    else:
        parts = [(entries, "after_enqueue" if prealloc and expect_after else "before_exec")]
    groups = []
    for part, phase in parts:
        g = Group(part[0].host_ns, part[-1].host_ns, phase)
        live: dict[int, int] = {}
        pending_segment = False
        for e in part:
            if e.action == "segment_alloc":
                pending_segment = True
            elif e.action == "alloc":
                live[e.addr] = e.size
                g.count += 1
                g.new_segments += pending_segment
                pending_segment = False
            elif e.action == "free_requested" and e.addr in live:
                g.temp_bytes += live.pop(e.addr)
                g.temp_count += 1
        g.bytes = sum(live.values())
        groups.append(g)
    return groups
