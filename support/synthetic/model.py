"""The run every generator here simulates: one thread calling a partitioned model, engine -> fallback
-> engine (more engines: a fallback between each two), n inferences step by step but vectorised
across them, so a million rows take about a second. The host/GPU model is the one the tutorial describes:

- Python runtime, pre-alloc off: each engine call allocates its outputs before the enqueue; when the
  GPU has run dry that allocation is exposed (the GPU waits for it);
- pre-alloc on: outputs are allocated right after the enqueue, for the next call, while the GPU runs,
  where the outputs leave the graph (the last engine's) or none are held yet; a shape change or the first
  call after switching it on forces an allocation before execution again. The after-enqueue allocation
  of call N feeds call N+1 of that engine when that one runs on pre-allocated outputs: `links`;
- C++ runtime: call and enqueue are one host range and the hooks see no allocations;
- GPU times are CUDA events, as the hooks record them: a call's start event, its kernels, its end event,
  each reaching the GPU a launch lag after the host recorded or enqueued it and run in queue order
  (timing.py), so no GPU range ends before its host range does. Each engine has its own stream; the
  fallback's and the inference's events are on the caller's stream.

The host times are relative to each inference's start; where inferences start, and which GPU work
queues behind which, is the drivers' part (runs.py).
"""
from __future__ import annotations

import numpy as np

from .rows import Rows
from .timing import Clock, queue

ENGINE_STREAM = 94_000_000_000  # + the engine's stage index: each engine has its own stream


