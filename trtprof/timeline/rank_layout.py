"""The layout of a folder of ranks (DIR/rank0, DIR/rank1, ...), readable without pandas.

Why apart from `timeline.ranks`: every command asks "is this a folder of ranks?" before it loads
anything, and `--help` and the light paths must not pay for pandas (tests/test_layout.py).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

RANK_DIR = "rank{}"
_RANK_NAME = re.compile(r"rank(0|[1-9][0-9]{0,6})")
# a capture folder's own files (timeline.store's META, TIMELINE, SPILL; a test keeps them equal)
CAPTURE_FILES = ("meta.json", "timeline.parquet", "timeline.arrows")


def rank_folders(root: str | os.PathLike) -> dict[int, Path]:
    """rank -> DIR/rank<N> for every folder named like a rank (no leading zeros, no links), in rank order."""
    root = Path(root)
    try:
        found = {int(m.group(1)): p for p in root.iterdir()
                 if (m := _RANK_NAME.fullmatch(p.name)) and p.is_dir() and not p.is_symlink()}
    except OSError:
        return {}
    return dict(sorted(found.items()))


def is_capture(root: str | os.PathLike) -> bool:
    try:
        return any((Path(root) / f).exists() for f in CAPTURE_FILES)
    except OSError:
        return False


def is_ranks(root: str | os.PathLike) -> bool:
    """A folder of ranks: a folder that is not itself a capture and holds at least one rank folder."""
    try:
        if not Path(root).is_dir():
            return False
    except OSError:
        return False
    return not is_capture(root) and bool(rank_folders(root))
