"""The timeline as CSV, for spreadsheets and tools that do not read parquet.

Why as-is: the columns are the documented timeline schema (`trtprof.timeline.columns`), so a spreadsheet
and `trtprof.load` show the same rows; nulls become empty cells. Named `tabular` rather than `csv` so
it never shadows the standard library module.
"""
from __future__ import annotations


import pandas as pd


def write_csv(df: pd.DataFrame, out) -> None:
    """Write every row and column of `df` into the text stream `out` (no index; the caller owns the file)."""
    df.to_csv(out, index=False)
