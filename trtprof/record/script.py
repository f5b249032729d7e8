"""`trtprof capture` as a function: check the target, start a session, run the script, write it all.

Kept apart from the CLI so it can be tested and reused without click, and so the CLI only parses
options and prints. Whatever the script does (exit, raise, Ctrl-C, SIGTERM, os._exit) the capture is
written and marked complete or incomplete. What no code can catch (SIGKILL, a segfault, the OOM killer)
still leaves every batch already spilled to timeline.arrows, which `load_capture` reads; the
`TRTPROF_BATCH_ROWS` environment variable makes those batches smaller (fewer rows at risk, more
writes).
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trtprof.capture import ranks
from trtprof.capture.options import CaptureOptions
from trtprof.errors import ExitCode, UsageError, clean
from trtprof.record import runner
from trtprof.record.session import Session
from trtprof.timeline.store import Capture

BATCH_ENV = "TRTPROF_BATCH_ROWS"  # rows per spilled batch (default: the recorder's, 4096)


@dataclass
class CaptureOutcome:
    exit_code: int
    capture: Capture | None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    traceback: Path | None = None  # the script's full traceback, in the capture folder


TRACEBACK = "traceback.txt"


def exit_code_from(result: runner.RunResult) -> str:
    """Whose exit code trtprof leaves with, for meta.json: the script's own (it exited, or raised: 1),
    or trtprof's (130 / 143 after Ctrl-C / SIGTERM). A script may exit with 3-8 itself: this field
    tells those apart from trtprof's own codes, which come with no capture at all."""
    return "trtprof" if result.interrupted else "script"


def _keep_traceback(folder: Path, text: str | None) -> Path | None:
    """Write the script's traceback beside the timeline; a failure only loses this file."""
    if not text:
        return None
    from trtprof import _files

    path = folder / TRACEBACK
    try:
        with _files.atomic(path, "w") as f:
            f.write(text)
    except OSError:
        return None
    return path


def find_module(name: str):
    """The spec `python -m NAME` would run, found without importing anything.

    `importlib.util.find_spec("a.b")` imports the package `a` to read its `__path__`: its code would
    then run before the capture starts. Here the top-level name is looked up through every finder
    (which imports nothing) and each submodule in its parent's search locations; a package resolves
    to its `__main__`, as `python -m` does. Raises UsageError (NO_SCRIPT) with python's wording."""
    parts = name.split(".")
    if not all(p.isidentifier() for p in parts):
        raise UsageError(f"no module named {name!r}", ExitCode.NO_SCRIPT)
    try:
        spec = importlib.util.find_spec(parts[0])
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                spec = None
                break
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]),
                                                            list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(f"no module named {name!r}", ExitCode.NO_SCRIPT)
    if spec.submodule_search_locations is not None:  # a package: python -m runs its __main__
        main = importlib.machinery.PathFinder.find_spec(f"{name}.__main__", list(spec.submodule_search_locations))
        if main is None:
            raise UsageError(f"no module named {name + '.__main__'!r}: {name!r} is a package and cannot be run "
                             "directly", ExitCode.NO_SCRIPT)
    return spec


def check_target(target: str, module: bool) -> str:
    """The capture's name stem; raises UsageError for a script that is missing or unreadable.

    A module is looked up with the current folder first on `sys.path`, as `python -m` (and the run)
    will have it; a path may be a file, or a folder or zip archive with `__main__.py` (`python DIR`)."""
    if module:
        saved = sys.path[:]
        sys.path[0:1] = [os.getcwd()]
        try:
            find_module(target)
        finally:
            sys.path[:] = saved
        return target.rsplit(".", 1)[-1]
    p = Path(target)
    if not p.exists():
        raise UsageError(f"script not found: {target}", ExitCode.NO_SCRIPT)
    if p.is_dir():
        main = p / "__main__.py"
        if not main.is_file():
            raise UsageError(f"{target} is a folder without __main__.py: nothing to run", ExitCode.NO_SCRIPT)
        if not os.access(main, os.R_OK):
            raise UsageError(f"script not readable: {main}", ExitCode.NO_SCRIPT)
        return p.resolve().name or "capture"
    if not p.is_file() or not os.access(p, os.R_OK):
        raise UsageError(f"script not readable: {target}", ExitCode.NO_SCRIPT)
    return p.stem


_CAPTURING_PID = [None]  # the process whose script the SIGTERM handler below belongs to
_BEFORE = [signal.SIG_DFL]  # the SIGTERM disposition the process had before that handler


