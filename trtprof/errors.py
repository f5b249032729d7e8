"""One error type for everything a user is told, its exit codes, and one escaping rule for text.

Why one type (memray's `MemrayCommandError` shape): each stage raises `TrtprofError(message,
exit_code)` where it finds the problem, and the CLI catches it once, prints one line and exits with
its code. Nothing below the CLI prints or exits.

Why one escaping rule: text trtprof prints can come from a user's model (engine names, shapes),
from paths and argv, or from exception messages. `clean()` escapes every control character (C0, DEL,
C1, the line and paragraph separators, the bidirectional overrides), so a message stays one line and
cannot move the cursor, clear the screen or reverse what follows it.
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """trtprof's own exit codes; a captured script's own exit code passes through otherwise."""
    SCRIPT_ERROR = 1
    USAGE = 2  # options that cannot go together (click's own usage errors exit 2 too)
    NO_SCRIPT = 3
    BAD_OUTPUT = 4
    BAD_CAPTURE = 5
    EMPTY_CAPTURE = 6
    MISSING_DEPENDENCY = 7
    NO_NSYS = 8  # nsys not on PATH, or an nsys report that cannot be used
    INTERRUPTED = 130


_UNSAFE = [*range(32), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
           0x200E, 0x200F, 0x061C, 0xFEFF]
_CONTROL = {c: f"\\x{c:02x}" if c < 256 else f"\\u{c:04x}" for c in _UNSAFE}


def clean(text) -> str:
    """`text` as one safe line for a terminal: every control or direction character escaped."""
    return ("" if text is None else str(text)).translate(_CONTROL)


class TrtprofError(Exception):
    """A failure to tell the user in one line, with the exit code to leave with."""

    exit_code: int = ExitCode.SCRIPT_ERROR

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(clean(message))
        if exit_code is not None:
            self.exit_code = int(exit_code)


class UsageError(TrtprofError, ValueError):
    """A bad argument or option found before anything ran (a ValueError to Python callers)."""
    exit_code = ExitCode.USAGE


class CaptureError(TrtprofError):
    """A capture folder that cannot be read (or, with BAD_OUTPUT, written)."""
    exit_code = ExitCode.BAD_CAPTURE


class EmptyCaptureError(TrtprofError):
    """A capture with no rows: nothing to report, compare or export."""
    exit_code = ExitCode.EMPTY_CAPTURE


class NsysError(CaptureError):
    """An nsys report that cannot be used, or nsys that cannot be run."""
    exit_code = ExitCode.NO_NSYS


class MissingDependency(TrtprofError):
    """An optional package a command needs is not installed."""
    exit_code = ExitCode.MISSING_DEPENDENCY


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's first line (its type when it has no message), for one-line errors."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]
