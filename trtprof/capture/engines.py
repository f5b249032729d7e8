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
"""
from __future__ import annotations


from trtprof.capture import graph, state
from trtprof.capture.recorder import now
from trtprof.capture.allocations import group_call, split_by_calls
from trtprof.capture.state import FLIP_NOTE, CallFrame, is_tracing, output_shapes, shapes_of


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
        stream = getattr(mod, "_engine_stream", None)
        gpu = ins.gpu
        ins.marks.push(ins.attrs(frame.info, "exec"))
        t0 = now()
        ev0 = gpu.record(stream) if gpu else None
        try:
            return ctx.execute_async_v3(*args, **kwargs)
        finally:
            t1 = now()
            ins.marks.pop()
            ev1 = gpu.record(stream) if gpu else None
            frame.exec = (t0, t1, ev0, ev1, stream.cuda_stream if stream is not None else None)
            frame.enqueued = True


def _begin(ins, module, runtime: str, inputs, prealloc) -> CallFrame:
    """Register the call; `prealloc` is a callable reading the module's current mode."""
    info = ins.subgraphs.get(module) or graph.discover(ins, module, runtime)
    if ins.policy is not None:
        if info.model is None:  # an engine on its own: its calls are the blocks
            ins.apply_policy([module], info.calls, None)
        elif info.model.mode is None:  # model found mid-call (no pre-hook yet): set its mode now
            info.model.mode = ins.apply_policy(info.model.engines, max(info.model.calls - 1, 0), None)
    frame = CallFrame(module, info, info.calls, prealloc(module), shapes_of(inputs))
    if frame.flipped:
        inf = ins.stacks.inferences
        if inf and inf[-1].info is info.model:
            inf[-1].exclude = True
    frame.model, frame.inference = ins.inference_of(info)
    info.calls += 1
    ins.stacks.calls.append(frame)
    return frame


def _emit(ins, frame: CallFrame, groups=None) -> None:
    """Turn a finished call into rows: call, exec, and one per allocation (pass).

    `groups`: C++ runtime allocation groups from the allocator log (None when not recorded)."""
    info = frame.info
    if groups is not None:
        frame.allocs = [(g.phase, g.start_ns, g.end_ns, None, g.bytes, g) for g in groups]  # sizes, not shapes
    allocated_before = any(a[0] == "before_exec" for a in frame.allocs)
    realloc = frame.prealloc and allocated_before
    known = info.runtime == "python" or groups is not None
    outputs = ("preallocated" if frame.prealloc and not allocated_before else "new") if known else None
    common = dict(model=frame.model, inference=frame.inference, subgraph=info.name, subgraph_kind="engine",
                  runtime=info.runtime, call=frame.call, input_shapes=frame.shapes, prealloc=frame.prealloc,
                  shape_changed=frame.changed, thread=frame.thread)
    if frame.flipped:
        common.update(exclude=True, note=FLIP_NOTE)
    rec = ins.rec
    ex = frame.exec
    stream = ex[4] if ex else None
    base = rec.new("call", **common)
    rec.add(rec.derive(base, "call", host_start_ns=frame.t0, host_end_ns=frame.t1, shapes=frame.out_shapes,
                       outputs=outputs, reallocated=realloc, stream=stream))
    if ex is not None:
        rec.add(rec.derive(base, "exec", host_start_ns=ex[0], host_end_ns=ex[1], stream=stream, outputs=outputs,
                           reallocated=realloc), ex[2], ex[3])
    for phase, a0, a1, ashapes, nbytes, *g in frame.allocs:
        extra = {}
        if g:  # from the allocator log
            extra = dict(new_segment=g[0].new_segments > 0, note=_group_note(g[0]))
        rec.add(rec.derive(base, "alloc", host_start_ns=a0, host_end_ns=a1, alloc_phase=phase, shapes=ashapes,
                           bytes=nbytes, reallocated=realloc and phase == "before_exec", **extra))


def _group_note(g) -> str:
    note = f"{g.count} allocator allocations"
    if g.new_segments:
        note += f", {g.new_segments} from new cudaMalloc segments"
    if g.temp_count:
        note += f", {g.temp_count} freed within the call ({g.temp_bytes} B: cast staging or workspace)"
    return note


def harvest_cpp(ins) -> None:
    """Attribute the allocator log to the finished C++ calls and emit their rows."""
    pending, ins.cpp_pending = sorted(ins.cpp_pending, key=lambda f: f.t0), []
    if not pending:
        return
    entries = ins.alloc_log.harvest() if ins.alloc_log is not None else []
    by_call = split_by_calls(entries, pending)
    for i, frame in enumerate(pending):
        groups = group_call(by_call.get(i, []), frame.prealloc, frame.expect_after)
        _emit(ins, frame, groups)


def _python_mode(module) -> bool:
    return bool(getattr(module, "use_pre_allocated_outputs", False))


def _cpp_mode(module) -> bool:
    return bool(getattr(getattr(module, "engine", None), "use_pre_allocated_outputs", False))


def python_forward(orig):
    def forward(self, *inputs):
        ins = state.ACTIVE
        if ins is None or is_tracing(inputs):
            return orig(self, *inputs)
        ctx = self.__dict__.get("context")
        if ctx is not None and type(ctx) is not ContextProxy:
            self.__dict__["context"] = ContextProxy(ctx, self)
            ins.proxied.add(self)
        frame = _begin(ins, self, "python", inputs, _python_mode)
        ins.marks.push(ins.attrs(frame.info, "call"))
        frame.t0 = now()
        out = None
        try:
            out = orig(self, *inputs)
            return out
        finally:
            frame.t1 = now()
            ins.marks.pop()
            ins.stacks.calls.pop()
            frame.out_shapes = output_shapes(out)
            _emit(ins, frame)
    forward.__wrapped__ = orig
    return forward


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
        frame.allocs.append((phase, t0, t1, shapes_of(outs),
                             sum(o.numel() * o.element_size() for o in outs)))
        return outs
    create_output_tensors.__wrapped__ = orig
    return create_output_tensors


def cpp_forward(orig):
    def forward(self, *inputs):
        ins = state.ACTIVE
        if ins is None or is_tracing(inputs):
            return orig(self, *inputs)
        frame = _begin(ins, self, "cpp", inputs, _cpp_mode)
        log = ins.alloc_log
        if log is not None and not log.active:
            log.start()
        gpu = ins.gpu
        ins.marks.push(ins.attrs(frame.info, "exec"))
        frame.t0 = t0 = now()  # with the NVTX push; the events below are part of the range
        stream = gpu.current_stream() if gpu else None
        ev0 = gpu.record(stream) if gpu else None
        out = None
        try:
            out = orig(self, *inputs)
            return out
        finally:
            frame.t1 = t1 = now()
            ins.marks.pop()
            ev1 = gpu.record(stream) if gpu else None
            frame.exec = (t0, t1, ev0, ev1, stream.cuda_stream if gpu else None)
            ins.stacks.calls.pop()
            frame.out_shapes = output_shapes(out)
            if log is None:
                _emit(ins, frame)
            else:  # rows wait for the allocator log, harvested at the next safe point
                ins.cpp_pending.append(frame)
                if len(ins.cpp_pending) >= 4096:
                    harvest_cpp(ins)
    forward.__wrapped__ = orig
    return forward
