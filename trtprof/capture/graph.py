"""The compiled model around the engines: top-level inferences and PyTorch fallback subgraphs.

Torch-TensorRT returns a `torch.fx.GraphModule` whose children are the engines (`_run_on_acc_N`,
runtime modules) and the fallback graphs (`_run_on_gpu_N`, plain GraphModules). Such a module can come
from `compile`, `dynamo.compile`, `load`, pickling or a user's own wrapper, so instead of chasing every
factory we find it from the engine: the first time an engine instance runs, the caller's frame holds
its parent module. The parent then gets forward hooks (one range per inference) and so do its fallback
children. `instrument()` does the same eagerly for a module the user hands us.
"""
from __future__ import annotations

import sys

import torch

from trtprof.capture import state
from trtprof.capture.recorder import now
from trtprof.capture.state import FLIP_NOTE, ModelInfo, RangeFrame, SubgraphInfo, is_tracing, shapes_of

FALLBACK_PREFIX = "_run_on_gpu"


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
        info = ins.subgraphs[module] = SubgraphInfo(str(name), "engine", runtime)
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
    info = ins.models[model] = ModelInfo(f"model{ins.model_count}", type(model).__name__)
    ins.model_count += 1
    for name, child, rt in engines:
        ins.subgraphs[child] = SubgraphInfo(name, "engine", rt, info)
        info.engines.append(child)
    ins.hook_handles.append(model.register_forward_pre_hook(_model_pre))
    ins.hook_handles.append(model.register_forward_hook(_model_post, always_call=True))
    for name, child in children:
        if name.startswith(FALLBACK_PREFIX) and child not in ins.subgraphs:
            ins.subgraphs[child] = SubgraphInfo(name, "fallback", "torch", info)
            ins.hook_handles.append(child.register_forward_pre_hook(_fallback_pre))
            ins.hook_handles.append(child.register_forward_hook(_fallback_post, always_call=True))
    return info


# -- top-level inference and fallback ranges ------------------------------------------------------
def _open(ins, stack, module, info, args, attrs) -> None:
    frame = RangeFrame(module, info, info.calls, shapes_of(args))
    info.calls += 1
    stack.append(frame)
    ins.marks.push(attrs)
    frame.t0 = now()  # taken with the NVTX push, so both clocks see the same start
    if ins.gpu:
        frame.stream = ins.gpu.current_stream()
        frame.ev0 = ins.gpu.record(frame.stream)


def _close(ins, stack, module) -> RangeFrame | None:
    if not stack or stack[-1].module is not module:
        return None  # discovered during this call: its start was not seen
    frame = stack.pop()
    frame.t1 = now()
    ins.marks.pop()
    frame.ev1 = ins.gpu.record(frame.stream) if ins.gpu else None
    return frame


def _model_pre(module, args):
    ins = state.ACTIVE
    if ins is None or is_tracing(args):
        return
    info = ins.models.get(module)
    if info is not None:
        if ins.stacks.partial is info:
            ins.stacks.partial = None
        if ins.policy is not None:
            info.mode = ins.apply_policy(info.engines, info.calls, info.mode)
        _open(ins, ins.stacks.inferences, module, info, args, ins.marks.attributes(info.label, "inference"))


def _model_post(module, args, out):
    ins = state.ACTIVE
    frame = _close(ins, ins.stacks.inferences, module) if ins is not None else None
    if frame is None:
        return
    info, rec = frame.info, ins.rec
    rec.add(rec.new("inference", model=info.label, inference=frame.index, subgraph=info.label,
                    subgraph_kind="model", runtime="torch", call=frame.index, host_start_ns=frame.t0,
                    host_end_ns=frame.t1, input_shapes=frame.shapes, shapes=state.output_shapes(out),
                    stream=_handle(frame), exclude=frame.exclude or None,
                    note=FLIP_NOTE if frame.exclude else None), frame.ev0, frame.ev1)
    if not ins.stacks.inferences:
        ins.safe_point()  # outside every range: batched work happens here, not inside a range


def _fallback_pre(module, args):
    ins = state.ACTIVE
    if ins is None or is_tracing(args):
        return
    info = ins.subgraphs.get(module)
    if info is not None:
        _open(ins, ins.stacks.fallbacks, module, info, args, ins.attrs(info, "fallback"))


def _fallback_post(module, args, out):
    ins = state.ACTIVE
    frame = _close(ins, ins.stacks.fallbacks, module) if ins is not None else None
    if frame is None:
        return
    info, rec = frame.info, ins.rec
    changed = info.last_shapes is not None and frame.shapes != info.last_shapes
    info.last_shapes = frame.shapes
    model, inference = ins.inference_of(info)
    rec.add(rec.new("fallback", model=model, inference=inference, subgraph=info.name,
                    subgraph_kind="fallback", runtime="torch", call=frame.index, host_start_ns=frame.t0,
                    host_end_ns=frame.t1, input_shapes=frame.shapes, shapes=state.output_shapes(out),
                    shape_changed=changed, stream=_handle(frame)), frame.ev0, frame.ev1)


def _handle(frame):
    return frame.stream.cuda_stream if frame.stream is not None else None


def uncovered_graphs(ins) -> int:
    """GraphModules alive now that call `tensorrt.execute_engine` as a function and were not hooked.

    Such graphs come from saved/exported programs (`torch_tensorrt.save` then `load(...).module()`):
    no runtime module runs, so nothing above records them; we say so instead of missing them silently.
    """
    import gc

    count = 0
    gm = torch.fx.GraphModule
    for obj in gc.get_objects():
        # type(), not isinstance(): some objects warn when asked for __class__
        if issubclass(type(obj), gm) and obj not in ins.models:
            try:
                nodes = obj.graph.nodes
            except Exception:
                continue
            if any(n.op == "call_function" and "execute_engine" in str(n.target) for n in nodes):
                count += 1
    return count
