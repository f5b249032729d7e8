"""The compiled model around the engines: top-level inferences and PyTorch fallback subgraphs.

Torch-TensorRT returns a `torch.fx.GraphModule` whose children are the engines (`_run_on_acc_N`,
runtime modules) and the fallback graphs (`_run_on_gpu_N`, plain GraphModules). Such a module can come
from `compile`, `dynamo.compile`, `load`, pickling or a user's own wrapper, so instead of chasing every
factory we find it from the engine: the first time an engine instance runs, the caller's frame holds
its parent module. The parent then gets forward hooks (one range per inference) and so do its fallback
children. `instrument()` does the same eagerly for a module the user hands us.

How they are hooked: a `torch.fx.GraphModule` has a class of its own (`GraphModuleImpl`, one per
instance), so we wrap that class's `forward`, which costs about a tenth of what forward hooks cost
(hooks send every call through `nn.Module`'s slow path: ~1.1 us against ~0.1 us per call on the
CI machine). Any other module gets forward hooks.
"""
from __future__ import annotations

import functools
import sys
import threading

import torch

from trtprof.capture import cudagraphs, records as R, sampling, state
from trtprof.capture.events import end_event, gpu_start, span, start_event
from trtprof.capture.recorder import now
from trtprof.capture.state import (_SHAPE, COLD_NOTE, FLIP_NOTE, ModelInfo, RangeFrame, SubgraphInfo, fill_range,
                                   is_tracing, output_shapes, shapes_of)

FALLBACK_PREFIX = "_run_on_gpu"
_INFERENCE, _FALLBACK = ("inference", ""), ("fallback", "")  # keys of NVTX attributes in info.attrs


def _find_parent(child: torch.nn.Module, depth: int = 16):
    """The module that has `child` as a direct child, from the frames calling it; None if not found."""
    f = sys._getframe(2)
    for _ in range(depth):
        if f is None:
            break
        owner = f.f_locals.get("self")
        if isinstance(owner, torch.nn.Module) and owner is not child:
            if any(c is child for c in owner.children()):
                return owner
        f = f.f_back
    return None


def discover(ins, module: torch.nn.Module, runtime: str) -> SubgraphInfo:
    """Register an engine seen for the first time, instrumenting the model it belongs to."""
    parent = _find_parent(module)
    if parent is not None and parent not in ins.models:
        model = instrument(ins, parent)
        if model is not None:  # its call 0 is under way, unseen by its pre-hook: rows still say 0
            model.calls = 1
            ins.stacks.partial = model
    info = ins.subgraphs.get(module)
    if info is None:  # an engine called on its own, outside any compiled graph
        name = getattr(module, "name", "") or f"engine{ins.standalone_count}"
        ins.standalone_count += 1
        info = ins.register(module, SubgraphInfo(str(name), "engine", runtime))
    return info


def _runtime_of(ins, module) -> str | None:
    for rt, cls in ins.runtime_classes.items():
        if cls is not None and isinstance(module, cls):
            return rt
    return None


def instrument(ins, model: torch.nn.Module) -> ModelInfo | None:
    """Hook a compiled model (its engines and fallbacks); None when it holds no engine."""
    if model in ins.models:
        return ins.models[model]
    children = list(model.named_children())
    engines = [(n, c, rt) for n, c in children if (rt := _runtime_of(ins, c))]
    if not engines:
        return None
    info = ins.models[model] = ModelInfo(f"model{ins.model_count}", type(model).__name__,
                                         shareable=isinstance(model, torch.fx.GraphModule))
    ins.register(model, info)
    ins.model_count += 1
    for name, child, rt in engines:
        info.children.append((child, ins.register(child, SubgraphInfo(name, "engine", rt, info))))
    _hook(ins, model, _model_pre, _model_post, info)
    for name, child in children:
        if name.startswith(FALLBACK_PREFIX) and child not in ins.subgraphs:
            info.children.append((child, ins.register(child, SubgraphInfo(name, "fallback", "torch", info))))
            _hook(ins, child, _fallback_pre, _fallback_post)
    return info


