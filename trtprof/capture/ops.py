"""Capture at the op `torch.ops.tensorrt.execute_engine`: one interception point for every engine.

Why the op: every Torch-TensorRT runtime since 2.11 runs an engine through this op, but
what calls it differs. `TorchTensorRTModule.forward` (2.11-2.14) calls it with its engine; a saved,
exported or loaded program (`torch_tensorrt.load(...).module()`) calls it from its graph with a
`get_attr` of `<name>_engine` and has no runtime module at all; a 2.13+ PYTHON_ONLY build registers a
Python `TRTEngine` under the same op. Module-class hooks see only the first.

How the op is reached from Python, with no dispatcher hook (a TorchDispatchMode or a
torch.library fallback costs every op of the model, not just this one):

- `forward` looks `torch.ops.tensorrt.execute_engine` up on every call, so the attribute on the
  namespace is replaced by `OpProxy`. Its call is `call`; every other attribute (`.default`,
  `overloads()`) is the real packet's, so the exporter and tracing still build graphs with the real op.
- A graph holds the OpOverload itself in `node.target`, so a graph is adopted (`graphs.adopt`): its
  engine nodes are re-pointed to `call`, and recompiled. Restored at `uninstall`.
- C++ callers (AOTInductor packages) cannot be reached: said in docs/recording.md.

What an engine is: a TorchBind engine (C++ runtime) is opaque, so the call is bracketed with events
on the caller stream and its allocations come from the allocator log (`engines.run_cpp`, the code the
module-classes path runs too); a Python `TRTEngine` gets the Python runtime's hooks on its class
(`python_engine.py`) and runs through `engines.run_python`.
"""
from __future__ import annotations

import re
import sys

import torch

from trtprof.capture import engines, graph, state
from trtprof.capture.state import SubgraphInfo, is_tracing

_REAL = None  # the real OpOverload tensorrt::execute_engine.default, while installed
_NAME = re.compile(r"Name:\s*(\S+)")
# serialized engine info: index of "requires output allocator" (v2.11.0 _TorchTensorRTModule.py)
_REQUIRES_OA_IDX = 9


class OpProxy:
    """Stands on `torch.ops.tensorrt` as `execute_engine`: calls go through `call`."""

    __slots__ = ("_trtprof_packet",)

    def __init__(self, packet):
        object.__setattr__(self, "_trtprof_packet", packet)

    def __getattr__(self, name):
        return getattr(self._trtprof_packet, name)

    def __call__(self, *args, **kwargs):
        if kwargs or len(args) != 2:
            return self._trtprof_packet(*args, **kwargs)
        return call(args[0], args[1])

    def __repr__(self):
        return f"OpProxy({self._trtprof_packet!r})"


def call(inputs, engine):
    """`execute_engine(inputs, engine)`, recorded when a capture is active. Named so graphs that
    call it read `trtprof_execute_engine` in their code."""
    ins = state.ACTIVE
    real = _REAL if _REAL is not None else torch.ops.tensorrt.execute_engine.default
    if ins is None or ins.stacks.muted or is_tracing(inputs):
        return real(inputs, engine)
    info = ins.by_id.get(id(engine)) or _discover(ins, engine)
    if info.runtime == "python":
        op = ins.op
        if op is not None and op.python is not None:
            op.python.prepare(ins, engine)
        frame = engines._begin(ins, engine, info, inputs, bool(engine.use_pre_allocated_outputs))
        frame.output_allocator = info.requires_oa or bool(engine.use_output_allocator_outputs)
        return engines.run_python(ins, frame, real, inputs, engine)
    prealloc = info.mode  # _cpp_modes' cache, read here: one frame less per call
    if prealloc is None or info.reread or not info.calls & 63:
        prealloc = _cpp_modes(engine, info)
    if ins.lean and not (info.requires_oa or info.oa):
        return engines.run_lean(ins, info, real, inputs, engine, prealloc)
    frame = engines._begin(ins, engine, info, inputs, prealloc)
    frame.output_allocator = info.requires_oa or info.oa
    return engines.run_cpp(ins, frame, real, inputs, engine)


call.__name__ = call.__qualname__ = "trtprof_execute_engine"


