"""A capture session: instrumentation + capture folder + metadata, as one object.

`profile()` is the in-process API (a notebook, a server); `trtprof capture` uses the same `Session`
around the user's script. Like pyinstrument's `Profiler.stop()` returning a saved-and-loadable
Session, `stop()` writes the folder and gives back a loaded `Capture`.
"""
from __future__ import annotations

import datetime as _dt
import os
import secrets
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from trtprof._version import __version__
from trtprof.capture import environment
from trtprof.capture.install import Instrumenter
from trtprof.capture.options import CaptureOptions
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


class Session:
    """Owns one capture from `start()` to `stop()`."""

    def __init__(self, out: str | os.PathLike | None = None, *, name: str = "capture",
                 options: CaptureOptions | None = None, command: list[str] | None = None,
                 run: dict | None = None, **choices):
        """`options` (a CaptureOptions), or its fields as keywords (prealloc=, level=, sample=, ...);
        `run`: how the capture was started (script, module), recorded in meta.json."""
        self.options = options if options is not None else CaptureOptions(**choices)
        self.folder = Path(os.path.abspath(out if out else default_folder(name)))
        self.run = run or {}
        self.command = command if command is not None else list(sys.argv)
        self.instrumenter = Instrumenter(self._write, self.options)
        self.writer: CaptureWriter | None = None
        self.capture: Capture | None = None
        self._t0 = 0.0
        self.pid = os.getpid()
        self.interrupted_by: int | None = None  # a signal that arrived while the folder was finished

    def _write(self, records):
        self.writer.write(records)

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
        }
        self.instrumenter.claim()  # a nested / concurrent capture is refused before the folder exists
        try:
            self.writer = CaptureWriter(self.folder, meta)  # raises CaptureError before anything runs
        except BaseException:
            self.instrumenter.release()
            raise
        self.pid = os.getpid()
        self._t0 = time.perf_counter()
        try:
            self.instrumenter.start()
        except BaseException:
            self.writer.close(status="incomplete", incomplete_reason="the instrumentation could not start")
            raise
        return self

    def instrument(self, model) -> bool:
        return self.instrumenter.instrument(model)

    def pause(self) -> None:
        """Stop recording (the hooks pass through) until `resume()`."""
        self.instrumenter.pause()

    def resume(self) -> None:
        self.instrumenter.resume()

    def stop(self, *, status: str = "complete", reason: str | None = None,
             exit_code: int | None = None) -> Capture | None:
        """Flush and write the capture folder; returns it loaded. Safe to call once after start().
        In a forked child it does nothing and returns None: the folder is the parent's."""
        if os.getpid() != self.pid:
            return None
        with _signals_held(self):
            return self._stop(status, reason, exit_code)

    def _stop(self, status, reason, exit_code) -> Capture:
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
            "sample": inst.sample,
            "runtime_classes": {k: f"{c.__module__}.{c.__qualname__}" for k, c in inst.classes.items()},
            "gpu_anchor_error_ns": getattr(inst.gpu, "anchor_error_ns", None),
        }
        if reason:
            updates["incomplete_reason"] = reason
        if exit_code is not None:
            updates["exit_code"] = exit_code
        folder = self.writer.close(**updates)
        self.capture = load_capture(folder)
        return self.capture

    @property
    def notes(self) -> list[str]:
        return self.instrumenter.notes


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
            model(x)
        cap.timeline  # the DataFrame (also in reports/run1/)

    The yielded object gets `timeline`, `meta` and `path` once the block ends.
    """
    session = Session(out, name=kwargs.pop("name", "profile"), **kwargs).start()
    result = _Pending(session)
    status, reason = "complete", None
    try:
        yield result
    except BaseException as e:
        status, reason = "incomplete", f"{type(e).__name__} raised inside trtprof.profile()"
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
        return self.session.instrument(model)

    def pause(self) -> None:
        self.session.pause()

    def resume(self) -> None:
        self.session.resume()

    def _fill(self, cap: Capture) -> None:
        self.timeline, self.meta, self.path = cap.timeline, cap.meta, cap.path
