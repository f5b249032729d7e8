"""What the hooks share: the active instrumentation, per-module info and per-thread call stacks.

Why module-level `ACTIVE`: the hooks are installed on classes (every instance, however it was
created), so they need one place to find the recorder; when no capture is active they cost one
global read and pass straight through.
"""
from __future__ import annotations

import operator
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

import torch

from trtprof.capture import records as R
from trtprof.errors import first_line
from trtprof.timeline.columns import COLD_NOTE, RAISED_NOTE  # noqa: F401 - the capture's rows carry it

ACTIVE: "Instrumentation | None" = None  # what the hooks record into; None while paused or stopped
OWNER = None  # the Instrumenter holding this process's capture, from start() to stop()
START_LOCK = threading.Lock()
FLIP_NOTE = "first call after pre-allocated outputs were switched: left out of statistics"
# Why a first call is left out (COLD_NOTE): Torch-TensorRT's first call of an engine (and PyTorch's
# of a fallback) sets up lazily (execution context, kernels loaded, caching allocator warmed), tens of
# milliseconds where the median is a few (reports/cases/breaks-cpp: 78.6 ms against 5.9 ms), which
# then sits in the p99 and the mean of whichever mode ran first. Recorded and marked, not dropped: the
# report gives it apart. "First" is per process (`first_in_process`): a second capture in the same
# process sees warm modules. A script that ran the model before trtprof attached (the Session API)
# is not seen: then one warm call is left out.
_SEEN: "weakref.WeakSet" = weakref.WeakSet()
_SEEN_IDS: set = set()  # objects that cannot be weakly referenced (some TorchBind engines)


def first_in_process(obj) -> bool:
    """True the first time it is asked of `obj` in this process (at emit time, once per subgraph
    per capture: not on the hot path)."""
    try:
        if obj in _SEEN:
            return False
        _SEEN.add(obj)
    except TypeError:
        key = (id(obj), type(obj).__name__)
        if key in _SEEN_IDS:
            return False
        _SEEN_IDS.add(key)
    return True


def raised_note(kind: str) -> str:
    """The note of a range whose call raised: its times are not those of a finished inference."""
    return f"{RAISED_NOTE}{kind}: left out of statistics"


@dataclass(eq=False)
class ModelInfo:
    label: str
    class_name: str
    calls: int = 0
    mode: bool | None = None  # pre-allocation mode last set by the policy
    shareable: bool = False  # a torch.fx graph: nothing runs on the GPU between its subgraph calls
    rows: dict = field(default_factory=dict)  # event -> row template
    attrs: dict = field(default_factory=dict)  # (event, detail) -> NVTX attributes
    children: list = field(default_factory=list)  # (module, SubgraphInfo) of its engines and fallbacks
    skipped: int = 0  # sampling: inferences left out since the last recorded one
    seen: tuple | None = None  # sampling: input shapes of the last inference, recorded or not
    after_change: bool = False  # sampling: the last inference changed shapes, record this one too

    @property
    def name(self) -> str:  # its NVTX ranges are named after the label
        return self.label

    @property
    def engines(self) -> list:
        """Its runtime modules, for the pre-allocation policy."""
        return [module for module, sub in self.children if sub.kind == "engine"]


@dataclass(eq=False)
class SubgraphInfo:
    name: str
    kind: str  # engine | fallback
    runtime: str  # python | cpp | torch
    model: ModelInfo | None = None
    calls: int = 0
    last_shapes: tuple | None = None
    last_prealloc: bool = False
    attrs: dict = field(default_factory=dict)  # (event, detail) -> NVTX attributes
    rows: dict = field(default_factory=dict)  # event -> row template (the slots every row shares)
    mode: bool | None = None  # C++ runtime: cached pre-allocation mode (None: read it at the next call)
    set_at: int = -1  # the model's inference count when the mode was last changed through the setter
    before_set: bool = False  # the mode before that change
    # op path (capture/ops.py): how it was reached, a setter for engines without a runtime module
    # (loaded graphs), and the output-allocator mode (required by the engine; cached user switch)
    path: str = "module-classes"  # module-classes | op
    setter: object = None
    requires_oa: bool = False
    oa: bool = False
    reread: bool = False  # no runtime module (loaded graph): modes are set on the engine, read every call
    # a loaded graph's engine whose outputs leave the graph (op_graphs.owned_returns)
    returns_output: bool = False
    last_cg: str | None = None  # the CUDA-graph value of its previous call (a change: a graph is captured)


