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

import torch

from trtprof.capture import graph, state
from trtprof.capture.recorder import now
from trtprof.capture.state import CallFrame, is_tracing, output_shapes, shapes_of


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
        ev0 = gpu.record(stream) if gpu else None
        ins.marks.push(ins.attrs(frame.info, "exec"))
        t0 = now()
        try:
            return ctx.execute_async_v3(*args, **kwargs)
        finally:
            t1 = now()
            ins.marks.pop()
            ev1 = gpu.record(stream) if gpu else None
            frame.exec = (t0, t1, ev0, ev1, stream.cuda_stream if stream is not None else None)
            frame.enqueued = True


def _begin(ins, module, runtime: str, inputs, prealloc: bool) -> CallFrame:
    info = ins.subgraphs.get(module) or graph.discover(ins, module, runtime)
    frame = CallFrame(module, info, info.calls, prealloc)
    info.calls += 1
    ins.stacks.calls.append(frame)
    return frame


def _emit(ins, frame: CallFrame, inputs, out, t0: int, t1: int) -> None:
    """Turn a finished call into rows: call, exec, and one per allocation."""
    info = frame.info
    shapes = shapes_of(inputs)
    changed = info.last_shapes is not None and shapes != info.last_shapes
    info.last_shapes = shapes
    allocated_before = any(a[0] == "before_exec" for a in frame.allocs)
    realloc = frame.prealloc and allocated_before
    if info.runtime == "python":
        outputs = "preallocated" if frame.prealloc and not allocated_before else "new"
    else:
        outputs = None  # the C++ runtime decides inside the op; see the alloc rows when available
    model, inference = ins.inference_of(info)
    common = dict(model=model, inference=inference, subgraph=info.name, subgraph_kind="engine",
                  runtime=info.runtime, call=frame.call, input_shapes=shapes, prealloc=frame.prealloc,
                  shape_changed=changed)
    rec = ins.rec
    ex = frame.exec
    stream = ex[4] if ex else None
    rec.add(rec.new("call", host_start_ns=t0, host_end_ns=t1, shapes=output_shapes(out), outputs=outputs,
                    reallocated=realloc, stream=stream, **common))
    if ex is not None:
        rec.add(rec.new("exec", host_start_ns=ex[0], host_end_ns=ex[1], stream=stream, outputs=outputs,
                        reallocated=realloc, **common), ex[2], ex[3])
    for phase, a0, a1, ashapes, nbytes in frame.allocs:
        rec.add(rec.new("alloc", host_start_ns=a0, host_end_ns=a1, alloc_phase=phase, shapes=ashapes,
                        bytes=nbytes, reallocated=realloc and phase == "before_exec", **common))


def python_forward(orig):
    def forward(self, *inputs):
        ins = state.ACTIVE
        if ins is None or is_tracing(inputs):
            return orig(self, *inputs)
        ctx = self.__dict__.get("context")
        if ctx is not None and type(ctx) is not ContextProxy:
            self.__dict__["context"] = ContextProxy(ctx, self)
            ins.proxied.add(self)
        frame = _begin(ins, self, "python", inputs, bool(getattr(self, "use_pre_allocated_outputs", False)))
        ins.marks.push(ins.attrs(frame.info, "call"))
        t0 = now()
        out = None
        try:
            out = orig(self, *inputs)
            return out
        finally:
            t1 = now()
            ins.marks.pop()
            ins.stacks.calls.pop()
            _emit(ins, frame, inputs, out, t0, t1)
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
        engine = getattr(self, "engine", None)
        prealloc = bool(getattr(engine, "use_pre_allocated_outputs", False))
        frame = _begin(ins, self, "cpp", inputs, prealloc)
        gpu = ins.gpu
        ev0 = gpu.record() if gpu else None
        ins.marks.push(ins.attrs(frame.info, "exec"))
        t0 = now()
        out = None
        try:
            out = orig(self, *inputs)
            return out
        finally:
            t1 = now()
            ins.marks.pop()
            ev1 = gpu.record() if gpu else None
            stream = torch.cuda.current_stream().cuda_stream if gpu else None
            frame.exec = (t0, t1, ev0, ev1, stream)
            ins.stacks.calls.pop()
            _emit(ins, frame, inputs, out, t0, t1)
    forward.__wrapped__ = orig
    return forward
