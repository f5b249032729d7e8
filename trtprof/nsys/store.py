"""`nsys.parquet`, `nsys_kernels.parquet` and `nsys.json` in a capture folder: what `nsys-import`
adds to a capture.

Extra per-row columns keyed by `seq`, so the core timeline schema stays fixed, and each kernel and
copy an engine or fallback row launched (for the report's timeline); written atomically, read back for
the report (a damaged file is an NsysError the caller decides about).
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
NSYS_KERNELS = "nsys_kernels.parquet"
# each kernel or copy of nsys_kernels.parquet, with the columns of a capture's kernels.parquet the
# report's timeline reads: times converted to the host clock, the CUDA stream nsys gives (-1: none),
# the kernel's short name (null for copies), the seq of the engine or fallback row that launched it
KERNEL_SCHEMA = pa.schema([("kind", pa.string()), ("name", pa.string()), ("start_ns", pa.int64()),
                           ("end_ns", pa.int64()), ("stream", pa.int64()), ("seq", pa.int64())])
KERNEL_COLUMNS = KERNEL_SCHEMA.names

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


def write_import(folder: Path, rows: pd.DataFrame, summary: dict,
                 kernels: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """Write the per-row columns, the kernels (empty when None: a later import replaces an earlier
    one's) and the import summary, each atomically (temp file + rename)."""
    folder = Path(folder)
    table = pa.Table.from_pandas(rows[list(COLUMNS)], schema=ARROW_SCHEMA, preserve_index=False)
    out, meta = folder / NSYS_PARQUET, folder / NSYS_JSON
    with _files.atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    k = kernels if kernels is not None else pd.DataFrame(columns=KERNEL_COLUMNS)
    ktable = pa.Table.from_pandas(k[KERNEL_COLUMNS], schema=KERNEL_SCHEMA, preserve_index=False)
    with _files.atomic_path(folder / NSYS_KERNELS) as tmp:
        pq.write_table(ktable, tmp, compression="zstd")
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


def read_kernels(folder: str | os.PathLike) -> pd.DataFrame | None:
    """nsys_kernels.parquet of a capture folder (KERNEL_COLUMNS); None when there is none (an import
    written before the file existed); NsysError when it is there but unreadable."""
    p = Path(folder) / NSYS_KERNELS
    if not p.is_file():
        return None
    try:
        with pq.ParquetFile(p) as f:
            return f.read(columns=KERNEL_COLUMNS).cast(KERNEL_SCHEMA).to_pandas()
    except Exception as e:  # noqa: BLE001 - a foreign or damaged file: one line
        raise NsysError(f"{p} is not a readable list of nsys kernels ({type(e).__name__})") from None
