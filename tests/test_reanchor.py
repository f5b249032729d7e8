"""The GPU clock anchored again at safe points: the GPU's timer runs at its own rate, so one anchor
at the start lets event times drift from the host clock (2.2 us/s on the H100 machine); these tests run
the real GpuClock against pure-Python events on a timer that runs fast by RATE (exaggerated, so that a
few milliseconds show it)."""
import time

import pytest

import gpu_doubles
from trtprof.capture import events
from trtprof.capture.events import GpuClock
from trtprof.capture.recorder import Recorder

RATE = 2e-3  # the fake GPU timer gains 2 ms a second


class Drifting(gpu_doubles.Event):
    t0 = time.perf_counter_ns()
    busy = False
    lag = 0.0  # seconds the record call takes after the event is timed: a wide window to tie it in

    def record(self, stream=None):
        super().record(stream)
        self.host = time.perf_counter_ns()
        self.t = self.host + round((self.host - Drifting.t0) * RATE)
        if Drifting.lag:
            time.sleep(Drifting.lag)

    def query(self):
        return not Drifting.busy and super().query()


def _clock():
    t = gpu_doubles.fake_torch()
    t.cuda.Event = Drifting
    return GpuClock(t)


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(events, "REANCHOR_NS", 20_000_000)  # a fresh anchor at most every 20 ms here
    monkeypatch.setattr(events, "REANCHOR_ERR_NS", 300_000)  # these Python events take microseconds
    Drifting.busy = False
    Drifting.lag = 0.0


def _error_us(clock, ev) -> float:
    return (clock.host_ns(ev) - ev.host) / 1e3


def test_a_fresh_anchor_takes_out_the_drift_and_measures_it():
    clock = _clock()
    clock.record()  # anchors
    time.sleep(0.06)
    late = clock.record()
    drifted = _error_us(clock, late)
    assert drifted > 0.5 * RATE * 0.06 * 1e6  # ~120 us late after 60 ms at 2 ms/s
    assert clock.reanchor(time.perf_counter_ns()) is True
    fresh = clock.record()
    d = clock.drift
    # the fresh anchor lies in the host window its event completed in: off by at most that window's
    # width (twice max_error_ns), whatever the load on the machine made it
    assert abs(_error_us(clock, fresh)) <= 2 * d["max_error_ns"] / 1e3 + 5 and abs(_error_us(clock, fresh)) < drifted
    assert d["reanchors"] == 1 and d["tries"] == 1 and d["last_ns"] < 0  # the old conversion ran late
    assert abs(d["last_ns"]) == d["max_abs_ns"] and 0.5 * RATE * 1e9 < -d["ns_per_s"] < 2 * RATE * 1e9


def test_without_drift_a_wide_window_moves_nothing(monkeypatch):
    """No drift, and the fresh event tied in a window 400 us wide: the old conversion's time lies in
    it, so the windows stay where they were (the window's middle would have moved them ~200 us)."""
    monkeypatch.setattr(__import__(__name__), "RATE", 0.0)
    monkeypatch.setattr(events, "REANCHOR_ERR_NS", 5_000_000)  # a window that wide is taken here
    clock = _clock()
    clock.record()
    time.sleep(0.03)
    old = clock.record()
    before = clock.host_ns(old)
    Drifting.lag = 400e-6
    assert clock.reanchor(time.perf_counter_ns()) is True
    Drifting.lag = 0.0
    assert abs(clock.host_ns(old) - before) <= clock.anchor_error_ns + 2
    assert clock.drift["corrected_ns"] == 0 or abs(clock.drift["corrected_ns"]) <= clock.anchor_error_ns
    assert clock.drift["max_error_ns"] >= 150_000  # the window was that wide


def test_not_again_within_the_period_nor_while_the_gpu_is_busy_nor_during_a_capture():
    clock = _clock()
    clock.record()
    ref = clock._ref
    assert clock.reanchor(time.perf_counter_ns()) is False and clock.drift["tries"] == 0  # too soon
    time.sleep(0.03)
    Drifting.busy = True  # the new event does not complete within REANCHOR_ERR_NS: nothing changes
    assert clock.reanchor(time.perf_counter_ns()) is False and clock._ref is ref
    assert clock.drift["tries"] == 1 and clock.drift["reanchors"] == 0 and len(clock._pool) == 1
    Drifting.busy = False
    assert clock.reanchor(time.perf_counter_ns()) is False  # tried a moment ago: a period from then
    time.sleep(0.03)
    events.Captures.depth = 1
    try:
        assert clock.reanchor(time.perf_counter_ns()) is False
    finally:
        events.Captures.depth = 0
    assert clock.reanchor(time.perf_counter_ns()) is True and clock._ref is not ref


