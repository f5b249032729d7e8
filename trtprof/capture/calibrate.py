"""Kernel times against event times: a few known kernels between events, right after the clock's anchor.

Why: a row's GPU window comes from CUDA events, converted to the host clock by `GpuClock`'s anchor;
its kernels' times come from CUPTI, which converts the GPU's timestamps to its own host clock itself
(`kernels.measure_offset` only relates CUPTI's host clock to ours). The two conversions disagreed by a
constant in some runs: on the graph-broken BERT at batch 128 (H100, torch_tensorrt 2.11, 2026-12-07, an
18.6 s capture with 17 fresh anchors) every engine's end event came 70 us before the last kernel
attributed to it, which was the next fallback's GELU; every fallback got the next engine's cast
kernel. On GPU-paced work the windows are back to back, so any such offset moves kernels into the
neighbouring row. Nothing else in the capture says which way the kernels lie, so it is measured
on a stream of its own: one long kernel that keeps the GPU busy while the host queues, behind it,
`ROUNDS` tiny kernels each followed by an event. The queue then runs back to back, so every kernel
starts right after the event before it and ends right before the event after it, and the offset that
maps CUPTI's times onto the events' lies in the intersection of the bounds the pairs give, within a
microsecond or two. (With the GPU idle instead, each event completes as soon as it is recorded and
the kernel follows a launch later: the bounds were 31 us wide on an H100, 2026-12-07, too loose to
place a 2 us fallback kernel.) `timeline.kernels.calibrate` applies the least offset those bounds
allow; the meta.json block says what was found.
"""
from __future__ import annotations

import time

ROUNDS = 8  # tiny kernels, each between two events (the long one before them makes a ninth pair)
KERNEL = "spin_kernel"  # a substring of the kernel's name: torch.cuda._sleep's
SPIN_CYCLES = 1000  # about half a microsecond at GPU clocks
LEAD_CYCLES = 2_000_000  # about a millisecond: longer than the host takes to queue the rounds


def run(gpu, stream, launch) -> dict:
    """On `stream`: an event, `launch(LEAD_CYCLES)`, an event, then `ROUNDS` times `launch(SPIN_CYCLES)`
    and an event; wait for them and return each kernel's pair of events as host times (ns, in launch
    order) and the host interval the whole took."""
    t0 = time.perf_counter_ns()
    events = [gpu.record(stream)]
    for cycles in [LEAD_CYCLES] + [SPIN_CYCLES] * ROUNDS:
        launch(cycles)
        events.append(gpu.record(stream))
    stream.synchronize()
    t1 = time.perf_counter_ns()
    host = [gpu.host_ns(e) for e in events]
    for e in events:
        gpu.recycle(e)
    return {"pairs": [[a, b] for a, b in zip(host, host[1:])], "host_ns": [t0, t1], "kernel": KERNEL,
            "rounds": ROUNDS + 1}


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

    def launch(cycles: int):
        with torch.cuda.stream(s):
            sleep(cycles)
    return s, launch
