"""Installing and removing the instrumentation in this process.

Why patch classes rather than instances: every runtime module, whether made by `compile`,
`dynamo.compile`, `load`, unpickling or deep-copying, runs its class's `forward`; patching the class
once before the user's code runs covers all of them. The runtime classes are looked up, not assumed
(Torch-TensorRT 2.13 removed `PythonTorchTensorRTModule`); what could not be instrumented is said in
`notes`.

Why a capture belongs to one process: a forked child (os.fork, a "fork" multiprocessing pool)
inherits the patched classes, the recorder and the open spill. If it recorded, its rows would land in
the parent's spill and its exit would finish the parent's capture. `os.register_at_fork` makes every
child start clean instead: the classes are restored and nothing is recorded there (a child can start
its own capture with `trtprof.profile()`); the recorder and the session check the pid as well.
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
import threading

from trtprof.capture import engines, graph, state
from trtprof.capture.allocations import AllocatorLog
from trtprof.capture.events import GpuClock, watch_captures
from trtprof.capture.marks import Marks
from trtprof.capture.options import LEVELS, CaptureOptions  # noqa: F401 - LEVELS re-exported
from trtprof.capture.prealloc import guard_setter
from trtprof.capture.recorder import Recorder

# (runtime, class name, method, wrapper factory)
_PATCHES = (
    ("python", "PythonTorchTensorRTModule", "forward", engines.python_forward),
    ("python", "PythonTorchTensorRTModule", "create_output_tensors", engines.python_create_outputs),
    ("cpp", "TorchTensorRTModule", "forward", engines.cpp_forward),
)
_RUNTIME_MODULE = "torch_tensorrt.dynamo.runtime"
# Versions whose runtime trtprof was checked against on a GPU (call structure of the two runtime
# classes). Others are instrumented the same way, with a note saying so.
TESTED_VERSIONS = ("2.11",)
# Functions that return compiled models: wrapped so a model is hooked before its first call.
_FACTORIES = (("torch_tensorrt", "compile"), ("torch_tensorrt.dynamo", "compile"))


def _hook_result(orig):
    @functools.wraps(orig)
    def factory(*args, **kwargs):
        result = orig(*args, **kwargs)
        ins = state.ACTIVE
        if ins is not None and hasattr(result, "named_children"):
            graph.instrument(ins, result)
        return result
    return factory


def find_runtime_classes() -> tuple[dict, list[str]]:
    """{'python': cls, 'cpp': cls} for the runtime classes this Torch-TensorRT has, and notes."""
    try:
        rt = importlib.import_module(_RUNTIME_MODULE)
    except ImportError as e:
        return {}, [f"torch_tensorrt is not importable ({e}): no engine can be recorded"]
    except Exception as e:  # a broken install raises all sorts of things at import
        return {}, [f"torch_tensorrt failed to import ({type(e).__name__}: {e}): no engine can be recorded"]
    classes, notes = {}, []
    version = str(getattr(sys.modules.get("torch_tensorrt"), "__version__", "unknown"))
    if not version.startswith(TESTED_VERSIONS):
        notes.append(f"torch_tensorrt {version} was not tested with trtprof (tested: "
                     f"{', '.join(TESTED_VERSIONS)}): rows may be missing if its runtime changed")
    for runtime, name in (("python", "PythonTorchTensorRTModule"), ("cpp", "TorchTensorRTModule")):
        cls = getattr(rt, name, None)
        if cls is None:
            notes.append(f"this torch_tensorrt has no {name}: its runtime is not instrumented")
        else:
            classes[runtime] = cls
    return classes, notes


class Instrumenter:
    """Install the hooks, record into `sink`, remove everything on `stop()`."""

    def __init__(self, sink, options: CaptureOptions | None = None, *, batch: int = 4096):
        options = options or CaptureOptions()
        self.options = options
        self.level = options.level
        self.sample = options.sample
        self.sink = sink
        self.want_gpu = options.gpu
        self.nvtx = options.nvtx
        self.batch = batch
        self.cpp_allocs = options.cpp_allocs
        self.policy = options.policy
        self.ins: state.Instrumentation | None = None
        self._saved: list = []
        self.notes: list[str] = []
        self.classes: dict = {}
        self._rec = None
        self.gpu = None
        self.pid = os.getpid()
        self.stopped_reason = None  # why recording stopped early (a failed write), one line

    def claim(self) -> "Instrumenter":
        """Make this the process's one capture, or raise before anything is created (a nested
        `profile()`, a second thread starting at the same time, a capture in a captured script)."""
        with state.START_LOCK:  # check and claim at once: two threads cannot both start
            if state.OWNER is self:
                return self
            if state.OWNER is not None:
                raise RuntimeError("a trtprof capture is already active in this process")
            state.OWNER = self
        self.pid = os.getpid()
        return self

    def release(self) -> None:
        """Give up a claim that never started (the folder could not be written)."""
        if state.OWNER is self and self.ins is None:
            state.OWNER = None

    def start(self) -> "Instrumenter":
        self.claim()
        try:
            return self._start()
        except BaseException:
            self._restore()
            state.ACTIVE = None
            state.OWNER = None
            raise

    def _start(self) -> "Instrumenter":
        import torch

        gpu = None
        cuda = torch.cuda.is_available()
        if self.want_gpu is None or self.want_gpu:
            if cuda:
                gpu = GpuClock(torch)  # anchors itself on first use
            else:
                self.notes.append("no CUDA device: GPU start/end times are not recorded")
        self.classes, notes = find_runtime_classes()
        self.notes += notes
        marks = Marks(self.nvtx)
        if self.nvtx and not marks.available:
            self.notes.append("the nvtx package is missing: no NVTX ranges are emitted")
        rec = Recorder(self.sink, gpu, marks, self.batch)
        rec.on_error = self._recording_failed
        self._rec = rec
        if gpu is not None:
            self._saved += watch_captures(torch)
        self.gpu = gpu
        self.ins = state.Instrumentation(rec, self.classes, self.level, self.sample)
        self.ins.harvest = engines.harvest_cpp
        if gpu is not None and "cpp" in self.classes and self.cpp_allocs and self.level == "full":
            self.ins.alloc_log = AllocatorLog(torch)  # started at the first C++ engine call
        for runtime, cls_name, method, factory in _PATCHES:
            cls = self.classes.get(runtime)
            if cls is None:
                continue
            orig = cls.__dict__.get(method)
            if orig is None:
                self.notes.append(f"{cls_name}.{method} not found: that part of the {runtime} runtime "
                                  "is not recorded")
                continue
            self._saved.append((cls, method, orig))
            setattr(cls, method, factory(orig))
        for runtime, cls in self.classes.items():
            setter = cls.__dict__.get("set_pre_allocated_outputs")
            if setter is not None:
                self.ins.setters[runtime] = setter
                self._saved.append((cls, "set_pre_allocated_outputs", setter))
                wrapped = guard_setter(setter, self.policy) if self.policy.forcing else setter
                cls.set_pre_allocated_outputs = engines.tracking_setter(wrapped)
        if self.policy.forcing:
            self.ins.policy = self.policy
        for modname, attr in _FACTORIES if self.classes else ():
            mod = sys.modules.get(modname)
            orig = getattr(mod, attr, None)
            if callable(orig):
                self._saved.append((mod, attr, orig))
                setattr(mod, attr, _hook_result(orig))
        state.ACTIVE = self.ins
        return self

    def _recording_failed(self, reason: str) -> None:
        """The recorder could not write (disk full): the hooks pass through from now on."""
        self.stopped_reason = reason
        self.notes.append(reason)
        state.ACTIVE = None

    def forked(self) -> None:
        """In a forked child: restore everything, record nothing, leave the parent's files alone."""
        ins, self.ins = self.ins, None
        state.ACTIVE = None
        self._restore()
        if ins is not None:
            graph.unhook(ins)
            ins.release()
        state.OWNER = None

    def pause(self) -> None:
        """Stop recording until `resume()`: hooks stay installed and pass straight through (one global
        read per call). Inferences run while paused are not counted."""
        if self.ins is not None and state.ACTIVE is self.ins:
            state.ACTIVE = None

    def resume(self) -> None:
        if self.ins is not None and state.ACTIVE is None and self.stopped_reason is None:
            state.ACTIVE = self.ins

    @property
    def paused(self) -> bool:
        return self.ins is not None and state.ACTIVE is not self.ins

    def instrument(self, model) -> bool:
        """Hook a compiled model now, so even its first call is recorded whole."""
        return self.ins is not None and graph.instrument(self.ins, model) is not None

    def stop(self) -> None:
        """Flush every recorded row to the sink and restore the patched classes and modules."""
        ins = self.ins
        if ins is None or os.getpid() != self.pid:
            return
        state.ACTIVE = None
        try:
            if ins.alloc_log is not None and ins.alloc_log.active:
                ins.rec.gpu.synchronize()
            engines.harvest_cpp(ins)
            ins.rec.drain(wait=True)
        finally:
            if ins.alloc_log is not None:
                ins.alloc_log.stop()
                if ins.alloc_log.dropped:
                    self.notes.append("the allocator log overflowed between harvests: some C++ runtime "
                                      "allocations are missing")
            from trtprof.capture.graph import uncovered_graphs
            n = uncovered_graphs(ins)
            if n:
                self.notes.append(f"{n} live graph(s) call torch.ops.tensorrt.execute_engine directly (an "
                                  "exported program): their engine calls are not recorded")
            self._gpu_notes(ins.rec)
            self._restore()
            graph.unhook(ins)
            ins.release()
            for mod in list(ins.proxied):
                ctx = mod.__dict__.get("context")
                if isinstance(ctx, engines.ContextProxy):
                    mod.__dict__["context"] = ctx._trt_context
            if self.policy.ignored:
                self.notes.append(f"--prealloc {self.policy.mode}: the script's own {self.policy.ignored} "
                                  "call(s) to set_pre_allocated_outputs were ignored")
            self.ins = None
            state.OWNER = None

    def _gpu_notes(self, rec) -> None:
        if rec.lost:
            self.notes.append(f"{rec.lost} row(s) have host times only: their CUDA events could not be "
                              f"resolved ({rec.lost_reason})")
        if rec.skipped:
            self.notes.append(f"{rec.skipped} row(s) ran while a CUDA graph was being captured: no CUDA "
                              "events are recorded then, they have host times only")

    def _restore(self) -> None:
        for cls, method, orig in reversed(self._saved):
            setattr(cls, method, orig)
        self._saved.clear()

    @property
    def rows(self) -> int:
        return self._rec.rows if self._rec else 0


def _after_fork_in_child() -> None:
    state.START_LOCK = threading.Lock()  # it may have been held by another thread at the fork
    owner = state.OWNER
    if owner is not None and owner.pid != os.getpid():
        owner.forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