def test_before_the_first_anchor_nothing_is_recorded():
    clock = _clock()
    n = Drifting.recorded
    assert clock.reanchor(time.perf_counter_ns() + 10**12) is False and Drifting.recorded == n


def test_the_recorder_reanchors_once_every_event_has_resolved():
    clock = _clock()
    got = []
    rec = Recorder(got.extend, clock)
    first = clock.record()
    time.sleep(0.03)
    rec.add(Recorder.new("exec", host_start_ns=1, host_end_ns=2), first, clock.record())
    Drifting.busy = True  # pending events cannot resolve: no fresh anchor either
    rec.drain()
    assert clock.drift["tries"] == 0 and not got
    Drifting.busy = False
    rec.drain(flush=True)
    assert len(got) == 1 and clock.drift["reanchors"] == 1


def test_meta_says_the_drift(tmp_path, monkeypatch):
    # a capture on the stand-in GPU: meta.json carries the drift block
    import trtprof
    from cpu_models import partitioned
    from trtprof.capture import install

    gpu_doubles.use_fake_gpu(monkeypatch)
    monkeypatch.setattr(install, "GpuClock", lambda t: _clock())
    import torch
    m = partitioned("python")
    x = torch.randn(2, 8)
    with trtprof.profile(tmp_path / "c", cpp_allocs=False) as cap:
        cap.instrument(m)
        for _ in range(40):  # drains come every 32 ranges: a few of them, 20 ms apart or more
            m(x)
            time.sleep(0.01)
    d = cap.meta["gpu_clock_drift"]
    assert d["tries"] >= 1 and d["reanchors"] >= 1 and d["ns_per_s"] < 0
    assert isinstance(d["max_error_ns"], int) and d["max_abs_ns"] > 0


def test_an_inference_start_reanchors_where_safe_points_cannot(tmp_path, monkeypatch):
    # a GPU-paced loop that synchronizes after each inference: at the safe point (the end of the
    # inference's call) its events are still pending, at the next inference's start the GPU is idle
    import torch

    import trtprof
    from cpu_models import partitioned
    from trtprof.capture import install

    clock = _clock()
    busy_at_safe_points = []
    real_drain = Recorder.drain

    def drain(self, wait=False, flush=False):
        Drifting.busy = not wait  # pending at every safe point; done when the capture ends
        try:
            return real_drain(self, wait, flush)
        finally:
            busy_at_safe_points.append(Drifting.busy)
            Drifting.busy = False  # the user's synchronize: idle again before the next inference

    gpu_doubles.use_fake_gpu(monkeypatch)
    monkeypatch.setattr(install, "GpuClock", lambda t: clock)
    monkeypatch.setattr(Recorder, "drain", drain)
    m, x = partitioned("python"), torch.randn(2, 8)
    with trtprof.profile(tmp_path / "c", cpp_allocs=False) as cap:
        cap.instrument(m)
        for _ in range(30):
            m(x)
            time.sleep(0.005)
    d = cap.meta["gpu_clock_drift"]
    assert any(busy_at_safe_points) and d["reanchors"] >= 2 and d["ns_per_s"] < 0


def test_a_wide_window_is_refused(monkeypatch):
    # the polling thread preempted between the record and the query that saw it done: the window the
    # event completed in is milliseconds wide, and an anchor in it would be off by as much
    real = Drifting.query
    slow_now = []

    def slow(self):
        if slow_now:
            time.sleep(0.002)  # wider than the 300 us allowed here
        return real(self)
    monkeypatch.setattr(Drifting, "query", slow)  # before the clock takes its C-level query
    clock = _clock()
    clock.record()
    ref = clock._ref
    time.sleep(0.03)
    slow_now.append(True)
    assert clock.reanchor(time.perf_counter_ns()) is False and clock._ref is ref
    assert clock.drift["tries"] == 1 and clock.drift["reanchors"] == 0
