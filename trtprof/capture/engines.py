"""Hooks on the Torch-TensorRT runtime modules: calls, output allocations, engine enqueues.

Python runtime (`PythonTorchTensorRTModule`): its `forward` allocates outputs with
`create_output_tensors()` (before execution, or right after the enqueue for the next call when
pre-allocated outputs are on) and enqueues with `context.execute_async_v3(engine_stream)`. We wrap
`forward` and `create_output_tensors` on the class, and give each instance's execution context a thin
proxy whose `execute_async_v3` records CUDA events on the engine stream, the stream the engine's
kernels really run on.

C++ runtime (`TorchTensorRTModule`): allocation and enqueue happen inside
`torch.ops.tensorrt.execute_engine`; here we bracket the call with events on the caller stream (the
engine stream waits on it and it waits on the engine stream, so the pair encloses the engine's work).

The hooks only note times, events and shapes on a `CallFrame`; rows are built later, at a safe
point (`_emit`, run by the recorder's drain), so the call itself pays for as little as possible.
"""
from __future__ import annotations

import operator
import threading

from trtprof.capture import cudagraphs, events, graph, records as R, state
from trtprof.capture.recorder import now
from trtprof.capture.allocations import group_call
from trtprof.capture.state import (_SHAPE, COLD_NOTE, FLIP_NOTE, CallFrame, fill_call, is_tracing,
                                   output_shapes, shapes_of)

_NBYTES = operator.attrgetter("nbytes")
_EVENT = R.INDEX["event"]
_EXEC, _CALL_KEY = ("exec", ""), ("call", "")  # keys of an engine's NVTX attributes in SubgraphInfo.attrs

(_THREAD, _INF, _CALL, _T0, _T1, _GS, _GE, _STREAM, _IN, _SHAPES, _BYTES, _PRE, _PHASE, _OUTS, _CHANGED,
 _REALLOC, _SEG, _EXCL, _NOTE, _CG) = (R.INDEX[k] for k in (
    "thread", "inference", "call", "host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns", "stream",
    "input_shapes", "shapes", "bytes", "prealloc", "alloc_phase", "outputs", "shape_changed", "reallocated",
    "new_segment", "exclude", "note", "cudagraph"))


class ContextProxy:
    """Stands in for a TensorRT execution context; forwards everything, times `execute_async_v3`."""

    __slots__ = ("_trt_context", "_trt_module")

    def __init__(self, context, module):
        object.__setattr__(self, "_trt_context", context)
        object.__setattr__(self, "_trt_module", module)

    def __getattr__(self, name):
        return getattr(self._trt_context, name)

    def __setattr__(self, name, value):
        setattr(self._trt_context, name, value)

    def execute_async_v3(self, *args, **kwargs):
        ins = state.ACTIVE
        ctx, mod = self._trt_context, self._trt_module
        frame = ins.current_call(mod) if ins is not None else None
        if frame is None:
            return ctx.execute_async_v3(*args, **kwargs)
        gpu = ins.range_gpu
        stream = getattr(mod, "_engine_stream", None) if gpu else None
        ins.marks.push(frame.info.attrs.get(_EXEC) or ins.attrs(frame.info, "exec"))
        t0 = now()
        ev0 = gpu.record(stream) if gpu else None
        try:
            return ctx.execute_async_v3(*args, **kwargs)
        finally:
            t1 = now()
            ins.marks.pop()
            ev1 = gpu.record(stream) if gpu else None
            frame.exec = (t0, t1, ev0, ev1, stream)
            frame.enqueued = True
            if gpu:  # on the engine stream: extends the inference's span, shares nothing
                events.adopt(ins, frame)


def _begin(ins, module, info, inputs, prealloc: bool) -> CallFrame:
    if ins.policy is not None:
        if info.model is None:  # an engine on its own: its calls are the blocks
            ins.apply_policy([module], info.calls, None)
            prealloc = info.mode = state.mode_of(module, info.runtime)
        elif info.model.mode is None:  # model found mid-call (no pre-hook yet): set its mode now
            info.model.mode = ins.apply_policy(info.model.engines, max(info.model.calls - 1, 0), None)
            prealloc = info.mode = state.mode_of(module, info.runtime)
    frame = CallFrame(module, info, info.calls, prealloc, shapes_of(inputs), cudagraphs.current(ins))
    if frame.flipped or frame.cg_captured:
        _leave_out(ins, info, frame.flipped)
    frame.model, frame.inference = ins.inference_of(info)
    info.calls += 1
    ins.stacks.calls.append(frame)
    return frame


