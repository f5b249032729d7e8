"""Run a user's script or module as `__main__`, exactly as `python SCRIPT ARGS` / `python -m MOD ARGS`.

Why in-process (like pyinstrument and memray): the instrumentation patches classes in this
interpreter, so the script must run here. Its SystemExit becomes our exit code; any other exception
is summarised in one line with the place it came from, and its traceback (trimmed to the script's
own frames, as python prints it) is kept so the caller can write it beside the capture.

Why the standard streams are restored afterwards: a script may close or replace sys.stdout /
sys.stderr (or close fd 1 / 2); trtprof's summary, its one-line errors and its exit code must not
depend on that. The original file descriptors are duplicated before the script runs and put back
(with working stream objects) after it.
"""
from __future__ import annotations

import builtins
import importlib.machinery
import os
import runpy
import sys
import traceback
import types
from dataclasses import dataclass

_OWN = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep, os.path.abspath(runpy.__file__))
_FROZEN_RUNPY = "<frozen runpy>"  # runpy's frames when the interpreter runs its frozen copy


@dataclass
class RunResult:
    exit_code: int
    error: str | None = None  # one line: what went wrong and where
    interrupted: bool = False  # Ctrl-C or SIGTERM
    traceback: str | None = None  # the full traceback, as python would have printed it


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so the capture is written like on Ctrl-C."""


def _exit_code(code) -> tuple[int, str | None]:
    if code is None:
        return 0, None
    if isinstance(code, bool):
        return int(code), None
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code % 256, None
    return 1, str(code)  # sys.exit("message") prints the message and exits 1


def _origin(exc: BaseException, script: str | None) -> str:
    """file:line of the innermost frame in the user's script, else the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    target = os.path.realpath(script) if script else None
    own = [f for f in frames if target and os.path.realpath(f.filename) == target]
    pick = (own or frames[-1:] or [None])[-1]
    return f"{os.path.relpath(pick.filename)}:{pick.lineno}" if pick else "unknown location"


def _syntax_error(e: SyntaxError, script: str) -> str:
    """'SyntaxError: invalid syntax (at job.py:3)': the place is the file that does not compile, not
    the frame that compiled it (runpy's, for the script itself); for a module the script imports, the
    import line in the script follows."""
    where = e.filename if e.filename and not e.filename.startswith("<") else script
    place = f"{os.path.relpath(where)}:{e.lineno}" if e.lineno else os.path.relpath(where)
    frames = traceback.extract_tb(e.__traceback__)
    own = [f for f in frames if os.path.realpath(f.filename) == os.path.realpath(script)]
    if own and os.path.realpath(where) != os.path.realpath(script):
        place += f", imported at {os.path.relpath(own[-1].filename)}:{own[-1].lineno}"
    msg = (e.msg or "").strip().splitlines()[0] if (e.msg or "").strip() else "invalid syntax"
    return f"{type(e).__name__}: {msg} (at {place})"


class _Streams:
    """sys.stdout / sys.stderr and dups of fds 1 and 2, to put back whatever the script did to them."""

    def __init__(self):
        self.objects = (sys.stdout, sys.stderr)
        self.fds = []
        for fd in (1, 2):
            try:
                self.fds.append(os.dup(fd))
            except OSError:
                self.fds.append(None)

    def restore(self) -> None:
        """The saved stream objects when they still work on their original fds; otherwise a new
        stream on the dup. The dup is never copied back onto fd 1 / 2: a file object the script
        opened may own that number now and would close it when collected."""
        for fd, dup, saved, name in zip((1, 2), self.fds, self.objects, ("stdout", "stderr")):
            try:
                same = dup is not None and os.path.sameopenfile(fd, dup)
            except OSError:  # the script closed it
                same = False
            stream = saved
            if same:
                os.close(dup)
                try:
                    stream.flush()
                except (AttributeError, OSError, ValueError):  # closed, or broken, by the script
                    same = False
                    dup = os.dup(fd)
            if not same and dup is not None:
                stream = open(dup, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
            setattr(sys, name, stream)


def _full_traceback(e: BaseException) -> str:
    """The traceback python would print for the script: trtprof's and runpy's frames above it cut."""
    tb = e.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename == _FROZEN_RUNPY
                              or os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_OWN)):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb))


def runs_as_path_entry(path: str) -> bool:
    """A folder or a zip archive: python runs its `__main__.py` and puts it first on `sys.path`."""
    import zipfile

    return os.path.isdir(path) or (os.path.isfile(path) and zipfile.is_zipfile(path))


def _exec_as_main(code, file: str, loader, spec=None) -> None:
    """Run `code` as a fresh `__main__` (python's own globals for a script), restored afterwards.

    Why not runpy.run_path: it sets `sys.argv[0]` and `__file__` from the path it is given, where
    python keeps `argv[0]` as typed and makes `__file__` (and the traceback's file names) absolute."""
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=file, __cached__=None, __loader__=loader, __spec__=spec,
                         __package__=None if spec is None else "", __builtins__=builtins)
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    finally:
        sys.modules["__main__"] = saved


def _run_path(path: str) -> str:
    """Run a script file, or a folder / zip archive's `__main__.py` (first on `sys.path`), like python."""
    if runs_as_path_entry(path):
        sys.path[0:1] = [path]
        spec = importlib.machinery.PathFinder.find_spec("__main__", [path])
        if spec is None or spec.loader is None:
            raise ImportError(f"can't find '__main__' module in {path!r}")
        _exec_as_main(spec.loader.get_code("__main__"), spec.origin, spec.loader, spec)
        return spec.origin
    sys.path[0:1] = [os.path.dirname(path)]
    with open(path, "rb") as f:
        source = f.read()
    _exec_as_main(compile(source, path, "exec", dont_inherit=True), path,
                  importlib.machinery.SourceFileLoader("__main__", path))
    return path


def run(target: str, args: list[str], module: bool = False) -> RunResult:
    """Run `target` (a path, or a module name if `module`) with `args`; never raises for its errors.

    A path runs like `python PATH`: `argv[0]` as typed, `__file__` absolute, `sys.path[0]` the
    script's folder (a folder or zip with `__main__.py` is itself `sys.path[0]`). A module runs like
    `python -m`: the current folder is `sys.path[0]`, and its parent packages are imported here,
    while recording."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    streams = _Streams()
    path = os.path.abspath(target)
    script = None if module else (os.path.join(path, "__main__.py") if runs_as_path_entry(path) else path)
    try:
        sys.argv = [target] + list(args)
        if module:
            sys.path[0:1] = [os.getcwd()]
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            _run_path(path)
        return RunResult(0)
    except SystemExit as e:
        code, msg = _exit_code(e.code)
        if msg:
            print(msg, file=sys.stderr)
        return RunResult(code)
    except (KeyboardInterrupt, Terminated) as e:
        kind = "interrupted (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else "terminated (SIGTERM)"
        return RunResult(130 if isinstance(e, KeyboardInterrupt) else 143, f"{kind} at {_origin(e, script)}",
                         interrupted=True, traceback=_full_traceback(e))
    except SyntaxError as e:  # the script (or a module it imports) does not compile
        return RunResult(1, _syntax_error(e, script or target), traceback=_full_traceback(e))
    except BaseException as e:  # the script's own failure: summarise, keep going to write the capture
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        what = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
        return RunResult(1, f"{what} (at {_origin(e, script)})", traceback=_full_traceback(e))
    finally:
        streams.restore()
        sys.argv = saved_argv
        sys.path[:] = saved_path
