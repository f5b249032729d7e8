"""Event sharing, inference spans from subgraph events, event recycling, and the minimal level.

The GPU clock is replaced by a double whose events carry the order they were recorded in, so the
bookkeeping (which range owns which event, when an event may go back to the pool) is checked on
CPU; the same code runs with real CUDA events in tests/test_gpu_capture.py on the device.
"""
import itertools
import time

import pytest
import torch

import trtprof
from trtprof.capture import install

pytestmark = pytest.mark.fake_trt


class _Stream:
    cuda_stream = 7


class _Event:
    def __init__(self, clock):
        self.clock, self.t = clock, None

    def record(self):  # completes on the 'GPU' 1 us after it was recorded, 1 ns later per event
        self.t = time.perf_counter_ns() + 1000 + next(self.clock.ticks)


class FakeClock:
    """GpuClock's interface: record / current_stream / done / host_ns / recycle / synchronize, and
    `next_anchor_ns` (never: no fresh anchor is asked of it)."""

    anchor_error_ns = 0
    next_anchor_ns = 1 << 62

    def __init__(self, torch_module=None):
        self.ticks = itertools.count(1)
        self.stream = _Stream()
        self.pool, self.recorded, self.live = [], 0, set()

    def record(self, stream=None):
        ev = self.pool.pop() if self.pool else _Event(self)
        ev.record()
        self.recorded += 1
        self.live.add(id(ev))
        return ev

    def current_stream(self):
        return self.stream

    def done(self, ev):
        return True

    def host_ns(self, ev):
        assert ev is None or id(ev) in self.live, "an event was read after it went back to the pool"
        return None if ev is None else ev.t

    def recycle(self, ev):
        assert id(ev) in self.live, "an event went back to the pool twice"
        self.live.discard(id(ev))
        self.pool.append(ev)

    def synchronize(self):
        pass


@pytest.fixture
def clock(monkeypatch):
    holder = {}

    def make(torch_module):
        holder["clock"] = FakeClock()
        return holder["clock"]
    monkeypatch.setattr(install, "GpuClock", make)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return holder


def _capture(tmp_path, runtime, level="full", batch=4096, calls=6):
    from cpu_models import partitioned
    m = partitioned(runtime)
    s = trtprof.Session(tmp_path / "c", cpp_allocs=False, level=level)
    s.instrumenter.batch = batch
    s.start()
    s.instrument(m)
    for i in range(calls):
        m(torch.randn(2 + (i % 2), 8))
    return s.stop().timeline


@pytest.mark.parametrize("batch", [4096, 1])  # 1: a drain inside every range, mid-inference
def test_cpp_boundaries_share_one_event(tmp_path, clock, batch):
    df = _capture(tmp_path, "cpp", batch=batch)
    fake = clock["clock"]
    assert fake.recorded == 6 * 4  # acc_0 start, acc_0 end = gpu_1 start, gpu_1 end = acc_2 start, acc_2 end
    from cpu_models import assert_boundaries_shared
    for _, inf in df.groupby("inference"):
        assert_boundaries_shared(inf)
        assert (inf.gpu_start_ns.dropna() >= inf.host_start_ns[inf.gpu_start_ns.notna()]).all()
        assert set(inf[inf.event.isin(["inference", "exec"])].stream) == {7}  # the caller's stream
    # every event is back in the pool or was left to the garbage collector (the last end of each inference)
    assert len(fake.live) <= 6


def test_python_runtime_events_not_shared(tmp_path, clock):
    """Engine events are on the engine stream: each exec has its own pair; the fallback its own."""
    df = _capture(tmp_path, "python")
    assert clock["clock"].recorded == 6 * 6
    ex = df[df.event == "exec"]
    assert ex.gpu_start_ns.notna().all() and (ex.gpu_start_ns < ex.gpu_end_ns).all()
    top = df[df.event == "inference"].set_index("inference")
    first = ex[ex.subgraph == "_run_on_acc_0"].set_index("inference")
    last = ex[ex.subgraph == "_run_on_acc_2"].set_index("inference")
    assert (top.gpu_start_ns == first.gpu_start_ns).all() and (top.gpu_end_ns == last.gpu_end_ns).all()