def _hook(ins, module, pre, post, model: ModelInfo | None = None) -> None:
    """Wrap the forward of `module`'s own class (a GraphModule), else register forward hooks."""
    cls = type(module)
    orig = cls.__dict__.get("forward")
    if orig is not None and cls.__qualname__.rsplit(".", 1)[-1] == "GraphModuleImpl" \
            and not hasattr(orig, "_trtprof_pre"):
        forward = functools.wraps(orig)(_model_wrapper(orig, model) if model is not None else _wrapper(orig, pre, post))
        forward._trtprof_pre = pre
        cls.forward = forward
        ins.restore.append((cls, forward, orig))
        return
    ins.hook_handles.append(module.register_forward_pre_hook(pre))
    ins.hook_handles.append(module.register_forward_hook(post, always_call=True))


def _wrapper(orig, pre, post):
    """A fallback graph's forward. Nothing is called when nothing is recorded: on the GPU machine's
    host every Python call between TensorRT enqueues costs microseconds."""
    def forward(self, *args, **kwargs):
        ins = state.ACTIVE
        if ins is None or ins.stacks.muted:
            return orig(self, *args, **kwargs)
        if ins.lean:
            return run_fallback(ins, self, orig, args, kwargs)
        pre(self, args)
        out = None
        try:
            out = orig(self, *args, **kwargs)
            return out
        finally:
            post(self, args, out)
    return forward


def _model_wrapper(orig, info: ModelInfo):
    """A compiled model's forward, with sampling's common case inline: an inference that is not a
    multiple of `sample`, with the previous inference's input shapes (real tensors: nothing is
    tracing), is run muted without any further call (`sampling.recorded` decides the rest).
    A recorded inference calls the two hooks from here (no further wrapper frame)."""
    def forward(self, *args, **kwargs):
        ins = state.ACTIVE
        if ins is None:
            return orig(self, *args, **kwargs)
        st = ins.stacks
        if st.muted:  # inside an inference that is not recorded
            return orig(self, *args, **kwargs)
        n = ins.sample
        if n > 1 and info.calls % n and not info.after_change and args and type(args[0]) is _TENSOR:
            try:
                same = tuple([a.shape for a in args]) == info.seen
            except AttributeError:
                same = False
            if same:
                info.calls += 1
                info.skipped += 1
                st.muted = 1
                try:
                    return orig(self, *args, **kwargs)
                finally:
                    st.muted = 0
        _model_pre(self, args)
        out = None
        try:
            out = orig(self, *args, **kwargs)
            return out
        finally:
            _model_post(self, args, out)
    return forward


_TENSOR = torch.Tensor


def unhook(ins) -> None:
    for h in ins.hook_handles:
        h.remove()
    ins.hook_handles.clear()
    for cls, wrapper, orig in reversed(ins.restore):
        if cls.__dict__.get("forward") is wrapper:  # not replaced since (recompile())
            cls.forward = orig
    ins.restore.clear()


# -- top-level inference and fallback ranges ------------------------------------------------------
def _open(ins, stack, module, info, shapes, attrs, gpu) -> RangeFrame:
    frame = RangeFrame(module, info, info.calls, shapes)
    frame.cudagraph = cudagraphs.current(ins)
    info.calls += 1
    stack.append(frame)
    ins.marks.push(attrs)
    frame.t0 = now()  # taken with the NVTX push, so both clocks see the same start
    if gpu:
        frame.stream = gpu.current_stream()
        frame.ev0 = gpu.record(frame.stream) if stack is ins.stacks.inferences \
            else start_event(ins, gpu, frame.stream)
    elif ins.gpu and stack is ins.stacks.inferences:  # full level: no events, but say which stream
        frame.stream = ins.gpu.current_stream()
    return frame


def _close(ins, stack, module, gpu) -> RangeFrame | None:
    if not stack or stack[-1].module is not module:
        return None  # discovered during this call: its start was not seen
    frame = stack.pop()
    frame.t1 = now()
    ins.marks.pop()
    if gpu:
        frame.ev1 = gpu.record(frame.stream)
    return frame


