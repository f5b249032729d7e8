"""Sampling (`--sample N`): which inferences of a model are recorded, what a skipped one leaves to
catch up, and what runs only around recorded ones (kernel activity, the allocator log).

Why a module of its own: the decision is made in the model's hooks (graph.py), its bookkeeping lives
on the shared state (`Instrumentation`: `in_flight`, the lock `switch`), and the switches reach the
kernel and allocator recorders; one place says how they fit together.
"""
from __future__ import annotations

from trtprof.capture.state import ModelInfo, mode_of


def recorded(ins, info: ModelInfo, shapes: tuple) -> bool:
    """Sampling: whether this inference of `info` is recorded. Every `sample`-th one is, and so
    is any whose input shapes differ from the previous inference's (a shape change is what
    forces new output buffers) and the one after it (buffers pre-allocated again)."""
    seen, info.seen = info.seen, shapes
    changed = seen is not None and shapes != seen
    keep = changed or info.after_change or info.calls % ins.sample == 0
    info.after_change = changed
    return keep


def skip(ins, info: ModelInfo) -> None:
    """Enter an inference that is not recorded: until `_model_post` every hook inside passes
    straight through (what they would have noted is caught up by `catch_up`)."""
    ins.stacks.muted += 1
    info.calls += 1
    info.skipped += 1


def catch_up(ins, info: ModelInfo) -> None:
    """Before a recorded inference that follows skipped ones, note for each subgraph what its
    skipped calls would have: their count (a Torch-TensorRT graph calls each subgraph once per
    inference, a torch.fx graph has no loops, so call indices stay those of an unsampled
    capture) and, for engines, the pre-allocation mode of the last one (the next call is
    compared with it: a flip, buffers it can reuse): the mode before a change made since, else
    the current one. Their shapes need no noting: an inference is skipped only when its inputs
    have the previous one's shapes, so its subgraphs saw the shapes they saw last time."""
    for module, sub in info.children:
        sub.calls += info.skipped
        if sub.kind == "engine":
            sub.last_prealloc = sub.before_set if sub.set_at == info.calls else mode_of(module, sub.runtime, sub)
    info.skipped = 0


def leave(ins) -> None:
    """A recorded inference on this thread is over: closed (`pause`), or never to reach its post
    hook (graph._drop). Its place among the recorded inferences in flight is given back, so sampling
    can pause again."""
    try:
        ins.in_flight.pop()
    except IndexError:  # a range opened before sampling's bookkeeping (never in one capture)
        pass


def resume(ins) -> None:
    """Sampling: a recorded inference is about to open its range (outermost on its thread): kernel
    activity and the allocator log on again, before the range, so neither costs it anything."""
    ins.in_flight.append(None)
    log = ins.alloc_log
    if ins.kernels is None and log is None:
        return
    with ins.switch:  # taken even when nothing is paused: a pause() may be stopping the log now
        if ins.kernels is not None:
            ins.kernels.resume()
        if log is not None and log.paused:  # a log never started waits for the first C++ engine call
            ins.start_log()  # (a model of the Python runtime never needs it)


def pause(ins, info: ModelInfo) -> None:
    """Sampling: a recorded inference of `info` closed its range. Unless another thread is inside
    a recorded inference: kernel activity off, and the allocator log harvested and stopped when the
    model's next inference is not due to be recorded. Why the log: the allocator records every
    allocation of the process while it runs, skipped inferences' included, and a harvest turns
    each of them into a Python object (`torch.cuda.memory._snapshot()`); stopping it empties it.
    An engine called on its own, on another thread, while it stops loses its allocations."""
    leave(ins)
    in_flight = ins.in_flight
    if in_flight:
        return
    log = ins.alloc_log
    log_off = (ins.pause_log and log is not None and log.active and not info.after_change
               and info.calls % ins.sample)
    if ins.kernels is None and not log_off:
        return
    with ins.switch:
        if in_flight:  # another thread's recorded inference began meanwhile
            return
        if ins.kernels is not None:
            ins.kernels.pause()  # kernels already launched are still recorded (measured on the H200)
        if log_off:
            if ins.cpp_pending:
                ins.harvest(ins)
            log = ins.alloc_log  # None when that harvest failed (and stopped it)
            if log is not None:
                try:
                    log.pause()
                except Exception as e:  # noqa: BLE001 - in the user's call: the capture goes on without it
                    ins.lose_log("stopping it", e)
