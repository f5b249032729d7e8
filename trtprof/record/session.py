"""A capture session: instrumentation + capture folder + metadata, as one object.

`profile()` is the in-process API (a notebook, a server); `trtprof capture` uses the same `Session`
around the user's script. Like pyinstrument's `Profiler.stop()` returning a saved-and-loadable
Session, `stop()` writes the folder and gives back a loaded `Capture`.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
import secrets
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from trtprof._version import __version__
from trtprof.capture import environment
from trtprof.capture.install import Instrumenter
from trtprof.capture.options import CaptureOptions
from trtprof.errors import ExitCode, TrtprofError, UsageError, first_line
from trtprof.timeline.store import Capture, CaptureWriter, load_capture

DEFAULT_ROOT = "reports"


def default_folder(stem: str, root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """reports/<stem>-<YYYYmmdd-HHMMSS>[-N]: a new folder, never one that exists."""
    ts = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stem}-{ts}"
    path, n = base, 1
    while path.exists():
        path, n = Path(f"{base}-{n}"), n + 1
    return path


def _options(choices: dict) -> CaptureOptions:
    """CaptureOptions from keywords; one that is not an option is a UsageError naming it and the
    options there are (not a TypeError about an internal class)."""
    known = {f.name for f in dataclasses.fields(CaptureOptions)}
    unknown = sorted(set(choices) - known)
    if unknown:
        raise UsageError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                         f"the options are {', '.join(sorted(known))}")
    return CaptureOptions(**choices)


class Session:
    """Owns one capture from `start()` to `stop()`."""

    def __init__(self, out: str | os.PathLike | None = None, *, name: str = "capture",
                 options: CaptureOptions | None = None, command: list[str] | None = None,
                 run: dict | None = None, meta: dict | None = None, **choices):
        """`options` (a CaptureOptions), or its fields as keywords (prealloc=, level=, sample=, ...);
        `run`: how the capture was started (script, module), recorded in meta.json; `meta`: more
        fields for meta.json from the start (a rank's place, so even a killed rank says which it was)."""
        self.options = options if options is not None else _options(choices)
        self.folder = Path(os.path.abspath(out if out else default_folder(name)))
        self.run = run or {}
        self.extra_meta = dict(meta or {})
        self.command = command if command is not None else list(sys.argv)
        self.instrumenter = Instrumenter(self._write, self.options, kernel_sink=self._write_kernels)
        self.writer: CaptureWriter | None = None
        self.capture: Capture | None = None
        self._t0 = 0.0
        self.pid = os.getpid()
        self.interrupted_by: int | None = None  # a signal that arrived while the folder was finished

    def _write(self, records):
        self.writer.write(records)

    def _write_kernels(self, records):
        self.writer.write_kernels(records)

    def start(self) -> "Session":
        meta = {
            "capture_id": secrets.token_hex(6),
            "trtprof": __version__,
            "command": self.command,
            "cwd": os.getcwd(),
            "options": {**self.run, **self.options.as_meta()},
            "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "pid": os.getpid(),
            "clock": "perf_counter_ns (CLOCK_MONOTONIC)",
            "clock_anchor": {"perf_counter_ns": time.perf_counter_ns(), "time_ns": time.time_ns()},
            **self.extra_meta,
        }
        self.instrumenter.claim()  # a nested / concurrent capture is refused before the folder exists
        try:
            self.writer = CaptureWriter(self.folder, meta)  # raises CaptureError before anything runs
        except BaseException:
            self.instrumenter.release()
            raise
        self.pid = os.getpid()
        if self.options.sample > 1:  # kernel activity ran around recorded inferences only
            self.writer.kernel_watch = lambda rows: rows["inference"].astype("Int64").fillna(-1) >= 0
        self._t0 = time.perf_counter()
        try:
            self.instrumenter.start()
        except BaseException:
            self.writer.close(status="incomplete", incomplete_reason="the instrumentation could not start")
            raise
        return self

    def instrument(self, model) -> bool:
        """Hook a model compiled before the capture started, so its first call is recorded whole.

        True when it is hooked (or already was). False when nothing can be recorded in this process
        (no torch_tensorrt: `profile()` has warned). Raises TrtprofError (exit code USAGE) when
        torch_tensorrt is there but `model` holds no Torch-TensorRT engine (an eager model, say)."""
        if not self.instrumenter.classes:
            return False
        if self.instrumenter.instrument(model):
            return True
        raise TrtprofError(f"instrument(model): this {type(model).__name__} holds no Torch-TensorRT engine "
                           "(pass the module torch_tensorrt.compile returned)", ExitCode.USAGE)

    def pause(self) -> None:
        """Stop recording (the hooks pass through) until `resume()`."""
        self.instrumenter.pause()

    def resume(self) -> None:
        self.instrumenter.resume()

    def stop(self, *, status: str = "complete", reason: str | None = None, exit_code: int | None = None,
             extra: dict | None = None) -> Capture | None:
        """Flush and write the capture folder; returns it loaded. Safe to call once after start().
        `extra`: more fields for meta.json (how the run ended, where its traceback is). In a forked
        child it does nothing and returns None: the folder is the parent's."""
        if os.getpid() != self.pid:
            return None
        with _signals_held(self):
            return self._stop(status, reason, exit_code, extra)

    def _stop(self, status, reason, exit_code, extra=None) -> Capture:
        inst = self.instrumenter
        try:
            inst.stop()
        except Exception as e:  # GPU gone, etc.: keep what was written, say why
            status, reason = "incomplete", reason or f"flushing failed: {type(e).__name__}: {e}"
        if inst.stopped_reason:  # a write failed while recording: what is on disk is kept
            status = "incomplete"
            reason = f"{reason}; {inst.stopped_reason}" if reason else inst.stopped_reason
        updates = {
            "status": status,
            "duration_s": round(time.perf_counter() - self._t0, 3),
            "environment": environment.describe(),
            "notes": inst.notes,
            "level": inst.level,
            "brackets": inst.brackets,  # CUDA events around every subgraph call (options.brackets: asked)
            "sample": inst.sample,
            "runtime_classes": {k: f"{c.__module__}.{c.__qualname__}" for k, c in inst.classes.items()},
            "capture_path": inst.capture_path,  # op | module-classes | op+module-classes
            "torch_tensorrt": _torch_tensorrt_version(),
            "gpu_anchor_error_ns": getattr(inst.gpu, "anchor_error_ns", None),
            "gpu_clock_drift": getattr(inst.gpu, "drift", None),
            "kernels": {**inst.kernel_info, **self.writer.meta.get("kernels", {})},
        }
        if reason:
            updates["incomplete_reason"] = reason
        if exit_code is not None:
            updates["exit_code"] = exit_code
        updates.update(extra or {})
        folder = self.writer.close(**updates)
        self.capture = load_capture(folder)
        return self.capture

    @property
    def notes(self) -> list[str]:
        return self.instrumenter.notes


def _torch_tensorrt_version():
    mod = sys.modules.get("torch_tensorrt")
    return str(getattr(mod, "__version__", None)) if mod is not None else None


_warned = False  # profile() warns about what it cannot record once per process, not per block


class TrtprofWarning(UserWarning):
    """What `trtprof.profile()` cannot record here (no CUDA, no torch_tensorrt): said once."""


def api_words(text: str) -> str:
    """A message of the layers below, which speak of CLI flags, in the API's words: `-o` becomes
    `out=`, `--prealloc` becomes `prealloc=` (so a notebook user is told what to pass, not what to type)."""
    text = re.sub(r"with -o\b", "with out=", text)
    text = re.sub(r"--no-cpp-allocs\b", "cpp_allocs=False", text)
    text = re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_") + "=", text)
    return re.sub(r"(\w+)= \(\1=([^)]*)\)", r"\1=\2", text)  # "sample= (sample=N)" -> "sample=N"


def _warn_once(notes: list[str]) -> None:
    global _warned
    if notes and not _warned:
        _warned = True
        warnings.warn("trtprof.profile() cannot record everything here: " + "; ".join(api_words(n) for n in notes),
                      TrtprofWarning, stacklevel=4)


@contextmanager
def _signals_held(session: Session):
    """Hold SIGINT and SIGTERM while the folder is finished (main thread only: elsewhere Python
    cannot set handlers); the first one that arrives is kept in `session.interrupted_by`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hold(signum, frame):
        if session.interrupted_by is None:
            session.interrupted_by = signum

    saved = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, hold)
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextmanager
def profile(out: str | os.PathLike | None = None, **kwargs):
    """Capture everything Torch-TensorRT runs inside the block::

        with trtprof.profile(out="reports/run1") as cap:
            cap.instrument(trt_model)  # optional, see Session.instrument
            trt_model(x)
        cap.timeline  # the DataFrame (also in reports/run1/)

    Keywords: the fields of CaptureOptions (prealloc=, level=, sample=, cpp_allocs=) and name=
    (the default folder's stem). The yielded object gets `timeline`, `meta` and `path` once the
    block ends. Without CUDA or torch_tensorrt the block runs, and a TrtprofWarning (once per
    process) says what is not recorded. An exception in the block is recorded (meta.json's
    incomplete_reason, with its message) and raised on.
    """
    try:
        session = Session(out, name=kwargs.pop("name", "profile"), **kwargs).start()
    except TrtprofError as e:
        raise type(e)(api_words(str(e)), e.exit_code) from None
    _warn_once(session.notes)
    result = _Pending(session)
    status, reason = "complete", None
    try:
        yield result
    except BaseException as e:
        what = f"{type(e).__name__}: {first_line(e)}" if str(e).strip() else type(e).__name__
        status, reason = "incomplete", f"{what} raised inside trtprof.profile()"
        raise
    finally:
        cap = session.stop(status=status, reason=reason)
        if cap is not None:  # None in a forked child: the capture is the parent's
            result._fill(cap)
        if session.interrupted_by is not None:  # Ctrl-C while finishing: delivered now it is written
            signal.raise_signal(session.interrupted_by)


class _Pending:
    """What `profile()` yields: the session while running, the Capture's fields after."""

    def __init__(self, session: Session):
        self.session = session
        self.timeline = None
        self.meta = None
        self.path = session.folder

    def instrument(self, model) -> bool:
        """See Session.instrument: True when hooked, False when nothing can be recorded here."""
        return self.session.instrument(model)

    def pause(self) -> None:
        self.session.pause()

    def resume(self) -> None:
        self.session.resume()

    def _fill(self, cap: Capture) -> None:
        self.timeline, self.meta, self.path = cap.timeline, cap.meta, cap.path
