"""Hooks for Torch-TensorRT's CUDA-graph modes: the whole-graph wrapper's calls, and per-engine
replays of the Python runtime.

Whole-graph mode: `CudaGraphsTorchTensorRTModule.forward` replays a captured graph and runs the
inner module only when it (re)captures, so hooks on the inner module cannot see a replay. The
wrapper's `forward` is wrapped instead: every call is one `inference` row of the inner model (same
label, same inference counter as its plain calls), bracketed by CUDA events on the caller stream at
both levels (at the full level there are no subgraph ranges to take a GPU span from), `cudagraph`
= `capture` when the call (re)captured the graph (the wrapper's `cudagraph` object changed; left out
of statistics) or `replay`. The inner rows recorded during a capture belong to that inference (the
inner model's own inference hook stands aside while its wrapper's row is open) and are `capture`
rows with host times only: no event is recorded on a capturing stream (`events.py`). `warm_up`
(three calls at construction) is wrapped so the inner inferences it runs are `warmup` rows.

Kernels of a replay (CUPTI) fall inside its inference row's event window and are attributed to it
(`timeline/kernels.py`, windows on any stream). Inside a replay kernels cannot be told apart per
engine: the graph's kernels carry no mark of the engine or fallback they came from (CUPTI's graph
node ids are not read).

Per-engine mode, Python runtime (`PythonTorchTensorRTModule` 2.11/2.12): after its capture a call
enqueues nothing (`execute_async_v3` is not called) and runs `self.cudagraph.replay()` on the engine
stream instead, so `CUDAGraph.replay` is wrapped: inside a Python engine call with no timed enqueue,
the replay is the call's `exec` row, with events on the current (engine) stream.
"""
from __future__ import annotations

import functools

from trtprof.capture import cudagraphs, events, graph, state
from trtprof.capture.recorder import now
from trtprof.capture.state import is_tracing, shapes_of


def wrapper_forward(orig):
    @functools.wraps(orig)
    def forward(self, *args, **kwargs):
        ins = state.ACTIVE
        if ins is None or ins.stacks.muted or is_tracing(args) or not cudagraphs.whole_graph(ins):
            return orig(self, *args, **kwargs)  # outside whole-graph mode it just calls its module
        inner = getattr(self, "compiled_module", None)
        info = graph.instrument(ins, inner) if inner is not None else None
        if info is None:
            return orig(self, *args, **kwargs)
        return _run_whole(ins, info, self, orig, args, kwargs)
    forward.__wrapped__ = orig
    return forward


def _run_whole(ins, info, wrapper, orig, args, kwargs):
    st = ins.stacks
    before = getattr(wrapper, "cudagraph", None)
    st.cg_phase, outer = cudagraphs.CAPTURE, st.cg_phase  # inner rows only run when it captures
    cudagraphs.Phases.active += 1
    frame = graph._open(ins, st.inferences, wrapper, info, shapes_of(args), ins.attrs(info, "inference"), ins.gpu)
    out = None
    try:
        out = orig(wrapper, *args, **kwargs)
        return out
    except BaseException as e:
        frame.raised = type(e).__name__
        raise
    finally:
        st.cg_phase = outer
        cudagraphs.Phases.active -= 1
        graph._close(ins, st.inferences, wrapper, ins.gpu)
        after = getattr(wrapper, "cudagraph", None)
        frame.cudagraph = cudagraphs.CAPTURE if after is not before or before is None else cudagraphs.REPLAY
        ins.cg_replays += frame.cudagraph is cudagraphs.REPLAY
        frame.out_shapes = state.output_shapes(out)
        st.last_end = None
        evs = (frame.ev0, frame.ev1) if frame.ev1 is not None else ()
        ins.rec.defer(graph._emit_inference, frame, evs, evs)
        if not st.inferences:
            ins.safe_point()


def wrapper_warm_up(orig):
    @functools.wraps(orig)
    def warm_up(self, *args, **kwargs):
        ins = state.ACTIVE
        if ins is None:
            return orig(self, *args, **kwargs)
        st = ins.stacks
        st.cg_phase, outer = cudagraphs.WARMUP, st.cg_phase
        cudagraphs.Phases.active += 1
        try:
            return orig(self, *args, **kwargs)
        finally:
            st.cg_phase = outer
            cudagraphs.Phases.active -= 1
    warm_up.__wrapped__ = orig
    return warm_up


def graph_replay(orig):
    """`torch.cuda.CUDAGraph.replay`: the `exec` of a Python engine call in per-engine mode. Without
    events on subgraph ranges (minimal level, --no-brackets) the row has host times only: its kernels
    are given to it by their launch times, so it must be there."""
    @functools.wraps(orig)
    def replay(self, *args, **kwargs):
        ins = state.ACTIVE
        calls = ins.stacks.calls if ins is not None else None
        frame = calls[-1] if calls else None
        if frame is None or frame.info.runtime != "python":
            return orig(self, *args, **kwargs)  # not inside a Python engine call
        gpu = ins.range_gpu
        if gpu is not None and frame.exec is not None and frame.exec[3] is not events.NOT_RECORDED:
            return orig(self, *args, **kwargs)  # its enqueue was timed
        stream = gpu.current_stream() if gpu is not None else None
        ins.marks.push(ins.attrs(frame.info, "exec"))
        t0 = now()
        ev0 = gpu.record(stream) if gpu is not None else None
        try:
            return orig(self, *args, **kwargs)
        finally:
            t1 = now()
            ins.marks.pop()
            frame.exec = (t0, t1, ev0, gpu.record(stream) if gpu is not None else None, stream)
            frame.enqueued = True
            if gpu is not None:
                events.adopt(ins, frame)
    replay.__wrapped__ = orig
    return replay


def install(ins, torch) -> list:
    """Wrap the whole-graph wrapper's forward and warm_up, and CUDAGraph.replay (with CUDA only);
    returns the (owner, name, original) triples to restore. Finds the runtime's mode module."""
    saved = []
    ins.cg_modes = cudagraphs.find_modes()
    cls = cudagraphs.find_wrapper()
    for name, factory in (("forward", wrapper_forward), ("warm_up", wrapper_warm_up)):
        orig = cls.__dict__.get(name) if cls is not None else None
        if orig is not None:
            saved.append((cls, name, orig))
            setattr(cls, name, factory(orig))
    graph_cls = getattr(torch.cuda, "CUDAGraph", None) if ins.gpu is not None else None
    orig = getattr(graph_cls, "replay", None) if graph_cls is not None else None
    if orig is not None:
        saved.append((graph_cls, "replay", graph_cls.__dict__.get("replay", orig)))
        graph_cls.replay = graph_replay(orig)
    return saved
