"""`trtprof capture` under a launcher: each rank claims its own folder DIR/rank<N> of one folder DIR,
and the last rank to finish writes the merged report.

Why a new folder per rank, claimed with one exclusive mkdir: two processes given the same rank (a
launcher misconfigured, two runs into one DIR) must never write one capture; the first mkdir wins
and the other stops with one line before its script runs. A folder left by an earlier run is
refused the same way, so a folder of ranks always holds one run.

Why the last rank merges: only once every rank's meta.json says it finished are all timelines whole.
Each rank writes its meta.json before it looks at the others', so the last one to look sees them
all; an exclusive marker file makes one rank merge when two finish together. Ranks on several
machines without a shared folder never see each other's: then `trtprof report DIR` merges later.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from trtprof.errors import ExitCode, TrtprofError, UsageError
from trtprof.timeline.rank_layout import RANK_DIR, is_capture
from trtprof.timeline.store import META


CLAIMED_ENV = "TRTPROF_RANK_FOLDER"  # set for a child capture (under nsys) whose rank folder is claimed
MERGE_MARK = ".merged-by-rank"


def is_distributed(info: dict | None) -> bool:
    """One capture per rank: a launcher started this process as one of several."""
    return bool(info) and info.get("world_size", 1) > 1


def claim(root, info: dict) -> Path:
    """Make DIR/rank<N> for this rank; BAD_OUTPUT (one line) when DIR is a capture or the folder exists."""
    if root is None:
        raise UsageError(f"under {info['launcher']} ({info['variables'][1]}={info['world_size']}) every rank "
                         "writes into one folder: give it with -o DIR (rank N writes DIR/rankN)")
    root = Path(os.path.abspath(root))
    if is_capture(root):
        raise TrtprofError(f"{root} is a capture folder; a run with {info['world_size']} ranks needs a folder of "
                           "its own (choose another -o)", ExitCode.BAD_OUTPUT)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrtprofError(f"cannot write {root}: {'a file of that name exists' if root.is_file() else e.strerror}",
                           ExitCode.BAD_OUTPUT) from None
    folder = root / RANK_DIR.format(info["rank"])
    try:
        os.mkdir(folder)
    except FileExistsError:
        raise TrtprofError(f"{folder} exists: rank {info['rank']} was captured into {root} before, or started twice "
                           "in this run; every rank needs a new folder (choose another -o)", ExitCode.BAD_OUTPUT) from None
    except OSError as e:
        raise TrtprofError(f"cannot write {folder}: {e.strerror}", ExitCode.BAD_OUTPUT) from None
    return folder


def claimed_folder(output) -> bool:
    """This process is the child capture of a rank whose folder its parent claimed (under nsys)."""
    mark = os.environ.get(CLAIMED_ENV)
    return bool(mark and output is not None and os.path.abspath(output) == mark)


def _finished(folder: Path) -> bool:
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("status") not in (None, "running")


def merge_turn(root: Path, world_size: int, rank: int) -> bool:
    """True for exactly one rank, once every rank of the world has finished its capture."""
    if not all(_finished(Path(root) / RANK_DIR.format(r)) for r in range(world_size)):
        return False
    try:
        fd = os.open(Path(root) / MERGE_MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError:
        return False
    os.write(fd, str(rank).encode())
    os.close(fd)
    return True
