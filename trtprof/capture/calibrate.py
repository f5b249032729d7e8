"""Kernel times against event times: a few known kernels between events, right after the clock's anchor.

Why: a row's GPU window comes from CUDA events, converted to the host clock by `GpuClock`'s anchor;
its kernels' times come from CUPTI, which converts the GPU's timestamps to its own host clock itself
(`kernels.measure_offset` only relates CUPTI's host clock to ours). The two conversions disagreed by a
constant in some runs: on the graph-broken BERT at batch 128 (H100, torch_tensorrt 2.11, 2026-12-07, an
18.6 s capture with 17 fresh anchors) every engine's end event came 70 us before the last kernel
attributed to it, which was the next fallback's GELU; every fallback got the next engine's cast
kernel. On GPU-paced work the windows are back to back, so any such offset moves kernels into the
neighbouring row. Nothing else in the capture says which way the kernels lie, so it is measured: on
a stream of its own, `ROUNDS` times: an event, one tiny kernel, an event. The GPU is idle (the
anchor synchronized), so each kernel runs between its two events, and the offset that maps CUPTI's
times onto the events' lies in the intersection of the bounds the pairs give
(`timeline.kernels.calibrate` applies it before attribution; the meta.json block says what was found).
"""
from __future__ import annotations

import time

ROUNDS = 8
KERNEL = "spin_kernel"  # a substring of the kernel's name: torch.cuda._sleep's
SPIN_CYCLES = 1000  # about a microsecond at GPU clocks


def run(gpu, stream, launch) -> dict:
    """`ROUNDS` times on `stream`: record an event, `launch()` one kernel, record an event; wait for
    them and return the events' host times (ns) and the host interval the launches took."""
    t0 = time.perf_counter_ns()
    pairs = []
    for _ in range(ROUNDS):
        e0 = gpu.record(stream)
        launch()
        pairs.append((e0, gpu.record(stream)))
    stream.synchronize()
    t1 = time.perf_counter_ns()
    out = []
    for e0, e1 in pairs:
        out.append([gpu.host_ns(e0), gpu.host_ns(e1)])
        gpu.recycle(e0)
        gpu.recycle(e1)
    return {"pairs": out, "host_ns": [t0, t1], "kernel": KERNEL, "rounds": ROUNDS}


def prepare(torch):
    """(stream, launch) for `run`: a stream of its own (the user's streams see nothing) and torch's
    spin kernel (`torch.cuda._sleep`), which allocates nothing: made at the anchor, inside the user's
    first call, where an allocation would show in that call's allocator log. Not at the capture's
    start: CUDA is not touched before the profiled code uses it (a launcher's rank picks its device
    first, and a fork after CUDA is initialized breaks the child)."""
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        raise RuntimeError("torch.cuda._sleep is missing: no kernel to calibrate with")
    s = torch.cuda.Stream()

    def launch():
        with torch.cuda.stream(s):
            sleep(SPIN_CYCLES)
    return s, launch
