"""Kernel times mapped onto event times by known kernels between events (capture/calibrate.py,
timeline.kernels.calibrate): the offset found, its bounds, and every case where it is not applied."""
import numpy as np
import pytest

import gpu_doubles
from trtprof.capture import calibrate
from trtprof.capture.events import GpuClock
from trtprof.timeline import kernels


def _records(pairs, delta, others=()):
    """Calibration kernels 1 us after each pair's first event, 2 us long, as CUPTI would give them if
    its times ran `delta` ns behind the events'; `others`: (start, end) of the model's kernels in
    event time."""
    starts = [p[0] + 1_000 for p in pairs] + [s for s, _ in others]
    ends = [p[0] + 3_000 for p in pairs] + [e for _, e in others]
    n = len(starts)
    return {"kind": np.array(["kernel"] * n, dtype=object),
            "name": np.array(["at::cuda::(anonymous namespace)::spin_kernel(long)"]
                             * len(pairs) + ["gemm"] * len(others), dtype=object),
            "start_ns": np.array(starts, np.int64) - delta, "end_ns": np.array(ends, np.int64) - delta,
            "stream": np.full(n, 3, np.int64), "correlation": np.arange(n, dtype=np.int64),
            "device": np.zeros(n, np.int64), "seq": np.arange(n, dtype=np.int64)}


def _cal(pairs):
    return {"pairs": [list(p) for p in pairs], "host_ns": [pairs[0][0] - 500, pairs[-1][1] + 500],
            "kernel": "spin_kernel", "rounds": len(pairs)}


PAIRS = [(10**12 + i * 10_000, 10**12 + i * 10_000 + 4_000) for i in range(8)]


@pytest.mark.parametrize("delta", [0, 70_000, -45_000])
def test_the_offset_is_found_and_applied(delta):
    k = _records(PAIRS, delta, others=[(10**12 + 200_000, 10**12 + 260_000)])
    out, found = kernels.calibrate(k, _cal(PAIRS))
    # each kernel sits 1 us after its first event and 1 us before its second: +/- 1 us around delta
    lo, hi = found["bounds_ns"]
    assert lo <= delta <= hi and hi - lo <= 2_000 and found["rounds"] == 8
    assert found["offset_ns"] == min(max(0, lo), hi) and abs(found["offset_ns"] - delta) <= 1_000
    assert list(out["name"]) == ["gemm"]  # trtprof's own kernels left out
    assert abs(out["start_ns"][0] - (10**12 + 200_000)) <= 1_000 and len(out["seq"]) == 1


def test_bounds_that_hold_zero_keep_cuptis_times():
    """Loose pairs (an idle GPU: each event done at its record, the kernel a launch later) that allow
    no offset at all leave the times alone rather than move them by the bounds' middle."""
    loose = [(10**12 + i * 40_000, 10**12 + i * 40_000 + 30_000) for i in range(8)]
    k = _records(loose, -3_000, others=[(10**12 + 500_000, 10**12 + 510_000)])
    out, found = kernels.calibrate(k, _cal(loose))
    lo, hi = found["bounds_ns"]
    assert lo <= 0 <= hi and hi - lo > 20_000 and found["offset_ns"] == 0
    assert out["start_ns"][0] == k["start_ns"][-1]


def test_bounds_crossed_within_the_events_resolution_meet_where_they_cross():
    """Back to back, an event and the kernel after it can read the same instant; the events' half
    microsecond of resolution can then cross the bounds by a little, which is not a misfit."""
    tight = [(10**12 + i * 10_000, 10**12 + i * 10_000 + 1_500) for i in range(8)]
    k = _records(tight, 50_000)  # kernels from +1 us to +3 us: 2 us long between events 1.5 us apart
    out, found = kernels.calibrate(k, _cal(tight))
    lo, hi = found["bounds_ns"]
    assert lo - hi == 500 and found["offset_ns"] == (lo + hi) // 2


def test_not_applied_when_kernels_are_missing_or_do_not_fit():
    k = _records(PAIRS, 0)
    short = {c: v[1:] for c, v in k.items()}
    out, found = kernels.calibrate(short, _cal(PAIRS))
    assert out is short and "7 calibration kernels found of 8" in found["reason"]
    wide = _records(PAIRS, 0)
    wide["end_ns"] = wide["end_ns"] + 5_000  # longer than the pair around it: no offset fits
    out, found = kernels.calibrate(wide, _cal(PAIRS))
    assert out is wide and "do not fit" in found["reason"]
    assert kernels.calibrate(k, None) == (k, None)
    assert kernels.calibrate(k, {"error": "RuntimeError: no stream"})[1] == {"reason": "RuntimeError: no stream"}


def test_run_on_the_stand_in_gpu_gives_pairs_that_hold_their_kernels():
    """The capture side on the real GpuClock over pure-Python events: each launch between its two
    events, then the store's calibration finds no offset (one clock here)."""
    gpu = GpuClock(gpu_doubles.fake_torch())
    launched = []

    class Stream:
        cuda_stream = 11

        def synchronize(self):
            pass

    def launch(cycles):  # a kernel on the stand-in GPU's own timer, between the events around it
        e = gpu_doubles.Event()
        e.record()
        launched.append((e.t, e.t + 1))
        assert cycles in (calibrate.LEAD_CYCLES, calibrate.SPIN_CYCLES)

    gpu.record()  # anchors
    cal = calibrate.run(gpu, Stream(), launch)
    assert len(cal["pairs"]) == calibrate.ROUNDS + 1 == len(launched) == cal["rounds"]
    assert all(a[1] == b[0] for a, b in zip(cal["pairs"], cal["pairs"][1:]))  # one chain of events
    gpu_to_host = gpu._ref_host - gpu._ref.t  # how the clock maps the stand-in's timer onto the host's
    assert all(a <= s + gpu_to_host and e + gpu_to_host <= b for (a, b), (s, e) in zip(cal["pairs"], launched))
    k = {"kind": np.array(["kernel"] * len(launched), dtype=object),
         "name": np.array(["spin_kernel(long)"] * len(launched), dtype=object),
         "start_ns": np.array([s for s, _ in launched], np.int64), "end_ns": np.array([e for _, e in launched], np.int64)}
    out, found = kernels.calibrate(k, cal)
    assert len(out["start_ns"]) == 0
    lo, hi = found["bounds_ns"]
    assert lo - 1 <= gpu_to_host <= hi + 1


def test_prepare_needs_torchs_spin_kernel():
    import types

    with pytest.raises(RuntimeError, match="_sleep is missing"):
        calibrate.prepare(types.SimpleNamespace(cuda=types.SimpleNamespace()))


def test_the_clock_calls_its_hook_once_after_the_first_anchor():
    gpu = GpuClock(gpu_doubles.fake_torch())
    calls = []
    gpu.on_anchor = lambda: calls.append(gpu.anchored)
    gpu.record()
    gpu.record()
    gpu.anchor()
    assert calls == [True]
