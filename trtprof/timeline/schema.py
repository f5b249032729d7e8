"""The timeline as typed data: Arrow schema, pandas dtypes, and the row rules every analysis uses.

Built from `timeline.columns` (names, order, meaning). `SCHEMA_VERSION` is stored in every capture's
metadata; the loader refuses versions it does not know instead of guessing.

The row rules (`call_rows`, `timed_rows`, `natural_order`) live here, next to the columns they read,
so "which row is a call", "which rows enter timing statistics" and "in which order subgraphs are
listed" are answered once for the terminal summary, the report, compare and the exports.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa

from trtprof.timeline.columns import ADDED_IN, CALL_EVENT, FIELDS, NOT_NULL, SPEC, TIMED_EVENT  # noqa: F401

SCHEMA_VERSION = 4
# 1: before the kernel columns (added as nulls on load); 2: before meta.json listed the row rules;
# 3: before the cudagraph column (null on load)
READABLE_VERSIONS = (1, 2, 3, 4)

# Row rules the recorder keeps, by name; a capture lists those it kept in meta.json "rules" (schema 3).
# The loader enforces each on every capture, the same way the recorder does, and counts the rows it
# changed (meta "repairs"): older captures were taken before some rules existed.
RULES = {
    "gpu_start_not_before_host_start": "gpu_start_ns >= host_start_ns where both are set: the GPU cannot "
                                       "start a call before the host enqueued it (an earlier GPU start is "
                                       "set to host_start_ns)",
}

_ARROW = {"int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}
_PANDAS = {("int", False): "int64", ("int", True): "Int64", ("str", False): "string", ("str", True): "string",
           ("bool", False): "bool", ("bool", True): "boolean"}
# name -> (arrow type, pandas dtype, meaning): the contract with its types
COLUMNS: dict[str, tuple[pa.DataType, str, str]] = {
    n: (_ARROW[k], _PANDAS[(k, nullable)], desc) for n, (k, nullable, desc) in SPEC.items()}
ARROW_SCHEMA = pa.schema([pa.field(n, t) for n, (t, _, _) in COLUMNS.items()])
DTYPES = {n: d for n, (_, d, _) in COLUMNS.items()}


def parquet_options(arrow_schema: pa.Schema) -> dict:
    """How every trtprof parquet file is written: zstd, and integer columns delta-encoded without a
    dictionary. Why: nanosecond timestamps and sequence numbers are most of a capture's bytes, and
    they grow nearly monotonically, which delta encoding stores in a few bits each (the committed
    H200 captures came out about 40 % smaller); readers need nothing new (plain parquet)."""
    ints = [f.name for f in arrow_schema if pa.types.is_integer(f.type)]
    return {"compression": "zstd", "use_dictionary": [f.name for f in arrow_schema if f.name not in ints],
            "column_encoding": {n: "DELTA_BINARY_PACKED" for n in ints}}


def records_to_table(records: list) -> pa.Table:
    """Raw capture records -> Arrow table of the timeline schema (strict: wrong types raise). A record
    may stop before the columns a later schema version added (ADDED_IN): those are null."""
    cols = list(zip(*records)) if records else [()] * len(FIELDS)
    if len(cols) < len(FIELDS) and len(cols) >= len(FIELDS) - sum(len(v) for v in ADDED_IN.values()):
        cols += [(None,) * len(records)] * (len(FIELDS) - len(cols))
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, ARROW_SCHEMA)],
                                schema=ARROW_SCHEMA)


_MAPPER = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}


def to_frame(table: pa.Table, consume: bool = False) -> pd.DataFrame:
    """Arrow table -> DataFrame with the documented pandas dtypes (nullable where data may be absent).

    The Arrow types map straight onto the nullable dtypes, so a column is converted once instead of
    through float64 or object and back (a 1,000,000-row timeline: 0.26 s instead of 1.4 s). With
    `consume` the table's buffers are released column by column as they are converted (the caller
    must not use the table afterwards), which keeps a load's peak near one copy of the rows."""
    df = table.to_pandas(types_mapper=_MAPPER.get, self_destruct=consume, split_blocks=consume)
    for name, dtype in DTYPES.items():
        if name in df and str(df[name].dtype) != dtype:
            df[name] = df[name].astype(dtype)  # the not-null ints and bools
    return df