def _leave_out(ins, info, flipped: bool) -> None:
    """The call flipped the pre-allocation mode, or captured a CUDA graph: its inference is left out."""
    inf = ins.stacks.inferences
    if inf and inf[-1].info is info.model:
        inf[-1].exclude = FLIP_NOTE if flipped else cudagraphs.NOTES[cudagraphs.CAPTURE]


def tracking_setter(orig):
    """Wraps `set_pre_allocated_outputs`: the cached mode of that engine is read again, and the mode
    it had before is kept for the first change between two inferences (sampling: the mode the
    previous inference ran with, if that one was skipped)."""
    def set_pre_allocated_outputs(self, enable):
        ins = state.ACTIVE
        info = ins.by_id.get(id(self)) if ins is not None else None
        if info is not None and info.model is not None and info.set_at != info.model.calls:
            info.set_at, info.before_set = info.model.calls, state.mode_of(self, info.runtime, info)
        out = orig(self, enable)
        if info is not None:
            info.mode = None
        return out
    set_pre_allocated_outputs.__wrapped__ = orig
    return set_pre_allocated_outputs


def _emit(rec, frame: CallFrame, host) -> None:
    """Rows of a finished call (run at drain): call, exec, and one per allocation (pass)."""
    if frame.lean is not None:
        fill_call(frame)
    info = frame.info
    groups = frame.groups
    allocs = frame.allocs if groups is None else [(g.phase, g.start_ns, g.end_ns, None, g.bytes, g) for g in groups]
    allocated_before = bool(allocs) and any(a[0] == "before_exec" for a in allocs)
    realloc = frame.prealloc and allocated_before
    known = info.runtime == "python" or groups is not None
    outputs = ("preallocated" if frame.prealloc and not allocated_before else "new") if known else None
    base = state.template(info, "call")
    base[_THREAD], base[_INF], base[_CALL], base[_IN] = frame.thread, frame.inference, frame.call, frame.shapes
    base[_PRE], base[_CHANGED] = frame.prealloc, frame.changed
    cg = base[_CG] = frame.cudagraph
    if cg is not None and (frame.cg_captured or cg in cudagraphs.NOT_TIMED):
        base[_EXCL], base[_NOTE] = True, cudagraphs.NOTES[cg if cg in cudagraphs.NOT_TIMED else cudagraphs.CAPTURE]
    graph_note = bool(base[_EXCL])  # kept over the cold start's: its rows lack GPU times
    if frame.flipped:
        base[_EXCL], base[_NOTE] = True, FLIP_NOTE
    if frame.call == 0 and not graph_note and state.first_in_process(frame.module):
        base[_EXCL], base[_NOTE] = True, COLD_NOTE
    if frame.raised is not None:
        base[_EXCL], base[_NOTE] = True, state.raised_note(frame.raised)
    ex = frame.exec
    stream = ex[4].cuda_stream if ex is not None and ex[4] is not None else None
    r = base.copy()
    r[_T0], r[_T1], r[_SHAPES], r[_OUTS], r[_REALLOC], r[_STREAM] = (frame.t0, frame.t1, frame.out_shapes,
                                                                    outputs, realloc, stream)
    rec.row(r)
    if ex is not None:
        r = base.copy()
        r[_EVENT] = "exec"
        r[_T0], r[_T1], r[_STREAM], r[_OUTS], r[_REALLOC] = ex[0], ex[1], stream, outputs, realloc
        if ex[2] is not None or ex[3] is not None:  # no events (host times only): nothing to convert
            r[_GS], r[_GE] = events.gpu_start(host, ex[2], ex[0]), host(ex[3])
            events.span(frame, r[_GS], r[_GE])
        rec.row(r)
    for phase, a0, a1, ashapes, nbytes, *g in allocs:
        r = base.copy()
        r[_EVENT] = "alloc"
        r[_T0], r[_T1], r[_PHASE], r[_SHAPES], r[_BYTES] = a0, a1, phase, ashapes, nbytes
        r[_REALLOC] = realloc and phase == "before_exec"
        if g:  # from the allocator log
            r[_SEG], r[_NOTE] = g[0].new_segments > 0, _group_note(g[0])
        rec.row(r)


def _group_note(g) -> str:
    note = f"{g.count} allocator allocations"
    if g.phase == "output_allocator":
        note += " (output allocator: buffers sized inside the enqueue, then the outputs copied out)"
    if g.new_segments:
        note += f", {g.new_segments} from new cudaMalloc segments"
    if g.temp_count:
        note += f", {g.temp_count} freed within the call ({g.temp_bytes} B: cast staging or workspace)"
    return note