class RangeFrame:
    """A top-level inference or a fallback call in flight.

    `ev0`/`ev1`: its CUDA events. An inference without events of its own (full level) gets the GPU
    span of the subgraph ranges inside it (`gs`/`ge`), filled in as they are emitted, before it."""

    __slots__ = ("module", "info", "index", "shapes", "ev0", "t0", "ev1", "t1", "stream", "exclude",
                 "out_shapes", "thread", "model", "inference", "changed", "parent", "gs", "ge", "raised",
                 "cudagraph", "lean")

    def __init__(self, module, info, index, shapes):
        self.module, self.info, self.index, self.shapes = module, info, index, shapes
        self.ev0 = self.ev1 = self.stream = None
        self.t0 = self.t1 = 0
        self.exclude = False
        self.out_shapes = ()
        self.thread = threading.get_ident()
        self.parent = None  # the inference this range is in (full level: it takes its GPU span)
        self.gs = self.ge = None  # GPU span, filled from the subgraph ranges as they are emitted
        self.raised = None  # the exception type's name when the call raised
        self.cudagraph = None  # cudagraphs.WARMUP / CAPTURE / REPLAY / PER_ENGINE, or None
        self.lean = None  # graph.run_fallback's record, until `fill_range`


class CallFrame:
    """One engine call in flight: what its inner hooks (alloc, enqueue) saw."""

    __slots__ = ("module", "info", "call", "prealloc", "enqueued", "allocs", "exec", "shapes", "changed",
                 "expect_after", "model", "inference", "t0", "t1", "out_shapes", "flipped", "thread", "groups",
                 "parent", "ready", "output_allocator", "raised", "cudagraph", "cg_captured", "lean")

    def __init__(self, module, info, call, prealloc, shapes, cudagraph=None):
        self.module, self.info, self.call, self.prealloc, self.shapes = module, info, call, prealloc, shapes
        self.thread = threading.get_ident()  # rows are emitted later, maybe from another thread
        self.changed, last_prealloc, self.cg_captured = advance(info, shapes, prealloc, cudagraph)
        # the runtime can reuse earlier buffers only if the previous call pre-allocated for these shapes
        self.expect_after = prealloc and last_prealloc and not self.changed
        # first call after the mode changed (or first call with it on): no buffers exist yet
        self.flipped = prealloc != last_prealloc
        self.cudagraph = cudagraph
        self.enqueued = False
        self.allocs: list = []
        self.exec = None
        self.groups = None  # C++ runtime: allocation groups from the allocator log
        self.ready = True  # False while its allocator entries wait for the next harvest
        self.raised = None  # the exception type's name when the call raised
        self.parent = None
        self.t0 = self.t1 = 0
        self.out_shapes = ()
        self.output_allocator = False  # data-dependent shapes: the runtime's output allocator ran
        self.lean = None  # engines.run_lean's record, until `fill_call`


def advance(info: "SubgraphInfo", shapes: tuple, prealloc: bool, cudagraph) -> tuple[bool, bool, bool]:
    """An engine call of `info` begins: (its input shapes differ from the previous call's, the mode the
    previous call ran with, a CUDA graph is captured now: the mode changed or the shapes did), and the
    subgraph's state moves on to this call. One place for both paths (CallFrame, engines.run_lean)."""
    last, last_prealloc = info.last_shapes, info.last_prealloc
    changed = last is not None and shapes != last
    info.last_shapes, info.last_prealloc = shapes, prealloc
    captured = cudagraph is not None and (cudagraph != info.last_cg or changed)
    info.last_cg = cudagraph
    return changed, last_prealloc, captured