class Thread:
    """n inferences of the model on one thread: row templates, GPU queue items, host ends, links."""

    def __init__(self, n, *, prealloc=None, shapes=None, rng, clock="realistic", noise=0.12, model="model0",
                 engines=("_run_on_acc_0", "_run_on_acc_2"), fallback="_run_on_gpu_1", alloc_us=40.0,
                 exclude_flip=True, runtime="python", caller=0):
        if runtime not in ("python", "cpp"):
            raise ValueError(f"runtime {runtime!r}: 'python' or 'cpp'")
        self.n, self.rows, self.items, self.links = n, Rows(n), [], []
        self.clock, self.caller, self.runtime = Clock(rng, n, noise, clock), caller, runtime
        pre = np.zeros(n, bool) if prealloc is None and n < 2 else (
            np.arange(n) >= n // 2 if prealloc is None else np.broadcast_to(np.asarray(prealloc, bool), (n,)).copy())
        shp = np.array(["(8,128)"] * n, dtype=object) if shapes is None else np.asarray(shapes, dtype=object)
        self.shapes = shp
        first = [s.strip("()").split(",")[0] for s in shp]
        self.batch = np.array([int(b) if b.isdigit() else 8 for b in first], dtype=float)
        self.changed = np.r_[False, shp[1:] != shp[:-1]]
        flip_on = pre & ~np.r_[False, pre[:-1]]
        if n and pre[0]:
            flip_on[0] = True
        self.pre, self.flip_on = pre, flip_on
        self.exclude = flip_on if exclude_flip else None
        self.out_bytes = (self.batch * 128 * 768 * 2).astype(np.int64)
        self._schedule(model, engines, fallback, alloc_us)

    def item(self, stream, enq, not_before, work) -> int:
        """A GPU queue item (timing.py): on `stream`, enqueued at host time `enq`; returns its index."""
        self.items.append((stream, enq, not_before, work))
        return len(self.items) - 1

    def _schedule(self, model, engines, fallback, alloc_us):
        d, z = self.clock, np.zeros(self.n, np.int64)
        t = d.dur(15)  # python before the first engine
        self._open, self._open_lag = self.item(self.caller, z, z, z), z  # its start event; the lag is drawn below
        fallbacks = (fallback,) if isinstance(fallback, str) else tuple(fallback)
        stages = []  # engine, fallback, engine, ...: fallbacks between the engines (all when there are enough)
        for i, eng in enumerate(engines):
            stages.append((eng, 60.0 if i % 2 == 0 else 90.0))
            if i < min(len(fallbacks), len(engines) - 1):
                stages.append((fallbacks[i], None))
        for k, (name, gpu_us) in enumerate(stages):
            if gpu_us is None:
                t = self._fallback(name, t)
            elif self.runtime == "cpp":
                t = self._cpp_engine(k, name, gpu_us, t)
            else:
                t = self._python_engine(k, name, gpu_us, t, alloc_us, unowned=k == len(stages) - 1)
        self.host_end = t + d.dur(10)
        close = self.item(self.caller, self.host_end, self.host_end + self._open_lag, z)  # its end event
        self.rows.add("inference", model, "model", "torch", z, self.host_end, gpu=(self._open, close),
                      stream=self.caller)

    def _bracket(self, stream, start, end, lag, work):
        """A call's GPU range on `stream`: its start event then its kernels (enqueued at the host `start`),
        its end event (recorded at the host `end`), each reaching the GPU `lag` after the host did that;
        returns the row's (start item, end item)."""
        kernels = self.item(stream, start, start + lag + work, work)
        return kernels, self.item(stream, end, end + lag, np.zeros(self.n, np.int64))

    def _first_engine(self, k):
        """The inference's start-event lag, drawn after the first engine's draws as it always was (the same
        seed, the same host times)."""
        if k == 0:
            s, e, _, w = self.items[self._open]
            self._open_lag = self.clock.lag(2)
            self.items[self._open] = (s, e, self._open_lag, w)

    def _fallback(self, name, fs):
        d = self.clock
        fe = fs + d.dur(35)
        gpu = self._bracket(self.caller, fs, fe, d.lag(10), d.dur(20.0, self.batch / 8))
        self.rows.add("fallback", name, "fallback", "torch", fs, fe, gpu=gpu, stream=self.caller,
                      shape_changed=self.changed)
        return fe + d.gap(8)

    def _cpp_engine(self, k, name, gpu_us, t):
        d = self.clock
        e1 = t + d.dur(20)
        gpu = self._bracket(self.caller, t, e1, d.lag(5), d.dur(gpu_us, self.batch / 8))
        self._first_engine(k)
        common = dict(stream=self.caller, prealloc=self.pre, shape_changed=self.changed,
                      reallocated=np.zeros(self.n, bool), exclude=self.exclude)
        self.rows.add("call", name, "engine", "cpp", t, e1, **common)
        self.rows.add("exec", name, "engine", "cpp", t, e1, gpu=gpu, **common)
        return e1 + d.gap(10)

    def _python_engine(self, k, name, gpu_us, t, alloc_us, unowned):
        d, pre, changed, flip_on = self.clock, self.pre, self.changed, self.flip_on
        cs = t
        t = t + d.dur(8)  # the call's own work before its first child
        before = ~pre | flip_on | changed
        a_dur = d.dur(alloc_us, np.where(changed, 3.0, 1.0))  # a new shape: a new cudaMalloc segment, slower
        a0, a1 = t, t + a_dur
        t = np.where(before, a1, t)
        e0, e1 = t, t + d.dur(20)
        stream = ENGINE_STREAM + k
        gpu = self._bracket(stream, e0, e1, d.lag(5), d.dur(gpu_us, self.batch / 8))
        self._first_engine(k)
        t = e1
        after = pre & (unowned | flip_on | changed)
        p0, p1 = t, t + d.dur(alloc_us)
        t = np.where(after, p1, t) + d.gap(6)
        reuse = pre & ~before
        common = dict(stream=stream, prealloc=pre, shape_changed=changed, reallocated=pre & before,
                      outputs=np.where(reuse, "preallocated", "new"), exclude=self.exclude, bytes=self.out_bytes)
        call = self.rows.add("call", name, "engine", "python", cs, t, **common)
        self.rows.add("exec", name, "engine", "python", e0, e1, gpu=gpu, **common)
        self.rows.add("alloc", name, "engine", "python", a0, a1, mask=before, alloc_phase="before_exec", **common)
        late = self.rows.add("alloc", name, "engine", "python", p0, p1, mask=after, alloc_phase="after_enqueue",
                             **{**common, "reallocated": np.zeros(self.n, bool)})
        self.links.append((late, call, after[:-1] & reuse[1:]))
        return t + d.gap(10)

    # -- the drivers' part --------------------------------------------------------------------------
    def queues(self):
        """(stream, enqueue time, not_before, work) of every item, each an (n, items) array."""
        return tuple(np.stack([np.broadcast_to(np.asarray(it[j]), (self.n,)) for it in self.items], axis=1)
                     for j in range(4))

    def alone_on_the_gpu(self) -> np.ndarray:
        """GPU times where each inference finds the GPU idle and its work is one queue (the loop
        synchronises; the runtime chains the caller's and the engines' streams); returns each inference's
        span until the next may start (the host and GPU both done, then the loop's own gap)."""
        _, _, not_before, work = self.queues()
        self.gpu_end = queue(not_before, work)
        self.gpu_start = self.gpu_end - work
        return np.maximum(self.host_end, self.gpu_end[:, -1]) + self.clock.gap(30)

    def free_running(self) -> np.ndarray:
        """Each inference's span where the loop does not wait for the GPU: its host range, then a gap.
        GPU times are then up to the caller (several threads share queues)."""
        return self.host_end + self.clock.gap(30)

    def prealloc_links(self, keys) -> list[tuple[int, int]]:
        """(after_enqueue alloc, call) positions in the assembled rows, `keys` being their (inference,
        order): each allocation with the next call of its engine that runs on what it allocated."""
        at = {k: p for p, k in enumerate(zip(*(a.tolist() for a in keys)))}
        return [(at[(i, late)], at[(i + 1, call)]) for late, call, m in self.links for i in np.flatnonzero(m)]