def _events(frame: CallFrame) -> tuple:
    ex = frame.exec
    return (ex[2], ex[3]) if ex is not None and ex[3] is not None else ()


def harvest_cpp(ins) -> None:
    """Attribute the allocator log to the finished C++ calls, which the recorder then emits."""
    pending, ins.cpp_pending = ins.cpp_pending, []  # taken first: a call may end on another thread
    for f in pending:
        if f.lean is not None:
            fill_call(f)
    pending.sort(key=lambda f: f.t0)
    if not pending:
        return
    by_call, log = {}, ins.alloc_log
    if log is not None:
        try:
            by_call = log.harvest(pending)
        except Exception as e:  # noqa: BLE001 - at a safe point, in the user's loop: the rows go on
            ins.lose_log("reading it", e)
    for i, frame in enumerate(pending):
        frame.groups = group_call(by_call.get(i, []), frame.prealloc, frame.expect_after,
                                  len(frame.out_shapes) or None, frame.output_allocator)
        frame.ready = True


def python_forward(orig):
    def forward(self, *inputs):
        ins = state.ACTIVE
        if ins is None:
            return orig(self, *inputs)
        if ins.stacks.muted or is_tracing(inputs):  # muted: an inference sampling leaves out
            return orig(self, *inputs)
        ctx = self.__dict__.get("context")
        if ctx is not None and type(ctx) is not ContextProxy:
            self.__dict__["context"] = ContextProxy(ctx, self)
            ins.proxied.add(self)
        info = ins.by_id.get(id(self)) or graph.discover(ins, self, "python")
        frame = _begin(ins, self, info, inputs, state.mode_of(self, "python"))
        return run_python(ins, frame, orig, self, *inputs)
    forward.__wrapped__ = orig
    return forward


def run_python(ins, frame: CallFrame, fn, *args):
    """Run an engine call whose allocations and enqueue are Python (hooked inside): time it, emit
    later. Shared by the Python runtime module and the op path's Python `TRTEngine`."""
    ins.stacks.last_end = None  # its events are on the engine stream: nothing to share
    ins.marks.push(frame.info.attrs.get(_CALL_KEY) or ins.attrs(frame.info, "call"))
    frame.t0 = now()
    out = None
    try:
        out = fn(*args)
        return out
    except BaseException as e:
        frame.raised = type(e).__name__
        raise
    finally:
        frame.t1 = now()
        ins.marks.pop()
        ins.stacks.calls.pop()
        frame.out_shapes = output_shapes(out)
        evs = _events(frame)
        ins.rec.defer(_emit, frame, evs, evs)


def python_create_outputs(orig):
    def create_output_tensors(self):
        ins = state.ACTIVE
        frame = ins.current_call(self) if ins is not None else None
        if frame is None:
            return orig(self)
        phase = "after_enqueue" if frame.enqueued else "before_exec"
        ins.marks.push(ins.attrs(frame.info, "alloc", phase))
        t0 = now()
        try:
            outs = orig(self)
        finally:
            t1 = now()
            ins.marks.pop()
        if ins.level == "full":  # nbytes: numel * element_size, read in C (no generator frame)
            frame.allocs.append((phase, t0, t1, shapes_of(outs), sum(map(_NBYTES, outs))))
        else:
            frame.allocs.append((phase, t0, t1, None, None))
        return outs
    create_output_tensors.__wrapped__ = orig
    return create_output_tensors


def cpp_forward(orig):
    def forward(self, *inputs):
        ins = state.ACTIVE
        if ins is None:
            return orig(self, *inputs)
        if ins.stacks.muted or is_tracing(inputs):  # muted: an inference sampling leaves out
            return orig(self, *inputs)
        info = ins.by_id.get(id(self)) or graph.discover(ins, self, "cpp")
        frame = _begin(ins, self, info, inputs, state.cpp_mode(self, info))
        return run_cpp(ins, frame, orig, self, *inputs)
    forward.__wrapped__ = orig
    return forward