@pytest.mark.parametrize("runtime", ["cpp", "python"])
def test_minimal_level(tmp_path, clock, runtime):
    """Minimal: two events per inference, none on subgraph ranges; the same ranges on the host clock."""
    full = _capture(tmp_path / "f", runtime)
    df = _capture(tmp_path / "m", runtime, level="minimal")
    assert clock["clock"].recorded == 6 * 2
    top = df[df.event == "inference"]
    assert top.gpu_start_ns.notna().all() and (top.gpu_start_ns < top.gpu_end_ns).all()
    assert df[df.event != "inference"].gpu_start_ns.isna().all()
    key = ["event", "subgraph", "call", "input_shapes", "shape_changed", "prealloc"]
    assert full[key].equals(df[key])
    alloc = df[df.event == "alloc"]
    assert alloc.shapes.isna().all() and (len(alloc) == (runtime == "python") * 12)


def test_level_in_meta_and_bad_level(tmp_path):
    from cpu_models import partitioned
    m = partitioned("cpp")
    with trtprof.profile(out=tmp_path / "c", level="minimal") as cap:
        m(torch.randn(2, 8))
    assert cap.meta["level"] == "minimal"
    with pytest.raises(ValueError, match="unknown level"):
        trtprof.Session(tmp_path / "d", level="max")


def test_cpp_mode_cache_follows_setter_and_direct_assignment(tmp_path):
    """The C++ engine's mode is cached: the setter is seen at the next call, a direct assignment to
    the engine's attribute within 64 calls."""
    from cpu_models import partitioned
    m = partitioned("cpp")
    x = torch.randn(2, 8)
    with trtprof.profile(out=tmp_path / "c") as cap:
        cap.instrument(m)
        m(x)
        m._run_on_acc_0.set_pre_allocated_outputs(True)
        m(x)
        m._run_on_acc_0.set_pre_allocated_outputs(False)
        m._run_on_acc_0.engine.use_pre_allocated_outputs = True  # bypasses the setter
        for _ in range(70):
            m(x)
    calls = cap.timeline[(cap.timeline.event == "call") & (cap.timeline.subgraph == "_run_on_acc_0")]
    pre = calls.sort_values("call").prealloc.tolist()
    assert pre[:2] == [False, True]
    assert bool(pre[-1])
    assert pre.index(True, 2) <= 64


def _session(tmp_path, brackets, calls=6):
    from cpu_models import partitioned
    m = partitioned("cpp")
    s = trtprof.Session(tmp_path, cpp_allocs=False, brackets=brackets)
    s.start()
    s.instrument(m)
    for i in range(calls):
        m(torch.randn(2 + (i % 2), 8))
    return s.stop()


class _NoLaunchTimes:
    """cupti-python without latency timestamps (older than 13.0): the stand-in's names minus that one."""
    def __getattr__(self, name):
        if name == "activity_enable_latency_timestamps":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __init__(self, inner):
        self.inner = inner


@pytest.mark.parametrize("launch_times", [True, False])
def test_full_level_without_brackets(tmp_path, clock, monkeypatch, launch_times):
    """--no-brackets: with kernel launch times, events only around each inference (the minimal
    level's two), every range and its shapes as at the full level; without launch times the
    brackets stay and the notes say why."""
    from test_kernels import FakeCupti, _fake
    _fake(monkeypatch, FakeCupti() if launch_times else _NoLaunchTimes(FakeCupti()))
    full = _session(tmp_path / "f", True).timeline
    with_brackets = clock["clock"].recorded
    cap = _session(tmp_path / "n", False)
    df, recorded = cap.timeline, clock["clock"].recorded
    key = ["event", "subgraph", "call", "input_shapes", "shapes", "shape_changed", "prealloc"]
    assert full[key].equals(df[key])
    assert cap.meta["options"]["brackets"] is False and cap.meta["kernels"]["recorded"] is True
    if launch_times:
        assert cap.meta["brackets"] is False and recorded == 6 * 2 and with_brackets == 6 * 4
        top = df[df.event == "inference"]
        assert top.gpu_start_ns.notna().all() and (top.gpu_start_ns < top.gpu_end_ns).all()
        assert df[df.event != "inference"].gpu_start_ns.isna().all()
        assert not any("brackets" in n for n in cap.meta["notes"])
    else:
        assert cap.meta["brackets"] is True and recorded == with_brackets == 6 * 4
        assert df[df.event == "exec"].gpu_start_ns.notna().all()
        assert any(n.startswith("--no-brackets needs kernel launch times (this cupti-python has no "
                                "activity_enable_latency_timestamps)") for n in cap.meta["notes"])


def test_brackets_must_be_a_bool(tmp_path):
    with pytest.raises(ValueError, match="brackets must be True or False"):
        trtprof.Session(tmp_path / "c", brackets="no")
