"""A stand-in `torch` for the real GpuClock: pure-Python CUDA events on a fake clock.

Why: GpuClock's own code (the stream-capture check, anchoring, the elapsed-time conversion) runs on
CPU against these, so tests exercise it rather than a replacement clock. Events can be told to fail
(`Event.fail`: 'query' or 'elapsed') to play an event CUDA cannot resolve.
"""
import itertools
import time
import types

from trtprof.capture.events import Captures


class Event:
    ticks = itertools.count(1)
    fail: set = set()  # ids of recordings ('query' / 'elapsed' in `fail_mode`) that raise
    fail_mode = "elapsed"
    recorded = 0

    def __init__(self, enable_timing=True):
        self.t = None
        self.n = None

    def record(self, stream=None):
        Event.recorded += 1
        self.n = Event.recorded
        self.t = time.perf_counter_ns() + next(Event.ticks)

    def query(self):
        assert not Captures.depth, "an event was queried during a stream capture"
        if self.n in Event.fail and Event.fail_mode == "query":
            raise RuntimeError("CUDA error: invalid argument")
        return True

    def elapsed_time(self, other):
        if other.n in Event.fail and Event.fail_mode == "elapsed":
            raise RuntimeError("CUDA error: invalid argument\nCUDA kernel errors might be reported later")
        return (other.t - self.t) / 1e6

    @classmethod
    def reset(cls, fail=(), mode="elapsed"):
        cls.recorded, cls.fail, cls.fail_mode = 0, set(fail), mode


class _Stream:
    cuda_stream = 7


_STREAM = _Stream()


def fake_torch():
    cuda = types.SimpleNamespace(Event=Event, synchronize=lambda: None, current_stream=lambda: _STREAM)
    return types.SimpleNamespace(cuda=cuda, _C=types.SimpleNamespace())


class Graph:
    """torch.cuda.CUDAGraph's capture door, without CUDA. Work the stand-in's TensorRT context
    enqueues while a graph records (`Graph.recording`) is kept and run again by `replay()`, as kernels
    launched on a capturing stream are; torch ops are not captured (they run once, at the capture)."""

    recording = None  # the graph being captured, if any (class-wide: one capture at a time)

    def __init__(self, *a, **k):
        self.work = []
        self.replays = 0

    def capture_begin(self, *a, **k):
        Graph.recording = self

    def capture_end(self):
        Graph.recording = None

    def replay(self):
        self.replays += 1
        for w in self.work:
            w()

    def reset(self):
        self.work = []


def use_fake_gpu(monkeypatch) -> None:
    """A capture started now sees a GPU: this module's events, stream and CUDA graph (CPU tests of the
    GPU paths share it)."""
    import torch

    from trtprof.capture import install
    from trtprof.capture.events import GpuClock

    Event.reset()
    monkeypatch.setattr(install, "GpuClock", lambda t: GpuClock(fake_torch()))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
