"""The timeline as CSV, for spreadsheets and tools that do not read parquet.

Why as-is: the columns are the documented timeline schema (`trtprof.model.schema`), so a spreadsheet
and `trtprof.load` show the same rows; nulls become empty cells. Named `tabular` rather than `csv` so
it never shadows the standard library module.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write every row and column of `df` to `path` (no index; atomically, via a temporary file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