def _model_pre(module, args):
    ins = state.ACTIVE
    if ins is None:
        return
    st = ins.stacks
    if st.muted:  # a model called inside an inference that is not recorded: balance _model_post
        st.muted += 1
        return
    if is_tracing(args):
        return
    info = ins.by_id.get(id(module))
    if info is None:
        return
    if st.inferences and st.inferences[-1].info is info:
        if st.inferences[-1].module is not module:  # run by its CUDA-graph wrapper: that call's row
            return
        _drop(ins, st)  # its own earlier call, never closed (a KeyboardInterrupt past a forward hook)
    if st.partial is info:
        st.partial = None
    if ins.policy is not None:
        info.mode = ins.apply_policy(info.engines, info.calls, info.mode)
    cg_flip = ins.cg_flip.apply(info) if ins.cg_flip is not None else None
    shapes = shapes_of(args)
    if ins.sample > 1 and not sampling.recorded(ins, info, shapes):
        sampling.skip(ins, info)  # not recorded: every hook inside passes through until _model_post
        return
    if info.skipped:
        sampling.catch_up(ins, info)
    st.last_end = None
    if ins.sample > 1 and not st.inferences:
        sampling.resume(ins)  # kernel activity and the allocator log only around recorded inferences
    gpu = ins.gpu
    if gpu is not None and not st.inferences:  # once a second: the GPU clock anchored afresh where it is idle
        t = now()
        if t >= gpu.next_anchor_ns:
            gpu.reanchor(t)
    frame = _open(ins, st.inferences, module, info, shapes, info.attrs.get(_INFERENCE) or ins.attrs(info, "inference"),
                  ins.inference_gpu)
    if cg_flip is not None:
        frame.exclude = cg_flip


def _model_post(module, args, out):
    ins = state.ACTIVE
    if ins is None:  # paused (or stopped) inside this inference: undo what its pre hook did
        owner = state.OWNER
        ins = owner.ins if owner is not None else None
        if ins is not None:
            st = ins.stacks
            if st.muted:
                st.muted -= 1
            elif st.inferences and st.inferences[-1].module is module:
                _drop(ins, st)
        return
    if ins.stacks.muted:
        ins.stacks.muted -= 1
        return
    frame = _close(ins, ins.stacks.inferences, module, ins.inference_gpu)
    if frame is None:
        return
    ins.stacks.last_end = None
    frame.out_shapes = state.output_shapes(out)
    if out is None:  # the hook is always called; on an exception with no result, from torch's except block
        exc = sys.exc_info()[1]
        if exc is not None:
            frame.raised = type(exc).__name__
    evs = (frame.ev0, frame.ev1) if frame.ev1 is not None else ()
    ins.rec.defer(_emit_inference, frame, evs, evs)
    if not ins.stacks.inferences:
        if ins.sample > 1:
            sampling.pause(ins, frame.info)
        ins.safe_point()  # outside every range: batched work happens here, not inside a range


def _drop(ins, st) -> None:
    """The inference on top of this thread's stack will never be closed by its post hook (recording
    was paused inside it, or an interrupt skipped the hook): it is dropped unrecorded (the hooks inside
    passed through from then on, so its rows would be partial), its NVTX range is closed, and,
    outermost, its place among the recorded inferences in flight is given back. Without this, the
    stale frame made every later inference of that model on the thread look like a call from its
    CUDA-graph wrapper (not recorded), and under sampling kept kernel activity and the allocator log
    on for good."""
    st.inferences.pop()
    ins.marks.pop()
    if not st.inferences and ins.sample > 1:
        sampling.leave(ins)


def _fallback_pre(module, args):
    ins = state.ACTIVE
    if ins is None:
        return
    if ins.stacks.muted or is_tracing(args):  # muted: an inference sampling leaves out
        return
    info = ins.by_id.get(id(module))
    if info is None:
        return
    _open(ins, ins.stacks.fallbacks, module, info, shapes_of(args),
          info.attrs.get(_FALLBACK) or ins.attrs(info, "fallback"), ins.range_gpu)


def _fallback_post(module, args, out):
    ins = state.ACTIVE
    gpu = ins.range_gpu if ins is not None else None
    frame = _close(ins, ins.stacks.fallbacks, module, gpu) if ins is not None else None
    if frame is None:
        return
    info = frame.info
    frame.changed = info.last_shapes is not None and frame.shapes != info.last_shapes
    info.last_shapes = frame.shapes
    frame.model, frame.inference = ins.inference_of(info)
    frame.out_shapes = state.output_shapes(out)
    if gpu:
        evs = (frame.ev0, frame.ev1)
        ins.rec.defer(_emit_fallback, frame, evs, evs[:1] if end_event(ins, frame, frame.stream, frame.ev1) else evs)
    else:
        ins.rec.defer(_emit_fallback, frame)


(_THREAD, _INF, _CALL, _T0, _T1, _GS, _GE, _STREAM, _IN, _SHAPES, _CHANGED, _EXCL, _NOTE, _CG) = (
    R.INDEX[k] for k in ("thread", "inference", "call", "host_start_ns", "host_end_ns", "gpu_start_ns",
                         "gpu_end_ns", "stream", "input_shapes", "shapes", "shape_changed", "exclude", "note",
                         "cudagraph"))


