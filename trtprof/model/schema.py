"""The timeline schema: one row per instrumented range, its dtypes and the meaning of each column.

Defined once here (names and order come from `trtprof.capture.records.FIELDS`) so the capture writer,
the loader, the analyses and the README all agree. `SCHEMA_VERSION` is stored in every capture's
metadata; the loader refuses versions it does not know instead of guessing.
"""
from __future__ import annotations

import pandas as pd
import pyarrow as pa

from trtprof.capture.records import FIELDS

SCHEMA_VERSION = 1

# name -> (arrow type, pandas dtype, description)
COLUMNS: dict[str, tuple[pa.DataType, str, str]] = {
    "seq": (pa.int64(), "int64", "row number in recording order"),
    "pid": (pa.int64(), "int64", "process id"),
    "thread": (pa.int64(), "int64", "Python thread id (threading.get_ident) of the caller"),
    "model": (pa.string(), "string", "label of the top-level compiled module (model0, ...); empty if none"),
    "inference": (pa.int64(), "int64", "index of the model's top-level call; -1 outside one"),
    "subgraph": (pa.string(), "string", "submodule name (_run_on_acc_0, _run_on_gpu_1) or the model label"),
    "subgraph_kind": (pa.string(), "string", "engine | fallback | model"),
    "runtime": (pa.string(), "string", "python | cpp (Torch-TensorRT runtime) | torch (fallback, model)"),
    "event": (pa.string(), "string", "inference | call | alloc | exec | fallback"),
    "call": (pa.int64(), "int64", "per-subgraph call index, 0-based"),
    "host_start_ns": (pa.int64(), "int64", "host start, ns on the host clock (CLOCK_MONOTONIC)"),
    "host_end_ns": (pa.int64(), "int64", "host end, ns on the host clock"),
    "gpu_start_ns": (pa.int64(), "Int64", "GPU start from a CUDA event, ns on the host clock, never before host_start_ns "
                                        "(a shared boundary event can complete earlier: the GPU waited for the "
                                        "host); null without CUDA"),
    "gpu_end_ns": (pa.int64(), "Int64", "GPU end from a CUDA event, ns on the host clock"),
    "stream": (pa.int64(), "Int64", "CUDA stream handle the events were recorded on"),
    "input_shapes": (pa.string(), "string", "input tensor shapes, '(1,128);(1,128)'"),
    "shapes": (pa.string(), "string", "alloc: shapes allocated; call/exec: output shapes"),
    "bytes": (pa.int64(), "Int64", "alloc: bytes allocated"),
    "prealloc": (pa.bool_(), "boolean", "pre-allocated outputs mode on for this call"),
    "alloc_phase": (pa.string(), "string", "alloc: before_exec (normal path) | after_enqueue (for the next call)"),
    "outputs": (pa.string(), "string", "engine call/exec: preallocated | new"),
    "shape_changed": (pa.bool_(), "boolean", "input shapes differ from this subgraph's previous call"),
    "reallocated": (pa.bool_(), "boolean", "pre-alloc mode on but outputs were created before execution"),
    "new_segment": (pa.bool_(), "boolean", "alloc (C++ runtime): a new cudaMalloc segment, not the cache"),
    "exclude": (pa.bool_(), "boolean", "left out of statistics (first call after a pre-alloc mode flip)"),
    "note": (pa.string(), "string", "free text explaining a special row"),
}
assert tuple(COLUMNS) == FIELDS, "schema and capture record layout disagree"

ARROW_SCHEMA = pa.schema([pa.field(name, t) for name, (t, _, _) in COLUMNS.items()])


def records_to_table(records: list[list]) -> pa.Table:
    """Raw capture records -> Arrow table of the timeline schema (strict: wrong types raise)."""
    cols = list(zip(*records)) if records else [()] * len(FIELDS)
    return pa.Table.from_arrays([pa.array(c, type=t) for c, (t, _, _) in zip(cols, COLUMNS.values())],
                                schema=ARROW_SCHEMA)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow table -> DataFrame with the documented pandas dtypes (nullable where data may be absent)."""
    df = table.to_pandas()
    for name, (_, dtype, _) in COLUMNS.items():
        df[name] = df[name].astype(dtype)
    return df


def empty_frame() -> pd.DataFrame:
    return to_frame(records_to_table([]))


def check_columns(df: pd.DataFrame) -> list[str]:
    """Names of schema columns missing from `df` (empty when it is a timeline)."""
    return [c for c in COLUMNS if c not in df.columns]


def markdown_table() -> str:
    """The schema as a Markdown table, for the README (a test keeps the README in sync)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {d} | {desc} |" for n, (_, d, desc) in COLUMNS.items()]
    return "\n".join(lines)
