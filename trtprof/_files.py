"""Writing files safely: atomically, and never through a link someone planted.

Why: a capture folder may be shared or handed over, so a predictable temporary name
(`report.html.tmp`) is an attack surface: a symlink planted under that name makes a plain
`open(tmp, "w")` overwrite whatever it points to. Temporaries are created exclusively, with a random
name, in the target's own folder (`tempfile.mkstemp`: O_CREAT | O_EXCL, so an existing name or link
is never opened), and renamed over the target; `os.replace` replaces a link at the target itself,
never the file it points to. A crash leaves the old file or the new one, never half of either.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_temp(path: Path) -> tuple[int, str]:
    """An exclusive temporary beside `path`, with the permissions a plain open() would give."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        pass
    return fd, tmp


@contextmanager
def atomic(path: str | os.PathLike, mode: str = "wb"):
    """Yield a file object for a new temporary beside `path`; on success it replaces `path`."""
    path = Path(path)
    fd, tmp = _new_temp(path)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield the path of a new, empty temporary beside `path` (for writers that want a path, like
    pyarrow's); on success it replaces `path`. The name is random and created exclusively."""
    path = Path(path)
    fd, tmp = _new_temp(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic(path, "w") as f:
        f.write(text)
    return Path(path)