def fill_call(frame: CallFrame) -> None:
    """The CallFrame of a lean engine call (engines.run_lean), from its record, at the safe point:
    what `CallFrame.__init__`, `_begin` and `run_cpp` set in the range on the other path."""
    (frame.module, info, frame.call, prealloc, frame.shapes, changed, last_prealloc, frame.cudagraph,
     frame.cg_captured, top, partial, frame.thread, frame.raised, frame.out_shapes, ev0, ev1, stream) = frame.lean
    frame.lean = None
    frame.info = info
    frame.model, frame.inference = inference_at(info, top, partial)
    frame.prealloc, frame.changed = prealloc, changed
    frame.expect_after = prealloc and last_prealloc and not changed  # as CallFrame.__init__
    frame.flipped = prealloc != last_prealloc
    frame.enqueued, frame.allocs, frame.groups, frame.output_allocator = False, [], None, False
    frame.exec = (frame.t0, frame.t1, ev0, ev1, stream)


def fill_range(frame: RangeFrame) -> None:
    """The RangeFrame of a lean fallback call (graph.run_fallback), from its record, at the safe point
    (its events, stream and parent inference are set in the range)."""
    (frame.module, info, frame.index, frame.shapes, frame.cudagraph, frame.thread, frame.out_shapes,
     frame.changed, top, partial) = frame.lean
    frame.lean = None
    frame.info = info
    frame.model, frame.inference = inference_at(info, top, partial)
    frame.gs = frame.ge = frame.raised = None
    frame.exclude = False


class _Stacks(threading.local):
    def __init__(self):
        self.inferences: list[RangeFrame] = []
        self.fallbacks: list[RangeFrame] = []
        self.calls: list[CallFrame] = []
        self.partial: ModelInfo | None = None  # model discovered mid-call: its call 0 is running
        self.muted = 0  # > 0 inside an inference sampling left out: every hook passes through
        # (stream, event) that ended the last subgraph range: the next one on that stream, in the
        # same inference, starts with it instead of recording its own (full level)
        self.last_end = None
        self.cg_phase = None  # whole-graph CUDA graphs: warmup | capture while the wrapper runs its module


