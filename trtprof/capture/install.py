"""Installing and removing the instrumentation in this process.

Two capture paths (meta.json `capture_path`). "op" (the default): every engine call through
`torch.ops.tensorrt.execute_engine`, whatever calls it (op_install.py: runtime modules of 2.11-2.14,
loaded and exported programs, a PYTHON_ONLY `TRTEngine`). "module-classes": the runtime classes'
methods, which remains the only way into 2.11/2.12's `PythonTorchTensorRTModule` (it runs TensorRT
from its own `forward`, not through the op), and can be forced for the C++ runtime module too
(TRTPROF_CAPTURE_PATH=module-classes, or `capture_path=`; bench/bench_op_path.py compares them).

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

from trtprof.capture import cg_policy, cudagraph_hooks, engines, graph, op_graphs, state
from trtprof.capture.allocations import AllocatorLog
from trtprof.capture.events import GpuClock, watch_captures
from trtprof.capture.marks import Marks
from trtprof.capture.op_install import OpCapture
from trtprof.capture.options import LEVELS, CaptureOptions  # noqa: F401 - LEVELS re-exported
from trtprof.capture.prealloc import guard_setter
from trtprof.capture.recorder import Recorder
from trtprof.errors import first_line

# (runtime, class name, method, wrapper factory)
_PATCHES = (
    ("python", "PythonTorchTensorRTModule", "forward", engines.python_forward),
    ("python", "PythonTorchTensorRTModule", "create_output_tensors", engines.python_create_outputs),
    ("cpp", "TorchTensorRTModule", "forward", engines.cpp_forward),
)
_RUNTIME_MODULE = "torch_tensorrt.dynamo.runtime"
# Versions whose runtime trtprof was checked against on a GPU (call structure of the two runtime
# classes), and those it follows from their source (CPU stand-ins, support/fake_trt). Others are
# captured the same way (through the op), with a note saying so.
TESTED_VERSIONS = ("2.11",)
SEEN_VERSIONS = ("2.11", "2.12", "2.13", "2.14")
PATHS = ("op", "module-classes")
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


def torch_tensorrt_version() -> str:
    return str(getattr(sys.modules.get("torch_tensorrt"), "__version__", "unknown"))


def find_runtime_classes() -> tuple[dict, list[str]]:
    """{'python': cls, 'cpp': cls} for the runtime classes this Torch-TensorRT has, and notes.
    No PythonTorchTensorRTModule is expected from 2.13 (its Python runtime runs under the op)."""
    try:
        rt = importlib.import_module(_RUNTIME_MODULE)
    except ImportError as e:
        return {}, [f"torch_tensorrt is not importable ({e}): no engine can be recorded"]
    except Exception as e:  # a broken install raises all sorts of things at import
        return {}, [f"torch_tensorrt failed to import ({type(e).__name__}: {e}): no engine can be recorded"]
    classes, notes = {}, []
    version = torch_tensorrt_version()
    if not version.startswith(SEEN_VERSIONS):
        notes.append(f"torch_tensorrt {version} was not tested with trtprof (tested on a GPU: "
                     f"{', '.join(TESTED_VERSIONS)}; followed from source: {', '.join(SEEN_VERSIONS[1:])}): "
                     "captured through the op; rows may be missing if its runtime changed")
    for runtime, name in (("python", "PythonTorchTensorRTModule"), ("cpp", "TorchTensorRTModule")):
        cls = getattr(rt, name, None)
        if cls is None:
            if runtime == "cpp":
                notes.append(f"this torch_tensorrt has no {name}: only engines called through the op are recorded")
        else:
            classes[runtime] = cls
    return classes, notes


class Instrumenter:
    """Install the hooks, record into `sink`, remove everything on `stop()`."""

    def __init__(self, sink, options: CaptureOptions | None = None, *, batch: int = 4096,
                 capture_path: str | None = None, kernel_sink=None):
        options = options or CaptureOptions()
        self.capture_path = capture_path or os.environ.get("TRTPROF_CAPTURE_PATH") or "op"
        if self.capture_path not in PATHS:
            raise ValueError(f"capture_path must be one of {', '.join(PATHS)}, got {self.capture_path!r}")
        self.paths: list[str] = []  # the paths installed; capture_path becomes those that ran
        self.op: OpCapture | None = None
        self.options = options
        self.level = options.level
        self.sample = options.sample
        self.brackets = options.brackets and options.level == "full"  # what ran: set at start
        self.sink = sink
        self.want_gpu = options.gpu
        self.nvtx = options.nvtx
        self.batch = batch
        self.cpp_allocs = options.cpp_allocs
        self.policy = options.policy
        self.cg_policy = options.cg_policy
        self.kernel_sink = kernel_sink  # receives KernelActivity.flush() records
        self.kernels = None  # the KernelActivity while it records
        self.kernel_info: dict = {"recorded": False}
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
        if gpu is not None and self.options.kernels and self.kernel_sink is not None:
            self._start_kernels(gpu)
        rec = Recorder(self.sink, gpu, marks, self.batch)
        rec.on_error = self._recording_failed
        self._rec = rec
        if gpu is not None:
            self._saved += watch_captures(torch)
        self.gpu = gpu
        self.brackets = self._brackets(gpu)
        self.ins = state.Instrumentation(rec, self.classes, self.level, self.sample, self.brackets)
        self.ins.kernels, self.ins.kernel_sink = self.kernels, self.kernel_sink
        self.ins.harvest = engines.harvest_cpp
        if self.classes:
            self._saved += cudagraph_hooks.install(self.ins, torch)
            self._saved += cg_policy.start(self.ins, self.cg_policy, self.notes, torch_tensorrt_version())
        if gpu is not None and "cpp" in self.classes and self.cpp_allocs and self.level == "full":
            self.ins.alloc_log = AllocatorLog(torch)  # started at the first C++ engine call
        use_op = self.capture_path == "op"
        if use_op:
            self.op = OpCapture(self.ins)
            use_op = self.op.install()
            self.notes += self.op.notes
            if use_op:
                self.paths.append("op")
        for runtime, cls_name, method, factory in _PATCHES:
            cls = self.classes.get(runtime)
            if cls is None or (use_op and runtime == "cpp"):  # the op serves the C++ runtime module
                continue
            if "module-classes" not in self.paths:
                self.paths.append("module-classes")
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
        # engine and fallback calls in one function each (engines.run_lean, graph.run_fallback) where
        # nothing they leave to the layered path is needed: no policy to apply per call
        self.ins.lean = self.ins.policy is None
        for modname, attr in _FACTORIES if self.classes else ():
            mod = sys.modules.get(modname)
            orig = getattr(mod, attr, None)
            if callable(orig):
                self._saved.append((mod, attr, orig))
                setattr(mod, attr, _hook_result(orig))
        if use_op and "python" in self.classes:
            self.op.hook_python_runtime(self.classes["python"])
        state.ACTIVE = self.ins
        if use_op:
            self.op.scan()  # programs loaded before the capture began
        return self

    def _brackets(self, gpu) -> bool:
        """Whether subgraph calls get CUDA-event brackets: at the full level, unless `brackets=False`
        and kernel activity gives launch times (without them a call's kernels are found by its GPU
        window, which needs the brackets: they stay, and the notes say why)."""
        if self.level != "full" or gpu is None:
            return False
        if self.options.brackets:
            return True
        act = self.kernels
        launch = act.launch_times if act is not None else self.kernel_info.get("reason", "kernel activity is off")
        if launch is True:
            return False
        self.notes.append(f"--no-brackets needs kernel launch times ({launch}): CUDA-event brackets kept")
        return True

    def _start_kernels(self, gpu=None) -> None:
        """CUPTI kernel activity (capture/kernels.py): on for the whole capture, or, when sampling,
        switched on around recorded inferences only (graph._model_pre/_model_post)."""
        from trtprof.capture.kernels import KernelActivity

        act = KernelActivity()
        if act.start(paused=self.sample > 1):
            self.kernels = act
            self.kernel_info = {"recorded": True, "source": "CUPTI (cupti-python)", "sampled": self.sample > 1}
            if gpu is not None:  # its first anchor calibrates the kernel times (`_calibrate`)
                gpu.on_anchor = self._calibrate
        else:
            reason = act.reason or "kernel activity could not start"
            self.kernel_info = {"recorded": False, "reason": reason, "handover": act.info()["handover"]}
            self.notes.append(f"{reason}; GPU times are CUDA-event brackets only")

    def _calibrate(self) -> None:
        """Known kernels between events, right after the clock's anchor (capture/calibrate.py), with
        kernel activity on for them; the store maps CUPTI's times onto the events' with them."""
        import torch

        from trtprof.capture import calibrate

        act = self.kernels
        if act is None:
            return
        paused = not act.enabled
        try:
            if paused:
                act.resume()
            self.kernel_info["calibration"] = calibrate.run(self.gpu, *calibrate.prepare(torch))
        except Exception as e:  # noqa: BLE001 - in the user's first call: kernels go by the clocks as they are
            self.kernel_info["calibration"] = {"error": f"{type(e).__name__}: {str(e).strip()[:160]}"}
        finally:
            if paused:
                act.pause()

    def _stop_kernels(self) -> None:
        act, self.kernels = self.kernels, None
        if act is None:
            return
        records = act.stop()
        self.kernel_info.update(act.info())
        self.notes += [n for n in (act.handover_note(), act.dropped_note()) if n]
        try:
            self.kernel_sink(records)
        except Exception as e:  # noqa: BLE001 - the rows matter more than their kernels
            self.notes.append(f"kernel records could not be written: {type(e).__name__}: {e}")

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
        read per call), kernel activity is switched off. Inferences run while paused are not counted."""
        if self.ins is not None and state.ACTIVE is self.ins:
            state.ACTIVE = None
            if self.kernels is not None:
                self.kernels.pause()

    def resume(self) -> None:
        if self.ins is not None and state.ACTIVE is None and self.stopped_reason is None:
            if self.kernels is not None and self.sample == 1:  # sampling switches it per inference
                self.kernels.resume()
            state.ACTIVE = self.ins

    @property
    def paused(self) -> bool:
        return self.ins is not None and state.ACTIVE is not self.ins

    def instrument(self, model) -> bool:
        """Hook a compiled model now, so even its first call is recorded whole."""
        if self.ins is None:
            return False
        if graph.instrument(self.ins, model) is not None:
            return True
        return self.op is not None and self.op.adopt(model) is not None

    def stop(self) -> None:
        """Flush every recorded row to the sink and restore the patched classes and modules."""
        ins = self.ins
        if ins is None or os.getpid() != self.pid:
            return
        state.ACTIVE = None
        try:
            try:
                if ins.alloc_log is not None and ins.alloc_log.active and ins.rec.gpu is not None:
                    ins.rec.gpu.synchronize()  # the last calls' allocations are in the log
                engines.harvest_cpp(ins)
            finally:  # whatever failed above (a GPU gone), the rows in memory still reach the disk
                ins.rec.drain(wait=True)  # synchronizes: every kernel of a recorded range has completed
        finally:
            self._stop_kernels()
            if ins.alloc_log is not None:
                try:
                    ins.alloc_log.stop()
                except Exception as e:  # noqa: BLE001 - a GPU gone: the classes must still be restored
                    self.notes.append("the CUDA caching allocator's history could not be stopped "
                                      f"({type(e).__name__}: {first_line(e, 160)}): it may still be on")
                if ins.alloc_log.dropped:
                    self.notes.append("the allocator log overflowed between harvests: some C++ runtime "
                                      "allocations are missing")
            if ins.alloc_failed:
                self.notes.append("C++ runtime allocations are not recorded from here on: the CUDA caching "
                                  f"allocator's history failed ({ins.alloc_failed})")
            left = op_graphs.uncovered(ins) if self.op is not None else []
            if left:
                self.notes.append(f"{len(left)} live graph(s) call torch.ops.tensorrt.execute_engine directly "
                                  f"(an exported program: {'; '.join(left[:3])}) and were not adopted (pass one "
                                  "to trtprof.instrument() before running it): their engine calls are not recorded")
            owned = op_graphs.owned_returns(ins) if self.op is not None else []
            if owned:
                self.notes.append(
                    f"{', '.join(owned)}: a loaded graph returns this engine's outputs, but the engine owns "
                    "its output buffers (are_output_tensors_unowned() is False: the compiler sets it on a "
                    "graph's final engines and the saved engine does not keep it). With pre-allocated "
                    "outputs on, every call returns the same buffers, so a call overwrites what the "
                    "previous one returned, and no allocation is recorded after its enqueue")
            self.capture_path = self._ran(ins)
            cg_policy.stop(ins, self.cg_policy, self.notes, kernels=bool(self.kernel_info.get("recorded")))
            self._gpu_notes(ins.rec)
            self._restore()
            graph.unhook(ins)
            if self.op is not None:
                self.op.uninstall()
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

    def _ran(self, ins) -> str:
        """The paths that recorded an engine call ('op', 'module-classes', both joined by '+'),
        else those installed."""
        ran = {i.path for i in ins.by_id.values()
               if isinstance(i, state.SubgraphInfo) and i.kind == "engine" and i.calls}
        return "+".join(p for p in PATHS if p in ran) or "+".join(self.paths) or "none"

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