def run_cpp(ins, frame: CallFrame, fn, *args):
    """Run an opaque engine call (allocation and enqueue inside C++): bracket it with events on
    the caller stream; its rows wait for the allocator log. Shared by the C++ runtime module's
    `forward` (module-classes path) and the op path."""
    info = frame.info
    log = ins.alloc_log
    if log is not None and not log.active:
        log = ins.start_log()
    gpu = ins.range_gpu
    ins.marks.push(info.attrs.get(_EXEC) or ins.attrs(info, "exec"))
    frame.t0 = t0 = now()  # with the NVTX push; the events below are part of the range
    if gpu:
        stream = gpu.current_stream()
        ev0 = events.start_event(ins, gpu, stream)
    else:
        stream = ev0 = None
        ins.stacks.last_end = None
    out = None
    try:
        out = fn(*args)
        return out
    except BaseException as e:
        frame.raised = type(e).__name__
        raise
    finally:
        frame.t1 = t1 = now()
        ins.marks.pop()
        ev1 = gpu.record(stream) if gpu else None
        frame.exec = (t0, t1, ev0, ev1, stream)
        ins.stacks.calls.pop()
        frame.out_shapes = output_shapes(out)
        evs = (ev0, ev1) if gpu else ()
        _pend(ins, frame, log, evs, evs[:1] if gpu and events.end_event(ins, frame, stream, ev1) else evs)


def _pend(ins, frame: CallFrame, log, evs: tuple, owned: tuple) -> None:
    """A finished C++ call to the recorder: its rows wait for the allocator log when there is one
    (harvested at the next safe point, or here once 4096 calls wait)."""
    if log is None:
        frame.ready = True
        ins.rec.defer(_emit, frame, evs, owned)
    else:
        frame.ready = False
        ins.cpp_pending.append(frame)
        ins.rec.defer(_emit, frame, evs, owned, frame)
        if len(ins.cpp_pending) >= 4096:
            harvest_cpp(ins)


_NEW = CallFrame.__new__
_NO = object()
_get_ident = threading.get_ident


def run_lean(ins, info, fn, inputs, engine, prealloc: bool):
    """A C++ engine call through the op on the lean path (`Instrumentation.lean`: no pre-allocation
    policy; engines without the output allocator): the rows `_begin` + `run_cpp` give, events shared
    at subgraph boundaries as `events.start_event`/`end_event` share them, in one function. Why: on the
    recorded inference every Python call and attribute store costs (bench/bench_hot_path.py --floor:
    what a range must do fits in a fifth of what the layered hooks took; this path took 15-20 % off
    the recorded inference's own time, docs/measurements.md), so the range keeps to what
    must be known in it (the subgraph's state the next call compares with, the inference's exclusion,
    the host times and shapes) and leaves a record; its CallFrame is filled at the safe point
    (`state.fill_call`), where the allocator log and the rows read it."""
    st = ins.stacks
    try:
        shapes = tuple(map(_SHAPE, inputs))  # shapes_of without its frame: inputs are tensors
    except AttributeError:
        shapes = shapes_of(inputs)
    cg = cudagraphs.current(ins)
    changed, last_prealloc, captured = state.advance(info, shapes, prealloc, cg)
    if prealloc != last_prealloc or captured:
        _leave_out(ins, info, prealloc != last_prealloc)
    inf = st.inferences  # the inference it is in: its label and index are read at the safe point
    top, partial = inf[-1] if inf else None, st.partial
    call = info.calls
    info.calls = call + 1
    log = ins.alloc_log
    if log is not None and not log.active:
        log = ins.start_log()
    frame = _NEW(CallFrame)
    attrs = info.attrs.get(_EXEC, _NO)  # None where no tool listens to NVTX (nvtx's dummy domain)
    ins.marks.push(ins.attrs(info, "exec") if attrs is _NO else attrs)
    frame.t0 = now()  # with the NVTX push; the events below are part of the range
    gpu, frame.parent = ins.range_gpu, None
    if gpu is None:
        ev0 = ev1 = stream = None
        st.last_end = None
    else:
        stream = gpu.current_stream()
        ev0 = events.start_event(ins, gpu, stream)
    out = raised = None
    try:
        out = fn(inputs, engine)
        return out
    except BaseException as e:
        raised = type(e).__name__
        raise
    finally:
        frame.t1 = now()
        ins.marks.pop()
        if gpu is None:
            evs = owned = ()
        else:
            ev1 = gpu.record(stream)
            evs = (ev0, ev1)
            owned = evs[:1] if events.end_event(ins, frame, stream, ev1) else evs
        if type(out) is list:  # the op's List[Tensor]
            try:
                outs = tuple(map(_SHAPE, out))
            except AttributeError:
                outs = output_shapes(out)
        else:
            outs = output_shapes(out)
        frame.lean = (engine, info, call, prealloc, shapes, changed, last_prealloc, cg, captured, top, partial,
                      _get_ident(), raised, outs, ev0, ev1, stream)
        _pend(ins, frame, log, evs, owned)