class Instrumentation:
    """The live state of one capture: recorder, module registry, thread stacks, detail level.

    `range_gpu`: the GPU clock for subgraph ranges (None at the minimal level, and at the full level
    without brackets: host times only, kernels give the GPU side); `inference_gpu`: the clock for an
    inference's own events (None where the subgraph ranges have brackets: its GPU span comes from
    them, saving two event records per inference). `brackets` defaults to the level's."""

    def __init__(self, recorder, runtime_classes: dict, level: str = "full", sample: int = 1,
                 brackets: bool | None = None):
        self.rec = recorder
        self.sample = sample  # record 1 inference in `sample` (and every input-shape change)
        self.gpu = recorder.gpu
        self.marks = recorder.marks
        self.level = level
        brackets = level == "full" if brackets is None else brackets
        self.range_gpu = self.gpu if brackets else None
        self.inference_gpu = self.gpu if not brackets else None
        self.runtime_classes = runtime_classes  # {"python": cls, "cpp": cls}
        self.subgraphs: "weakref.WeakKeyDictionary[torch.nn.Module, SubgraphInfo]" = weakref.WeakKeyDictionary()
        self.models: "weakref.WeakKeyDictionary[torch.nn.Module, ModelInfo]" = weakref.WeakKeyDictionary()
        self.by_id: dict = {}  # the hot-path lookup: id(module), emptied when it dies
        self._finalizers: list = []
        self.stacks = _Stacks()
        self.hook_handles: list = []
        self.restore: list = []  # (class, wrapper, original forward) of per-instance classes we wrapped
        self.proxied: "weakref.WeakSet" = weakref.WeakSet()
        self.model_count = 0
        self.standalone_count = 0
        self.alloc_log = None  # AllocatorLog for the C++ runtime, when enabled
        self.alloc_failed = None  # why the allocator log could not start (then alloc_log is None)
        self.cpp_pending: list[CallFrame] = []  # C++ calls waiting for their allocator entries
        self.harvest = None  # callable(ins) emitting cpp_pending with their allocations
        self.policy = None  # prealloc.Policy when the capture forces or alternates the mode
        self.setters: dict = {}  # runtime -> the runtime class's own set_pre_allocated_outputs
        self.kernels = None  # KernelActivity (CUPTI) while it records, else None
        self.kernel_sink = None
        self.op = None  # ops.OpCapture when capturing at torch.ops.tensorrt.execute_engine
        self.cg_modes = None  # the runtime's CUDA-graph mode module (capture/cudagraphs.py), if any
        self.cg_flip = None  # cg_policy.Flipper when --cudagraphs forces or alternates the mode
        self.cg_replays = 0  # whole-graph replays recorded (one inference row each, no subgraph rows)
        self.lean = False  # engine and fallback calls take engines.run_lean / graph.run_fallback (set at start)
        # sampling (capture/sampling.py): outermost recorded inferences in flight on any thread (deque:
        # append/pop are atomic), and the lock that turns kernel activity and the allocator log on and off
        self.in_flight: deque = deque()
        self.switch = threading.Lock()
        self.pause_log = True  # False: the allocator log runs through skipped inferences (what it saves, measured:
        # bench_overhead.py's 'logalways' token)

    def register(self, module, info):
        """Make `info` (a SubgraphInfo, or the ModelInfo of a model) the hot path's for `module`."""
        if isinstance(info, SubgraphInfo):
            self.subgraphs[module] = info
        self.by_id[id(module)] = info
        self._finalizers.append(weakref.finalize(module, self.by_id.pop, id(module), None))
        return info

    def release(self) -> None:
        """Drop the registry's finalizers (the capture is over)."""
        for f in self._finalizers:
            f.detach()
        self._finalizers.clear()
        self.by_id.clear()

    def apply_policy(self, engines, index: int, current) -> bool | None:
        """Set the pre-allocation mode the policy wants for call `index`; returns it (None: as-is)."""
        want = self.policy.wanted(index) if self.policy is not None else None
        if want is not None and want != current:
            for mod in engines:
                sub = self.by_id.get(id(mod))  # engines of loaded graphs may not be weak-referenceable
                setter = (sub.setter or self.setters.get(sub.runtime)) if sub is not None else None
                if setter is not None:
                    setter(mod, want)
                    sub.mode = None
        return want

    def start_log(self):
        """The allocator log, started if it is not running (the first C++ engine call; a recorded
        inference after skipped ones); None once it cannot start (`alloc_failed` says why, in the
        capture's notes)."""
        log = self.alloc_log
        if log is not None and not log.active and not log.start_safely():
            self.alloc_failed, self.alloc_log, log = log.failed, None, None
        return log

    def lose_log(self, what: str, e: BaseException) -> None:
        """The allocator log failed (`what`: "reading it", "stopping it"): the capture goes on
        without it, its notes say why (`alloc_failed`), and it is asked once more, quietly, to stop.
        Called at safe points and at the end of recorded inferences: it must not raise."""
        log, self.alloc_log = self.alloc_log, None
        self.alloc_failed = f"{what} failed: {type(e).__name__}: {first_line(e, 160)}"
        try:
            if log is not None:
                log.stop()
        except Exception:  # noqa: BLE001
            pass

    def safe_point(self) -> None:
        """Outside every range: harvest allocator entries and write rows when enough are waiting
        (or a second has passed: rows of a slow run still reach the disk)."""
        pending = self.cpp_pending
        if pending and self.harvest is not None and (
                len(pending) >= 512 or time.perf_counter_ns() - pending[0].t1 > 1_000_000_000):
            self.harvest(self)
        self.rec.safe_point()
        if self.kernels is not None and self.kernels.due(time.perf_counter_ns()):
            # forced, here, outside every range, before a CUPTI buffer fills: a full buffer is
            # handed over on CUPTI's own thread, whose Python callback then holds the GIL inside
            # whatever inference runs (capture/kernels.py: the schedule and its measurements)
            self.kernel_sink(self.kernels.flush(forced=True))

    def attrs(self, info, event: str, detail: str = ""):
        key = (event, detail)
        try:
            return info.attrs[key]
        except KeyError:
            a = info.attrs[key] = self.marks.attributes(info.name, event, detail)
            return a

    def current_call(self, module) -> CallFrame | None:
        calls = self.stacks.calls
        if calls and calls[-1].module is module:
            return calls[-1]
        return None

    def inference_of(self, info) -> tuple[str, int]:
        """(model label, inference index) for a row of `info`'s subgraph, called now."""
        st = self.stacks
        inf = st.inferences
        return inference_at(info, inf[-1] if inf else None, st.partial)


