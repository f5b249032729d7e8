"""A capture's timeline read batch by batch, with column and row selection: the way to work on a
capture larger than memory (`trtprof.load(path, lazy=True)`, `trtprof.load(path, columns=, filter=)`,
the streamed CSV export).

Why batches of the capture's own files rather than a second format or a database: timeline.parquet
is already written in row groups of `store.ROW_GROUP` rows, and pyarrow (a dependency anyway) reads
one row group at a time with only the columns asked for, so memory is bounded by one batch of the
selected columns whatever the capture's length. A capture whose writer never finished is read from
its Arrow spill the same way, batch by batch.

Every batch gets what `load_capture` gives the whole timeline: the schema's types (an older schema's
later columns as nulls), the not-null checks, and the row rules (`schema.RULES`) enforced, so a
selection of rows reads exactly the values a full load shows. Row filters are evaluated after the
rules, on those values; they cost a read of the columns they name.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from trtprof.errors import CaptureError, UsageError, first_line
from trtprof.timeline import schema, store
from trtprof.timeline.columns import NOT_NULL

_NAMES = re.compile(r"\b(" + "|".join(sorted(schema.COLUMNS, key=len, reverse=True)) + r")\b")


def _expression(filter) -> tuple[pc.Expression | None, set[str]]:
    """A row filter as an Arrow expression and the columns it names. Accepted: a
    `pyarrow.compute` expression (`pc.field("event") == "exec"`), or pandas' `read_parquet` form, a
    list of (column, op, value) tuples (all must hold) or a list of such lists (any may hold)."""
    if filter is None:
        return None, set()
    if isinstance(filter, pc.Expression):
        # the fields an expression reads are not public API: its text names them (a string value that
        # spells a column name only adds a column to the read)
        return filter, set(_NAMES.findall(str(filter)))
    if isinstance(filter, (list, tuple)) and filter:
        import pyarrow.parquet as pq

        groups = filter if isinstance(filter[0], (list, tuple)) and filter[0] and \
            isinstance(filter[0][0], (list, tuple)) else [filter]
        names = set()
        for group in groups:
            for term in group:
                if not (isinstance(term, (list, tuple)) and len(term) == 3 and isinstance(term[0], str)):
                    raise UsageError(f"filter: {term!r} is not a (column, op, value) tuple")
                names.add(term[0])
        _check(names, "filter")
        try:
            return pq.filters_to_expression([list(map(tuple, g)) for g in groups]), names
        except (ValueError, TypeError, pa.ArrowException) as e:
            raise UsageError(f"filter: {first_line(e)}") from None
    raise UsageError(f"filter must be a pyarrow.compute expression or a list of (column, op, value) tuples, "
                     f"not {type(filter).__name__}")


def _check(names, what: str) -> None:
    unknown = [n for n in names if n not in schema.COLUMNS]
    if unknown:
        raise UsageError(f"{what}: no timeline column {', '.join(map(repr, unknown[:5]))} "
                         f"(columns: docs/schema.md)")


class Timeline:
    """A capture opened without reading its rows: metadata now, rows batch by batch on demand.

    `batches()`, `to_arrow()` and `to_pandas()` take `columns` (names, in the order wanted; default
    all) and `filter` (see `_expression`). Each call reads the files again, so a notebook can ask one
    question after another of a capture that would not fit in memory."""

    def __init__(self, folder: Path, meta: dict):
        self.path, self._meta = folder, meta
        self._parquet = folder / store.TIMELINE if (folder / store.TIMELINE).is_file() else None
        self._physical = self._names()

    def _names(self) -> list[str]:
        if self._parquet is None:
            first = next(store._iter_spill(self.path / store.SPILL, strict=True), None)
            names = first.schema.names if first is not None else list(schema.COLUMNS)
        else:
            try:
                import pyarrow.parquet as pq

                with pq.ParquetFile(self._parquet) as f:
                    names, self.num_rows = f.schema_arrow.names, f.metadata.num_rows
            except Exception as e:  # noqa: BLE001 - a foreign file is a bad capture, in one line
                raise CaptureError(f"{self._parquet} is not a readable parquet file ({first_line(e)})") from None
        store.check_names(self.path, names, self._meta)
        return names

    @property
    def columns(self) -> list[str]:
        return list(schema.COLUMNS)

    @property
    def meta(self) -> dict:
        """meta.json as `load_capture` gives it: with `repairs`, counted in one pass over the two
        columns the rule reads, on first use."""
        if "repairs" not in self.__dict__:
            n = 0
            for b in self._raw(["gpu_start_ns", "host_start_ns"], repair=False):
                gs, hs = b.column("gpu_start_ns"), b.column("host_start_ns")
                n += int(pc.sum(pc.fill_null(pc.less(gs, hs), False).cast(pa.int64())).as_py() or 0)
            self.__dict__["repairs"] = n
            store.note_repairs(self._meta, {"gpu_start_not_before_host_start": n} if n else {})
        return self._meta

    def _raw(self, read: list[str], batch_rows: int = store.ROW_GROUP, repair: bool = True) -> Iterator[pa.Table]:
        """Tables of the columns `read`, typed and checked, with the row rules enforced (`repair`)."""
        present = [c for c in read if c in self._physical]
        if "gpu_start_ns" in read and "host_start_ns" not in present and "host_start_ns" in self._physical:
            present.append("host_start_ns")  # the rule on gpu_start_ns reads it
        if self._parquet is not None:
            import pyarrow.parquet as pq

            try:
                # pre_buffer off: pre-buffered column chunks stay allocated until the file is closed,
                # ~3 MB a row group here (100 M rows: over 2 GB held to the last batch); read on
                # demand, the reader's memory stays that of one row group
                f = pq.ParquetFile(self._parquet, pre_buffer=False)
                source = f.iter_batches(batch_size=batch_rows, columns=present, use_threads=False)
            except Exception as e:  # noqa: BLE001
                raise CaptureError(f"{self._parquet} is not a readable parquet file ({first_line(e)})") from None
        else:
            source = (b.select(present) for b in store._iter_spill(self.path / store.SPILL, strict=True))
        while True:
            try:
                batch = next(source)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 - a damaged row group
                raise CaptureError(f"{self.path} has an unreadable timeline ({first_line(e)})") from None
            yield _typed(self.path, pa.Table.from_batches([batch]), read, repair)

    def batches(self, columns=None, filter=None, batch_rows: int = store.ROW_GROUP) -> Iterator[pa.Table]:
        """The selected rows and columns as Arrow tables of at most `batch_rows` rows each."""
        cols = list(schema.COLUMNS) if columns is None else list(columns)
        _check(cols, "columns")
        expr, named = _expression(filter)
        read = cols + [c for c in schema.COLUMNS if c in named and c not in cols]
        for t in self._raw(read, batch_rows):
            if expr is not None:
                try:
                    t = t.filter(expr)
                except (pa.ArrowException, TypeError, ValueError) as e:
                    raise UsageError(f"filter: {first_line(e)}") from None
            yield t.select(cols)

    def in_time_order(self, columns) -> Iterator[tuple[pa.Table, float]]:
        """The rows in batches ordered by their earliest start (host or GPU), each with a `_pos`
        column (the row's position in the timeline) and a bound: every row of the batches after it
        starts at or after that bound (inf after the last). Why: a consumer that must see ranges in
        start order (the Perfetto trace's nesting) buffers only the rows that start before the
        bound, which for a capture written in recording order is about one row group.

        The bound comes from the parquet row-group statistics of the raw start columns (a GPU start
        the row rule raises is still >= the raw minimum of the group); a spill, or a file without
        statistics, is read once for it."""
        cols = list(dict.fromkeys(list(columns) + ["host_start_ns"]))
        groups = self._groups()
        lows = [lo for lo, _, _ in groups]
        order = sorted(range(len(groups)), key=lambda i: (lows[i], i)) if self._parquet is not None else \
            list(range(len(groups)))  # a spill is read in its order
        after = [float("inf")] * len(order)
        for j in range(len(order) - 2, -1, -1):
            after[j] = min(after[j + 1], lows[order[j + 1]])
        spill = None if self._parquet is not None else self._raw(cols)
        for j, i in enumerate(order):
            _, offset, _ = groups[i]
            t = next(spill) if spill is not None else self._row_group(i, cols)
            yield t.append_column("_pos", pa.array(range(offset, offset + t.num_rows), pa.int64())), after[j]

    def _groups(self) -> list[tuple[float, int, int]]:
        """(earliest raw start, first row position, rows) per row group (per batch of a spill)."""
        out, offset = [], 0
        if self._parquet is not None:
            import pyarrow.parquet as pq

            with pq.ParquetFile(self._parquet) as f:
                md, names = f.metadata, f.schema_arrow.names
                for i in range(md.num_row_groups):
                    rg, lo = md.row_group(i), float("inf")
                    for c in ("host_start_ns", "gpu_start_ns"):
                        if c not in names:
                            continue
                        st = rg.column(names.index(c)).statistics
                        if st is None or not st.has_min_max:
                            if st is not None and st.null_count == rg.num_rows:
                                continue  # all null: no start
                            lo = None
                            break
                        lo = min(lo, st.min)
                    if lo is None:  # no statistics: read the two columns of this group
                        lo = _low(self._row_group(i, ["host_start_ns", "gpu_start_ns"], repair=False))
                    out.append((lo, offset, rg.num_rows))
                    offset += rg.num_rows
            return out
        for t in self._raw(["host_start_ns", "gpu_start_ns"], repair=False):
            out.append((_low(t), offset, t.num_rows))
            offset += t.num_rows
        return out

    def _row_group(self, i: int, read: list[str], repair: bool = True) -> pa.Table:
        import pyarrow.parquet as pq

        present = [c for c in read if c in self._physical]
        if "gpu_start_ns" in read and "host_start_ns" not in present and "host_start_ns" in self._physical:
            present.append("host_start_ns")
        try:
            with pq.ParquetFile(self._parquet) as f:
                t = f.read_row_group(i, columns=present, use_threads=False)
        except Exception as e:  # noqa: BLE001 - a damaged row group
            raise CaptureError(f"{self.path} has an unreadable timeline ({first_line(e)})") from None
        return _typed(self.path, t, read, repair)

    def to_arrow(self, columns=None, filter=None) -> pa.Table:
        cols = list(schema.COLUMNS) if columns is None else list(columns)
        parts = list(self.batches(cols, filter))
        if not parts:
            return pa.schema([schema.ARROW_SCHEMA.field(c) for c in cols]).empty_table()
        return pa.concat_tables(parts)

    def frames(self, columns=None, filter=None, batch_rows: int = store.ROW_GROUP):
        """The selection as DataFrames of at most `batch_rows` rows each, with the schema's dtypes."""
        for t in self.batches(columns, filter, batch_rows):
            yield _frame(t)

    def has_rows(self) -> bool:
        return next((True for t in self.batches(["seq"]) if t.num_rows), False)

    def to_pandas(self, columns=None, filter=None):
        """The selection as a DataFrame with the schema's pandas dtypes; meta in `df.attrs['trtprof']`."""
        df = _frame(self.to_arrow(columns, filter))
        df.attrs["trtprof"] = self.meta
        return df

    def __repr__(self) -> str:
        rows = f"{self.num_rows:,} rows" if hasattr(self, "num_rows") else "rows in its spill"
        return f"<trtprof.Timeline {self.path} ({rows}, {self._meta.get('status')})>"


def _low(t: pa.Table) -> float:
    """The earliest value of the table's columns (inf when all are null)."""
    return min((pc.min(t.column(c)).as_py() for c in t.column_names if t.column(c).null_count < t.num_rows),
               default=float("inf"))


def _frame(table: pa.Table):
    df = table.to_pandas()
    for c in table.column_names:
        df[c] = df[c].astype(schema.DTYPES[c])
    return df


def _typed(folder: Path, t: pa.Table, read: list[str], repair: bool = True) -> pa.Table:
    """`t` as the schema types of `read` (absent later columns as nulls), not-null checked, row rules kept."""
    for c in read:
        if c not in t.column_names:
            t = t.append_column(c, pa.nulls(t.num_rows, schema.COLUMNS[c][0]))
    keep = read + (["host_start_ns"] if "gpu_start_ns" in read and "host_start_ns" not in read else [])
    try:
        t = t.select(keep).cast(pa.schema([schema.ARROW_SCHEMA.field(c) for c in keep]))
    except Exception as e:  # noqa: BLE001
        raise CaptureError(f"{folder} has a timeline of the wrong types ({first_line(e)})") from None
    nulls = [c for c in keep if c in NOT_NULL and t.column(c).null_count]
    if nulls:
        raise CaptureError(f"{folder} is not a trtprof timeline: null values in {', '.join(nulls)}")
    if repair and "gpu_start_ns" in keep:  # gpu_start_not_before_host_start, as schema.enforce_rules applies it
        gs, hs = t.column("gpu_start_ns"), t.column("host_start_ns")
        early = pc.fill_null(pc.less(gs, hs), False)
        t = t.set_column(t.column_names.index("gpu_start_ns"), "gpu_start_ns", pc.if_else(early, hs, gs))
    return t.select(read)


def open_timeline(path) -> Timeline:
    """The capture at `path` (a folder or its timeline.parquet), opened lazily; CaptureError if it
    is not one."""
    folder, meta = store.locate(path)
    return Timeline(folder, meta)
