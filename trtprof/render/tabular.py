"""The timeline as CSV, for spreadsheets and tools that do not read parquet.

Why as-is: the columns are the documented timeline schema (`trtprof.timeline.columns`), so a spreadsheet
and `trtprof.load` show the same rows; nulls become empty cells. Named `tabular` rather than `csv` so
it never shadows the standard library module.

Why one exception, text cells that start with `=`, `+`, `-`, `@`, a tab or a carriage return: a
spreadsheet runs such a cell as a formula (`=HYPERLINK(...)` in an engine name a shared model chose).
They are written with a leading `'` (OWASP's advice for CSV injection), which spreadsheets show as
text; numbers are never touched, so a negative number stays a number.
"""
from __future__ import annotations


import pandas as pd

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _defuse(value):
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA) else value


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every text cell that a spreadsheet would run as a formula prefixed with `'`."""
    out = df
    for c in df.columns:
        col = df[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            risky = col.astype("string").str.match(r"[=+\-@\t\r]", na=False)
            if risky.any():
                if out is df:
                    out = df.copy()
                out[c] = col.astype(object).where(~risky, col[risky].map(_defuse))
    return out


def write_csv(df: pd.DataFrame, out) -> None:
    """Write every row and column of `df` into the text stream `out` (no index; the caller owns the file)."""
    neutralise(df).to_csv(out, index=False)


def write_csv_batches(frames, out) -> int:
    """The same for a timeline given as consecutive DataFrames (a capture read batch by batch): one
    header, then each frame's rows, so memory holds one batch. Returns the rows written."""
    rows, header = 0, True
    for df in frames:
        if not len(df) and not header:
            continue
        neutralise(df).to_csv(out, index=False, header=header)
        rows, header = rows + len(df), False
    return rows