def _cpp_modes(engine, info: SubgraphInfo) -> bool:
    """Pre-allocation (and output-allocator) mode of a TorchBind engine: reading it through its
    module cost ~15 us on the H100 host, so for a runtime module's engine both are cached in
    `info`, re-read every 64 calls and after the module's setter ran (engines.tracking_setter
    clears `info.mode`). An engine of a loaded graph has no setter to watch (users assign the
    attribute): read on every call (bench/bench_op_path.py measures the read)."""
    mode = info.mode
    if mode is None or info.reread or not info.calls & 63:
        mode = info.mode = bool(getattr(engine, "use_pre_allocated_outputs", False))
        info.oa = bool(getattr(engine, "use_output_allocator_outputs", False))
    return mode


def set_engine_mode(obj, enable: bool) -> None:
    """The pre-allocation policy's setter for an engine reached through the op (module or engine)."""
    engine = obj.engine if isinstance(obj, torch.nn.Module) else obj
    engine.use_pre_allocated_outputs = enable


def engine_name(engine, fallback: str) -> str:
    """An engine's own name: the Python TRTEngine's `.name`, the TorchBind one's `str()` line."""
    name = getattr(engine, "name", None) if not isinstance(engine, torch.ScriptObject) else None
    if isinstance(name, str) and name:
        return name
    try:
        m = _NAME.search(str(engine))
    except Exception:
        m = None
    return m.group(1) if m else fallback


def requires_output_allocator(engine, module=None) -> bool:
    """Whether the engine needs the output allocator (data-dependent shapes): the module's or the
    Python engine's attribute; a TorchBind engine only has it in its serialized info (read once)."""
    for obj in (module, engine):
        v = getattr(obj, "requires_output_allocator", None) if obj is not None else None
        if isinstance(v, bool):
            return v
    try:
        return bool(int(engine.__getstate__()[0][_REQUIRES_OA_IDX]))
    except Exception:
        return False


def outputs_unowned(engine, module=None) -> bool | None:
    """Whether the runtime makes new output buffers after every call (`output_tensors_are_unowned`),
    None when it cannot be read. Why it matters: with pre-allocation on, an engine that owns its
    buffers returns the same ones every call (v2.11.0-v2.13.0 `execute_engine.cpp`: new buffers after
    the enqueue only when none exist, the shapes changed, or they are unowned); the compiler marks the
    engines whose outputs leave the graph, and the flag is not in the serialized engine info."""
    for obj in (module, engine):
        if obj is None:
            continue
        try:
            getter = getattr(obj, "are_output_tensors_unowned", None)
            v = getter() if callable(getter) else getattr(obj, "output_tensors_are_unowned", None)
        except Exception:
            continue
        if isinstance(v, bool):
            return v
    return None


def kind_of(ins, engine) -> str:
    """python: a Python TRTEngine (its class gets the Python hooks); cpp: anything else (TorchBind)."""
    op = ins.op
    if op is not None and not isinstance(engine, torch.ScriptObject) \
            and hasattr(engine, "create_output_tensors") and hasattr(engine, "execute"):
        op.hook_python_engine(type(engine))
        return "python"
    return "cpp"


def register(ins, engine, info: SubgraphInfo) -> SubgraphInfo:
    """Make `info` the hot path's for `engine`; an engine that cannot be weakly referenced (some
    TorchBind objects) is kept alive until the capture ends instead."""
    info.path = "op"
    if info.setter is None:
        info.setter = set_engine_mode
    try:
        ins.register(engine, info)
    except TypeError:
        ins.by_id[id(engine)] = info
        ins.op.pinned.append(engine)
    return info


def _owner(engine, depth: int = 12):
    """The runtime module whose `engine` this is, from the calling frames (`forward`'s self)."""
    f = sys._getframe(2)
    for _ in range(depth):
        if f is None:
            return None
        owner = f.f_locals.get("self")
        if isinstance(owner, torch.nn.Module) and owner.__dict__.get("engine") is engine:
            return owner
        f = f.f_back
    return None


def _discover(ins, engine) -> SubgraphInfo:
    """An engine seen for the first time through the op: from a runtime module (named after it, its
    model instrumented as on the module-classes path), else on its own (named from the engine)."""
    kind = kind_of(ins, engine)
    module = _owner(engine)
    if module is not None:
        info = ins.subgraphs.get(module) or graph.discover(ins, module, kind)
        info.requires_oa = requires_output_allocator(engine, module)
    else:
        info = SubgraphInfo(engine_name(engine, f"engine{ins.standalone_count}"), "engine", kind)
        ins.standalone_count += 1
        info.requires_oa = requires_output_allocator(engine)
    if info.runtime != kind:  # a TorchTensorRTModule running a Python TRTEngine (PYTHON_ONLY)
        info.runtime = kind
        info.rows.clear()
    return register(ins, engine, info)
