"""What the hooks share: the active instrumentation, per-module info and per-thread call stacks.

Why module-level `ACTIVE`: the hooks are installed on classes (every instance, however it was
created), so they need one place to find the recorder; when no capture is active they cost one
global read and pass straight through.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import torch

ACTIVE: "Instrumentation | None" = None
FLIP_NOTE = "first call after pre-allocated outputs were switched: left out of statistics"


@dataclass(eq=False)
class ModelInfo:
    label: str
    class_name: str
    calls: int = 0
    engines: list = field(default_factory=list)  # runtime modules, for the pre-allocation policy
    mode: bool | None = None  # pre-allocation mode last set by the policy


@dataclass(eq=False)
class SubgraphInfo:
    name: str
    kind: str  # engine | fallback
    runtime: str  # python | cpp | torch
    model: ModelInfo | None = None
    calls: int = 0
    last_shapes: tuple | None = None
    last_prealloc: bool = False
    attrs: dict = field(default_factory=dict)


class RangeFrame:
    """A top-level inference or a fallback call in flight."""

    __slots__ = ("module", "info", "index", "shapes", "ev0", "t0", "ev1", "t1", "stream", "exclude")

    def __init__(self, module, info, index, shapes):
        self.module, self.info, self.index, self.shapes = module, info, index, shapes
        self.ev0 = self.ev1 = self.stream = None
        self.t0 = self.t1 = 0
        self.exclude = False


class CallFrame:
    """One engine call in flight: what its inner hooks (alloc, enqueue) saw."""

    __slots__ = ("module", "info", "call", "prealloc", "enqueued", "allocs", "exec", "shapes", "changed",
                 "expect_after", "model", "inference", "t0", "t1", "out_shapes", "flipped", "thread")

    def __init__(self, module, info, call, prealloc, shapes):
        self.module, self.info, self.call, self.prealloc, self.shapes = module, info, call, prealloc, shapes
        self.thread = threading.get_ident()  # rows may be emitted later, from another thread
        self.changed = info.last_shapes is not None and shapes != info.last_shapes
        # the runtime can reuse earlier buffers only if the previous call pre-allocated for these shapes
        self.expect_after = prealloc and info.last_prealloc and not self.changed
        # first call after the mode changed (or first call with it on): no buffers exist yet
        self.flipped = prealloc != info.last_prealloc
        info.last_shapes, info.last_prealloc = shapes, prealloc
        self.enqueued = False
        self.allocs: list = []
        self.exec = None
        self.t0 = self.t1 = 0
        self.out_shapes = ()


class _Stacks(threading.local):
    def __init__(self):
        self.inferences: list[RangeFrame] = []
        self.fallbacks: list[RangeFrame] = []
        self.calls: list[CallFrame] = []
        self.partial: ModelInfo | None = None  # model discovered mid-call: its call 0 is running


class Instrumentation:
    """The live state of one capture: recorder, module registry, thread stacks."""

    def __init__(self, recorder, runtime_classes: dict):
        self.rec = recorder
        self.gpu = recorder.gpu
        self.marks = recorder.marks
        self.runtime_classes = runtime_classes  # {"python": cls, "cpp": cls}
        self.subgraphs: "weakref.WeakKeyDictionary[torch.nn.Module, SubgraphInfo]" = weakref.WeakKeyDictionary()
        self.models: "weakref.WeakKeyDictionary[torch.nn.Module, ModelInfo]" = weakref.WeakKeyDictionary()
        self.stacks = _Stacks()
        self.hook_handles: list = []
        self.proxied: "weakref.WeakSet" = weakref.WeakSet()
        self.model_count = 0
        self.standalone_count = 0
        self.alloc_log = None  # AllocatorLog for the C++ runtime, when enabled
        self.cpp_pending: list[CallFrame] = []  # C++ calls waiting for their allocator entries
        self.harvest = None  # callable(ins) emitting cpp_pending with their allocations
        self.policy = None  # prealloc.Policy when the capture forces or alternates the mode
        self.setters: dict = {}  # runtime -> the runtime class's own set_pre_allocated_outputs

    def apply_policy(self, engines, index: int, current) -> bool | None:
        """Set the pre-allocation mode the policy wants for call `index`; returns it (None: as-is)."""
        want = self.policy.wanted(index) if self.policy is not None else None
        if want is not None and want != current:
            for mod in engines:
                setter = self.setters.get(self.subgraphs[mod].runtime) if mod in self.subgraphs else None
                if setter is not None:
                    setter(mod, want)
        return want

    def safe_point(self) -> None:
        """Outside every range: harvest allocator entries and write rows when enough are waiting."""
        if len(self.cpp_pending) >= 512 and self.harvest is not None:
            self.harvest(self)
        self.rec.safe_point()

    def attrs(self, info, event: str, detail: str = ""):
        key = (event, detail)
        a = info.attrs.get(key)
        if a is None:
            a = info.attrs[key] = self.marks.attributes(info.name, event, detail)
        return a

    def current_call(self, module) -> CallFrame | None:
        calls = self.stacks.calls
        if calls and calls[-1].module is module:
            return calls[-1]
        return None

    def inference_of(self, info) -> tuple[str, int]:
        """(model label, inference index) for a row of `info`'s subgraph."""
        if info.model is None:
            return "", -1
        inf = self.stacks.inferences
        if inf and inf[-1].info is info.model:
            return info.model.label, inf[-1].index
        if self.stacks.partial is info.model:
            return info.model.label, 0
        return info.model.label, -1


def is_tracing(args) -> bool:
    """True while torch.compile / torch.export trace the module (fake tensors): never record then."""
    if torch.compiler.is_compiling():
        return True
    for a in args:
        if isinstance(a, torch.Tensor):
            return type(a) is not torch.Tensor and not isinstance(a, torch.nn.Parameter)
    return False


def shapes_of(tensors) -> tuple:
    try:
        return tuple([t.shape for t in tensors])
    except AttributeError:  # a non-tensor input (a Python scalar): keep the tensors' shapes only
        return tuple([t.shape for t in tensors if isinstance(t, torch.Tensor)])


def output_shapes(out) -> tuple:
    if isinstance(out, torch.Tensor):
        return (out.shape,)
    if isinstance(out, (list, tuple)):
        return shapes_of(out)
    return ()