def _raise_terminated(signum, frame):
    """SIGTERM in the captured script: unwind like Ctrl-C so the capture is written. A child forked
    in the window before `_child_sigterm` ran: there SIGTERM does what it would have done without
    trtprof."""
    if os.getpid() != _CAPTURING_PID[0]:
        signal.signal(signal.SIGTERM, _BEFORE[0])
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise runner.Terminated()


def _child_sigterm() -> None:
    """A forked child gets back the SIGTERM disposition it would have had without trtprof. Why not
    leave the Python handler to re-raise it: a Python handler runs only between bytecodes, so a
    SIGTERM that lands just before a blocking call (a multiprocessing worker about to wait on its
    queue's lock, which `Pool.terminate` kills that way) is noted and never acted on, and the
    worker, then the parent joining it, waits forever. The kernel's default action has no such gap."""
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        try:
            signal.signal(signal.SIGTERM, _BEFORE[0])
        except (ValueError, OSError, TypeError):  # not the main thread after all: the handler re-raises instead
            pass


os.register_at_fork(after_in_child=_child_sigterm)


def _batch_rows() -> int | None:
    raw = os.environ.get(BATCH_ENV)
    if not raw:
        return None
    try:
        rows = int(raw)
    except ValueError:
        rows = 0
    if rows < 1:
        raise UsageError(f"{BATCH_ENV} must be a positive number of rows, not {raw!r}")
    return rows


def _finishing_exit(session: Session, real_exit):
    """os._exit that writes the capture first: a script (or a library) ending with os._exit skips
    every finally and atexit, so the rows still in memory and the final status would be lost.
    Only in this process: a forked child inherits the wrapper but must not write the parent's capture."""
    pid = os.getpid()

    def _exit(code):
        if os.getpid() == pid and session.capture is None:
            try:
                f = sys._getframe(1)
                where = f"{os.path.relpath(f.f_code.co_filename)}:{f.f_lineno}"
                cap = session.stop(status="incomplete", reason=f"the script called os._exit({code}) at {where}",
                                   exit_code=code)
                print(clean(f"trtprof: the script called os._exit({code}) at {where}; capture written (incomplete): "
                            f"{cap.path}/ ({len(cap.timeline)} rows)"), file=sys.stderr, flush=True)
            except BaseException:  # noqa: BLE001 - exiting anyway; the spill keeps what was written
                pass
        real_exit(code)
    return _exit


def capture_script(target: str, args: list[str], *, module: bool = False, out: str | None = None,
                   options: CaptureOptions | None = None, command: list[str] | None = None,
                   rank: dict | None = None) -> CaptureOutcome:
    """Run `target` under a capture; TrtprofError (one line, its exit code) before anything ran.
    `rank`: this process's place under a launcher (`capture.ranks.from_environment`), kept in
    meta.json with a clock reference from the start and the CUDA device it ran on at the end."""
    stem = check_target(target, module)
    start = {"rank": {**rank, "clock": ranks.clock_reference()}} if rank else None
    session = Session(out, name=stem, options=options or CaptureOptions(), command=command,
                      run={"module": module, "output": out}, meta=start)
    rows = _batch_rows()
    if rows:
        session.instrumenter.batch = rows
    session.start()  # CaptureError (BAD_OUTPUT) when the folder cannot be written
    _CAPTURING_PID[0] = os.getpid()
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    old = _BEFORE[0] = signal.SIG_DFL if old is None else old  # None: set outside Python, unknown
    real_exit = os._exit
    os._exit = _finishing_exit(session, real_exit)
    try:
        result = runner.run(target, args, module=module)
    finally:
        os._exit = real_exit
        signal.signal(signal.SIGTERM, old)
    status = "incomplete" if result.interrupted or result.error else "complete"
    tb = _keep_traceback(session.folder, result.traceback)
    extra = {"exit_code_from": exit_code_from(result), **({"traceback": TRACEBACK} if tb else {})}
    if start:
        extra["rank"] = {**start["rank"], "device": ranks.device()}
    cap = session.stop(status=status, reason=result.error, exit_code=result.exit_code, extra=extra)
    if cap is None:  # a forked child that ran on to the end of the script: the capture is the parent's
        return CaptureOutcome(result.exit_code, None)
    code = result.exit_code
    if session.interrupted_by is not None:  # Ctrl-C / SIGTERM while the folder was finished: it is whole
        code = 130 if session.interrupted_by == signal.SIGINT else 143
    return CaptureOutcome(code, cap, result.error, session.notes, tb)