def empty_frame() -> pd.DataFrame:
    return to_frame(records_to_table([]))


def check_columns(df: pd.DataFrame) -> list[str]:
    """Names of schema columns missing from `df` (empty when it is a timeline)."""
    return [c for c in COLUMNS if c not in df.columns]


def markdown_table() -> str:
    """The schema as a Markdown table, for docs/schema.md (a test keeps it in sync)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {d} | {desc} |" for n, (_, d, desc) in COLUMNS.items()]
    return "\n".join(lines)


def rules_markdown() -> str:
    """The row rules as a Markdown list, for docs/schema.md (a test keeps it in sync)."""
    return "\n".join(f"- `{name}`: {text}" for name, text in RULES.items())


def enforce_rules(df: pd.DataFrame) -> dict[str, int]:
    """Apply every row rule to `df` in place; returns rows changed per rule (only rules that changed some)."""
    gs, hs = df["gpu_start_ns"], df["host_start_ns"]
    early = (gs < hs).fillna(False).to_numpy(bool)
    if early.any():
        df.loc[early, "gpu_start_ns"] = hs[early].astype(df["gpu_start_ns"].dtype)
    counts = {"gpu_start_not_before_host_start": int(early.sum())}
    return {k: v for k, v in counts.items() if v}


# -- row rules ---------------------------------------------------------------------------------------------
def kept(df: pd.DataFrame) -> pd.Series:
    """Rows that enter timing statistics: all but those marked `exclude` (counts still include them)."""
    return ~df["exclude"].fillna(False).astype(bool)


def call_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per subgraph call (engine `call`, `fallback`) and per inference: what counts calls.
    A row of an unknown kind (an in-memory frame may hold anything) counts by its `call` event."""
    kind, event = df["subgraph_kind"], df["event"]
    known = kind.isin(list(CALL_EVENT)).fillna(False).to_numpy(bool)
    mask = ~known & (event == "call").fillna(False).to_numpy(bool)
    for k, ev in CALL_EVENT.items():
        mask |= ((kind == k) & (event == ev)).fillna(False).to_numpy(bool)
    return df[mask]


def timed_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows carrying each call's GPU interval (engine `exec`, `fallback`, `inference`), not excluded."""
    kind, event = df["subgraph_kind"], df["event"]
    mask = np.zeros(len(df), dtype=bool)
    for k, ev in TIMED_EVENT.items():
        mask |= ((kind == k) & (event == ev)).fillna(False).to_numpy(bool)
    return df[mask & kept(df).to_numpy(bool)]


_NUM = re.compile(r"(\d+)")
_TAIL = re.compile(r"_(\d+)$")


def natural_key(name) -> tuple:
    """Sort key of a subgraph (or model) name: by its trailing `_N` first, which is the order the
    partitioner numbered them in and so the order they run (`_run_on_acc_0`, `_run_on_gpu_1`,
    `_run_on_acc_2`, ..., `_run_on_acc_10`), then by the name with digit runs compared as numbers."""
    text = "" if name is None or name is pd.NA or not isinstance(name, str) else name
    m = _TAIL.search(text)
    parts = tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in _NUM.split(text))
    return (int(m.group(1)) if m else -1, parts)


def natural_order(values) -> list:
    """Distinct values in natural order (see `natural_key`)."""
    return sorted({v for v in values if isinstance(v, str)}, key=natural_key)


def natural_rank(values: pd.Series) -> np.ndarray:
    """Each value's position in the natural order of the distinct values (vectorised: the sort key
    is computed once per distinct name, not per row)."""
    uniq = pd.unique(values.astype(object))
    order = sorted(range(len(uniq)), key=lambda i: natural_key(uniq[i]))
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[pd.Index(uniq).get_indexer(values.astype(object))]


def sort_subgraphs(df: pd.DataFrame, by=("model", "subgraph")) -> pd.DataFrame:
    """Rows ordered by `by` (text columns in natural order, numbers as numbers); stable."""
    if df.empty:
        return df.reset_index(drop=True)
    keys = []
    for c in by:
        col = df[c]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        keys.append(col.to_numpy(dtype=float, na_value=np.nan) if numeric else natural_rank(col))
    order = np.lexsort(keys[::-1]) if keys else np.arange(len(df))
    return df.iloc[order].reset_index(drop=True)