def inference_at(info, top: RangeFrame | None, partial: ModelInfo | None) -> tuple[str, int]:
    """(model label, inference index) for a row of `info`'s subgraph called while `top` was the
    innermost inference in flight on its thread and `partial` the model discovered mid-call (its
    call 0 has no range). Apart from `inference_of` so the lean path reads the two in the range and
    this at the safe point."""
    model = info.model
    if model is None:
        return "", -1
    if top is not None and top.info is model:
        return model.label, top.index
    if partial is model:
        return model.label, 0
    return model.label, -1


def template(info, event: str) -> list:
    """A new record with the slots every row of `info`'s `event` shares (built once, then copied).
    `info`: a SubgraphInfo, or a ModelInfo for inference rows."""
    t = info.rows.get(event)
    if t is None:
        t = R.blank()
        if isinstance(info, ModelInfo):
            vals = (info.label, info.label, "model", "torch")
        else:
            vals = (info.model.label if info.model is not None else "", info.name, info.kind, info.runtime)
        for k, v in zip(("model", "subgraph", "subgraph_kind", "runtime"), vals):
            t[R.INDEX[k]] = v
        t[R.INDEX["event"]] = event
        info.rows[event] = t
    return t.copy()


def mode_of(module, runtime: str, info: SubgraphInfo | None = None) -> bool:
    """An engine's pre-allocation mode. The C++ one is a TorchScript attribute, ~15 us per read on
    the H100 machine's host, so it is cached in `info` (the setter wrapper clears it)."""
    if runtime == "cpp" and info is not None:
        return cpp_mode(module, info)
    if runtime == "python":
        return bool(getattr(module, "use_pre_allocated_outputs", False))
    # a runtime module, or (op path, loaded graphs) the engine itself
    engine = getattr(module, "engine", None) if isinstance(module, torch.nn.Module) else module
    return bool(getattr(engine, "use_pre_allocated_outputs", False))


def cpp_mode(module, info: SubgraphInfo) -> bool:
    """The C++ engine's mode from the cache; re-read every 64 calls to catch direct assignments."""
    mode = info.mode
    if mode is None or not info.calls & 63:
        mode = info.mode = mode_of(module, "cpp")
    return mode


_TENSOR, _PARAMETER = torch.Tensor, torch.nn.Parameter
_is_compiling = torch.compiler.is_compiling  # the function dynamo folds to True while it traces
_SHAPE = operator.attrgetter("shape")  # map(_SHAPE, ...): no Python frame per tensor (the hot path)


def is_tracing(args) -> bool:
    """True while torch.compile / torch.export trace the module (fake tensors): never record then."""
    if _is_compiling():
        return True
    for a in args:
        if isinstance(a, _TENSOR):
            return type(a) is not _TENSOR and not isinstance(a, _PARAMETER)
    return False


def shapes_of(tensors) -> tuple:
    try:
        return tuple(map(_SHAPE, tensors))
    except AttributeError:  # a non-tensor input (a Python scalar): keep the tensors' shapes only
        return tuple([t.shape for t in tensors if isinstance(t, _TENSOR)])


def output_shapes(out) -> tuple:
    if isinstance(out, _TENSOR):
        return (out.shape,)
    if isinstance(out, (list, tuple)):
        return shapes_of(out)
    return ()