def _range_row(frame, host, event: str) -> list:
    r = state.template(frame.info, event)
    r[_THREAD], r[_CALL], r[_T0], r[_T1] = frame.thread, frame.index, frame.t0, frame.t1
    if frame.ev1 is not None:
        r[_GS], r[_GE] = gpu_start(host, frame.ev0, frame.t0), host(frame.ev1)
    else:  # an inference at the full level: the span of its subgraphs
        r[_GS], r[_GE] = frame.gs, frame.ge
    r[_STREAM] = frame.stream.cuda_stream if frame.stream is not None else None
    r[_IN], r[_SHAPES] = frame.shapes, frame.out_shapes
    cg = r[_CG] = frame.cudagraph
    if cg in cudagraphs.NOT_TIMED:
        r[_EXCL], r[_NOTE] = True, cudagraphs.NOTES[cg]
    elif frame.index == 0 and state.first_in_process(frame.module):  # a CUDA-graph note says more
        r[_EXCL], r[_NOTE] = True, COLD_NOTE
    return r


def _emit_inference(rec, frame, host) -> None:
    r = _range_row(frame, host, "inference")
    r[_INF] = frame.index
    if frame.exclude and r[_NOTE] is not COLD_NOTE:  # a cold start keeps its note
        r[_EXCL], r[_NOTE] = True, FLIP_NOTE if frame.exclude is True else frame.exclude
    if frame.raised is not None:
        r[_EXCL], r[_NOTE] = True, state.raised_note(frame.raised)
    rec.row(r)


def _emit_fallback(rec, frame, host) -> None:
    if frame.lean is not None:
        fill_range(frame)
    r = _range_row(frame, host, "fallback")
    r[_INF], r[_CHANGED] = frame.inference, frame.changed
    if r[_GS] is not None:
        span(frame, r[_GS], r[_GE])
    rec.row(r)


_NEW = RangeFrame.__new__
_NO = object()
_get_ident = threading.get_ident


def run_fallback(ins, module, orig, args, kwargs):
    """A fallback graph's call on the lean path (`Instrumentation.lean`: no pre-allocation policy): the
    row `_fallback_pre` + `_fallback_post` give, events shared as theirs are, in one function, its
    RangeFrame filled at the safe point (`state.fill_range`); why: engines.run_lean."""
    info = ins.by_id.get(id(module))
    if info is None or is_tracing(args):
        return orig(module, *args, **kwargs)
    try:
        shapes = tuple(map(_SHAPE, args))  # shapes_of without its frame: arguments are tensors
    except AttributeError:
        shapes = shapes_of(args)
    cg = cudagraphs.current(ins)
    index = info.calls
    info.calls = index + 1
    st = ins.stacks
    inf = st.inferences  # the inference it is in: its label and index are read at the safe point
    top, partial = inf[-1] if inf else None, st.partial
    frame = _NEW(RangeFrame)
    attrs = info.attrs.get(_FALLBACK, _NO)  # None where no tool listens to NVTX (nvtx's dummy domain)
    ins.marks.push(ins.attrs(info, "fallback") if attrs is _NO else attrs)
    frame.t0 = now()  # with the NVTX push, as in _open
    gpu, frame.parent = ins.range_gpu, None
    if gpu is None:
        frame.stream = frame.ev0 = frame.ev1 = None
    else:
        stream = frame.stream = gpu.current_stream()
        frame.ev0 = start_event(ins, gpu, stream)
    out = None
    try:
        out = orig(module, *args, **kwargs)
        return out
    finally:
        frame.t1 = now()
        ins.marks.pop()
        if gpu is not None:
            frame.ev1 = gpu.record(stream)
        last = info.last_shapes
        info.last_shapes = shapes
        frame.lean = (module, info, index, shapes, cg, _get_ident(),
                      (out.shape,) if type(out) is _TENSOR else output_shapes(out),
                      last is not None and shapes != last, top, partial)
        if gpu is None:
            ins.rec.defer(_emit_fallback, frame)
        else:
            evs = (frame.ev0, frame.ev1)
            ins.rec.defer(_emit_fallback, frame, evs, evs[:1] if end_event(ins, frame, stream, evs[1]) else evs)
