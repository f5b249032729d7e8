"""`nsys.parquet` and `nsys.json` in a capture folder: what `nsys-import` adds to a capture.

Extra per-row columns keyed by `seq`, so the core timeline schema stays fixed; written atomically,
read back for the report (a damaged file is an NsysError the caller decides about).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trtprof import _files
from trtprof.errors import NsysError

NSYS_PARQUET = "nsys.parquet"
NSYS_JSON = "nsys.json"

# extra per-row columns of nsys.parquet: name -> (arrow type, meaning); docs/recording.md lists them
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "seq": (pa.int64(), "the timeline row (`seq`) these values belong to"),
    "nsys_match": (pa.string(), "nvtx: joined to its NVTX range; window: no range of its own (C++ runtime call "
                                "and alloc rows), its host interval was used; null: not in the nsys report"),
    "nsys_range_start_ns": (pa.int64(), "NVTX range start (or the window's), converted to the host clock"),
    "nsys_range_end_ns": (pa.int64(), "NVTX range end (or the window's), converted to the host clock"),
    "nsys_kernel_count": (pa.int64(), "kernels launched by CUDA calls made on the row's thread inside the range"),
    "nsys_kernel_ns": (pa.int64(), "sum of those kernels' durations"),
    "nsys_copy_count": (pa.int64(), "memcpy and memset operations launched inside the range"),
    "nsys_copy_ns": (pa.int64(), "sum of their durations"),
    "nsys_gpu_start_ns": (pa.int64(), "first kernel/copy start, converted to the host clock"),
    "nsys_gpu_end_ns": (pa.int64(), "last kernel/copy end, converted to the host clock"),
    "nsys_busy_ns": (pa.int64(), "length of the union of the kernel/copy intervals (GPU busy with this row's work)"),
}
ARROW_SCHEMA = pa.schema([pa.field(n, t) for n, (t, _) in COLUMNS.items()])


def write_import(folder: Path, rows: pd.DataFrame, summary: dict) -> tuple[Path, Path]:
    """Write the per-row columns and the import summary, each atomically (temp file + rename)."""
    folder = Path(folder)
    table = pa.Table.from_pandas(rows[list(COLUMNS)], schema=ARROW_SCHEMA, preserve_index=False)
    out, meta = folder / NSYS_PARQUET, folder / NSYS_JSON
    with _files.atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    _files.write_text(meta, json.dumps(summary, indent=2, sort_keys=True, default=str))
    return out, meta


def read_import(folder: str | os.PathLike) -> tuple[pd.DataFrame, dict] | None:
    """nsys.parquet and nsys.json of a capture folder; None when there is no import; NsysError when
    they are there but unreadable (a report must not fail on them: callers decide)."""
    folder = Path(folder)
    p, j = folder / NSYS_PARQUET, folder / NSYS_JSON
    if not p.is_file():
        return None
    try:
        with pq.ParquetFile(p) as f:
            table = f.read()
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise NsysError(f"{p} lacks columns {', '.join(missing[:4])}")
        df = table.select(list(COLUMNS)).cast(ARROW_SCHEMA).to_pandas()
        for c in COLUMNS:
            df[c] = df[c].astype("string" if c == "nsys_match" else ("int64" if c == "seq" else "Int64"))
        summary = json.loads(j.read_text()) if j.is_file() else {}
    except NsysError:
        raise
    except Exception as e:  # noqa: BLE001 - a foreign or damaged file: one line
        raise NsysError(f"{p} is not a readable nsys import ({str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__})") from None
    return df, summary if isinstance(summary, dict) else {}
