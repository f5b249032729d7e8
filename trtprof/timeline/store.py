"""Capture folders: write the timeline while recording, finish it as parquet, load it back.

Layout of a capture folder::

    meta.json          run metadata (command, versions, GPU, options, status)
    timeline.parquet   the timeline, one row per range (written when the capture ends)
    timeline.arrows    Arrow IPC stream the rows are spilled to while recording

Why spill to an IPC stream: every batch written there is readable even if the process dies before
the end, so a crash keeps what was recorded and memory stays bounded on long runs. At the end the
stream becomes one parquet file (compact, typed), streamed batch by batch so memory stays bounded
there too, and is removed.

Crash safety of `close()`: the parquet file is written under a temporary name and renamed into place,
meta.json is updated next and the spill removed last, so a process killed at any point leaves either
a readable parquet file or the spill; a meta.json still saying "running" means the writer never
finished, and the loader reports the capture as incomplete.

The loader only reads data (JSON, parquet, Arrow IPC): nothing in a capture folder is imported,
unpickled or evaluated, and every failure is a `CaptureError` with a one-line message.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trtprof import _files
from trtprof.errors import CaptureError, ExitCode, UsageError, first_line as _first_line
from trtprof.timeline import schema
from trtprof.timeline.columns import NOT_NULL

META = "meta.json"
TIMELINE = "timeline.parquet"
SPILL = "timeline.arrows"
KERNEL_SPILL = "kernels.arrows"  # CUPTI records while recording; kernels.parquet once attributed
LOCK = ".capturing"

ROW_GROUP = 128 * 1024  # rows per parquet row group: bounds memory while converting, reads fast

@dataclass
class Capture:
    """A loaded capture: its timeline DataFrame, its metadata and where it lives."""

    timeline: pd.DataFrame
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def complete(self) -> bool:
        return self.meta.get("status") == "complete"

    @property
    def kernels(self) -> pd.DataFrame | None:
        """The capture's CUPTI kernel and copy records (kernels.parquet), read on first use; None
        when it has none. A damaged file is a CaptureError."""
        if "_kernels" not in self.__dict__:
            from trtprof.timeline import kernels

            try:
                self.__dict__["_kernels"] = kernels.read(self.path) if self.path is not None else None
            except ValueError as e:
                raise CaptureError(str(e)) from None
        return self.__dict__["_kernels"]


def _write_json(path: Path, data: dict) -> None:
    _files.write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


class CaptureWriter:
    """Owns one capture folder while recording. Not thread-safe: the recorder serialises calls."""

    def __init__(self, folder: Path, meta: dict):
        self.folder = Path(folder)
        # The lock is taken before looking for an earlier capture: two processes started at once
        # cannot both see an empty folder and both write it.
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # FileExistsError here: a file is in the way
            raise CaptureError(f"cannot write the capture folder {self.folder}: "
                               f"{'a file of that name exists' if self.folder.is_file() else e.strerror}", ExitCode.BAD_OUTPUT) from None
        try:
            fd = os.open(self.folder / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise CaptureError(f"{self.folder} already holds a capture, or another trtprof process is writing "
                               "one there; choose another folder with -o", ExitCode.BAD_OUTPUT) from None
        except OSError as e:
            raise CaptureError(f"cannot write the capture folder {self.folder}: {e.strerror}", ExitCode.BAD_OUTPUT) from None
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            if any(p.name in (META, TIMELINE, SPILL) for p in self.folder.iterdir()):
                raise CaptureError(f"{self.folder} already holds a capture; choose another folder with -o",
                                   ExitCode.BAD_OUTPUT)
            self.meta = dict(meta, schema_version=schema.SCHEMA_VERSION, rules=list(schema.RULES), status="running")
            _write_json(self.folder / META, self.meta)
            # created exclusively and without following links: a planted timeline.arrows link is refused
            fd = os.open(self.folder / SPILL, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o666)
            self._sink = pa.PythonFile(os.fdopen(fd, "wb", buffering=0), mode="w")  # unbuffered, like OSFile
            self._stream = pa.ipc.new_stream(self._sink, schema.ARROW_SCHEMA)
        except BaseException as e:
            (self.folder / LOCK).unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise CaptureError(f"cannot write the capture folder {self.folder}: {e.strerror}", ExitCode.BAD_OUTPUT) from None
            raise
        self.rows = 0
        self._kstream = self._ksink = None
        self.kernel_records = 0
        self.kernel_watch = None  # callable(rows DataFrame) -> mask of rows recorded with kernel activity on

    def write_kernels(self, records: dict) -> None:
        """Append CUPTI kernel/copy records (KernelActivity.flush() output); they are attributed to
        rows when the capture closes."""
        from trtprof.timeline import kernels

        if not len(records.get("start_ns", ())):
            return
        if self._kstream is None:
            self._ksink = pa.OSFile(str(self.folder / KERNEL_SPILL), "wb")
            self._kstream = pa.ipc.new_stream(self._ksink, kernels.SCHEMA)
        self._kstream.write_table(kernels.to_table(records))
        self._ksink.flush()
        self.kernel_records += len(records["start_ns"])
        self.meta_error = None  # why meta.json could not be finished, if it could not

    def write(self, records: list[list]) -> None:
        """Append a batch of raw records; flushed to disk at once so a crash keeps it."""
        if not records:
            return
        self._stream.write_table(schema.records_to_table(records))
        self._sink.flush()
        self.rows += len(records)

    def close(self, **meta_updates) -> Path:
        """Turn the spill stream into parquet and record the final status in meta.json.

        If the parquet file cannot be written (disk full), the spill stays and the capture is marked
        incomplete: `load_capture` still reads every row from it.
        """
        try:
            self._stream.close()
            self._sink.close()
        except (pa.ArrowException, OSError):
            pass  # the end-of-stream marker is optional: every complete batch is read without it
        self.meta.update(meta_updates)
        if self.meta.get("status") in (None, "running"):
            self.meta["status"] = "complete"
        spill, final = self.folder / SPILL, self.folder / TIMELINE
        fill = self._attribute_kernels(spill)
        try:
            try:
                self.meta["rows"] = _spill_to_parquet(spill, final, fill)
            except (pa.ArrowException, OSError) as e:
                self.meta.update(status="incomplete", rows=self.rows,
                                 incomplete_reason=f"the parquet timeline could not be written ({_first_line(e)}); "
                                                   f"the rows are in {SPILL}")
                self._write_meta()
            else:
                if self._write_meta():
                    spill.unlink(missing_ok=True)
                    (self.folder / KERNEL_SPILL).unlink(missing_ok=True)
        finally:
            (self.folder / LOCK).unlink(missing_ok=True)
        return self.folder

    def _write_meta(self) -> bool:
        """meta.json, atomically; False when the disk refuses it (the old one stays, and says
        "running", which the loader reports as incomplete)."""
        try:
            _write_json(self.folder / META, self.meta)
            return True
        except OSError as e:
            self.meta_error = _first_line(e)
            return False

    def _attribute_kernels(self, spill: Path):
        """Attribute the spilled kernel records to the rows (kernels.parquet is written here); returns
        the function that fills each timeline batch's kernel columns, or None. A failure keeps the
        timeline and the raw records (kernels.arrows) and is said in meta.json."""
        if self._kstream is None:
            return None
        from trtprof.timeline import kernels

        try:
            self._kstream.close()
            self._ksink.close()
        except (pa.ArrowException, OSError):
            pass
        try:
            recs = pa.Table.from_batches(list(_iter_spill(self.folder / KERNEL_SPILL)), schema=kernels.SCHEMA)
            cols = ["seq", "thread", "event", "inference", "stream", "host_start_ns", "host_end_ns", "gpu_start_ns",
                    "gpu_end_ns"]
            batches = [b.select(cols) for b in _iter_spill(spill)]
            rows = pa.Table.from_batches(batches).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get) \
                if batches else pd.DataFrame(columns=cols)
            watched = self.kernel_watch(rows) if self.kernel_watch is not None and len(rows) else None
            k = recs.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
            k = {c: k[c].to_numpy() for c in k.columns} | {c: k[c].astype("int64").to_numpy()
                                                            for c in ("start_ns", "end_ns", "stream")} \
                | {"queued_ns": k["queued_ns"].fillna(-1).astype("int64").to_numpy()}
            info = self.meta.setdefault("kernels", {})
            k, found = kernels.calibrate(k, info.pop("calibration", None))
            if found is not None:
                info["calibration"] = found
            table, kseq, counts = kernels.attribute_timeline(rows, k, watched)
            kernels.write(self.folder, {c: v for c, v in k.items() if c != "seq"}, kseq)
        except Exception as e:  # noqa: BLE001 - kernels are extra: the timeline must still be written
            self.meta.setdefault("kernels", {})["error"] = f"kernel attribution failed: {_first_line(e)}"
            return None
        info = self.meta.setdefault("kernels", {})
        info.update(records=int(recs.num_rows), attributed=counts)
        return _kernel_filler(table)


def _kernel_filler(table: pd.DataFrame):
    """batch -> batch with the kernel columns looked up by seq."""
    from trtprof.timeline.kernels import ROW_COLUMNS

    index = table.index.to_numpy(np.int64) if len(table) else np.zeros(0, np.int64)
    order = np.argsort(index)
    index = index[order]
    values = {c: table[c].iloc[order] for c in ROW_COLUMNS} if len(table) else {}

    def fill(batch: pa.RecordBatch) -> pa.RecordBatch:
        if not len(index):
            return batch
        seq = batch.column(batch.schema.get_field_index("seq")).to_numpy()
        pos = np.searchsorted(index, seq)
        hit = (pos < len(index)) & (index[np.minimum(pos, len(index) - 1)] == seq)
        arrays = list(batch.columns)
        for c in ROW_COLUMNS:
            v = values[c].to_numpy(dtype=np.int64, na_value=0)
            na = values[c].isna().to_numpy()
            p = np.minimum(pos, len(index) - 1)
            arrays[batch.schema.get_field_index(c)] = pa.array(v[p], pa.int64(), mask=~hit | na[p])
        return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)
    return fill


def _spill_to_parquet(spill: Path, final: Path, fill=None) -> int:
    """Stream the spill's batches into a parquet file, ROW_GROUP rows at a time; returns the rows.

    Why not read_table + write_table: that holds the whole timeline in memory at once (gigabytes at
    10 M rows); this holds one row group.
    """
    rows, buf, n = 0, [], 0
    with _files.atomic_path(final) as tmp, pq.ParquetWriter(tmp, schema.ARROW_SCHEMA,
                                                              **schema.parquet_options(schema.ARROW_SCHEMA)) as out:
        for batch in _iter_spill(spill):
            buf.append(fill(batch) if fill is not None else batch)
            n += batch.num_rows
            if n >= ROW_GROUP:
                out.write_table(pa.Table.from_batches(buf, schema=schema.ARROW_SCHEMA), row_group_size=n)
                rows, buf, n = rows + n, [], 0
        if buf:
            out.write_table(pa.Table.from_batches(buf, schema=schema.ARROW_SCHEMA), row_group_size=n)
            rows += n
    return rows


def _iter_spill(path: Path, strict: bool = False):
    """Every complete batch of an IPC stream, even one cut off mid-write (a crash).

    `strict` (loading): a spill that cannot be opened, or whose stream does not even begin with a
    schema, is not a trtprof spill (CaptureError, exit 5), except an empty file: a process killed
    before its writer started. A stream cut off after its schema keeps what was read."""
    if strict:
        try:
            with pa.OSFile(str(path), "rb") as f:
                if f.size() == 0:
                    return
                pa.ipc.open_stream(f).schema.names  # field names must decode, too
        except (pa.ArrowException, OSError, UnicodeDecodeError) as e:
            what = f"cannot read {path}: {e.strerror}" if isinstance(e, OSError) and e.strerror else \
                f"{path} is not a readable Arrow stream ({_first_line(e)})"
            raise CaptureError(what) from None
    try:
        with pa.OSFile(str(path), "rb") as f, pa.ipc.open_stream(f) as reader:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                yield batch
    except (pa.ArrowInvalid, OSError):
        return  # truncated before the schema or inside a batch: keep what was read


def _read_spill(path: Path) -> pa.Table:
    """The spill stream as one table (for loading: the DataFrame holds it all anyway)."""
    batches = list(_iter_spill(path, strict=True))
    if not batches:
        return schema.ARROW_SCHEMA.empty_table()
    return pa.Table.from_batches(batches)


def load_capture(path: str | os.PathLike) -> Capture:
    """Read a capture folder (or its timeline.parquet). Raises CaptureError with a one-line reason.

    Whatever the folder holds (truncated, corrupt, foreign or hostile files), nothing but a
    CaptureError leaves this function: a file that does not parse is the user's problem to see in
    one line, not a traceback.
    """
    folder, meta = locate(path)
    has_parquet, has_spill = (folder / TIMELINE).is_file(), (folder / SPILL).is_file()
    if has_parquet:
        df = _read_parquet(folder, meta)
    elif has_spill:
        try:
            table = _read_spill(folder / SPILL)
        except CaptureError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CaptureError(f"{folder / SPILL} is not a readable Arrow stream ({_first_line(e)})") from None
        check_names(folder, table.column_names, meta)
        df = _frame(folder, meta, table, list(schema.COLUMNS))
    else:
        raise CaptureError(f"{folder} has no {TIMELINE}: not a trtprof capture")
    _repair(df, meta)
    # meta is not put in df.attrs here: pandas deep-copies attrs on every operation (a third of a
    # report's analysis time); `load()`, the DataFrame API, attaches it for users.
    return Capture(timeline=df, meta=meta, path=folder)


LOAD_COLUMNS = 8  # columns read and converted at a time: a load's peak is the frame plus their Arrow copy


def _read_parquet(folder: Path, meta: dict) -> pd.DataFrame:
    """timeline.parquet as a DataFrame, read and converted `LOAD_COLUMNS` columns at a time. Why not
    in one read: the whole Arrow table beside the frame made a load peak at about 2.4 times the
    frame (700 MB for 1,000,000 rows); a few columns at a time it stays near the frame (about 570 MB),
    and reads no slower. ParquetFile, not read_table: a plain file reader, without the dataset
    machinery (and its lazy imports) that read_table brings in."""
    names = list(schema.COLUMNS)
    parts = {}
    try:
        with pq.ParquetFile(folder / TIMELINE) as f:
            stored = f.schema_arrow.names  # field names that do not decode fail here, in the try
            check_names(folder, stored, meta)
            for i in range(0, len(names), LOAD_COLUMNS):
                group = names[i:i + LOAD_COLUMNS]
                table = f.read(columns=[c for c in group if c in stored], use_threads=True)
                parts.update(_frame(folder, meta, table, group).items())
                del table
    except CaptureError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure of a foreign file is a bad capture
        raise CaptureError(f"{folder / TIMELINE} is not a readable parquet file ({_first_line(e)})") from None
    return pd.DataFrame(parts, copy=False)


def _frame(folder: Path, meta: dict, table: pa.Table, columns: list[str]) -> pd.DataFrame:
    """The `columns` of a stored timeline `table` as the schema's dtypes: columns an older schema
    lacks as nulls, types cast, the recorder's not-null columns checked. Consumes `table`."""
    for v, added in schema.ADDED_IN.items():  # an older capture: its later columns are nulls
        if meta["schema_version"] < v:
            for c in added:
                if c in columns and c not in table.column_names:
                    table = table.append_column(c, pa.nulls(table.num_rows, schema.COLUMNS[c][0]))
    try:  # select drops foreign columns and metadata
        table = table.select(columns).cast(pa.schema([schema.ARROW_SCHEMA.field(c) for c in columns]))
    except Exception as e:  # noqa: BLE001
        raise CaptureError(f"{folder} has a timeline of the wrong types ({_first_line(e)})") from None
    nulls = [c for c in NOT_NULL if c in columns and table.column(c).null_count]
    if nulls:
        raise CaptureError(f"{folder} is not a trtprof timeline: null values in {', '.join(nulls)}")
    try:
        return schema.to_frame(table, consume=True)
    except Exception as e:  # noqa: BLE001 - e.g. a null in an int64 column
        raise CaptureError(f"{folder} has a timeline of the wrong types ({_first_line(e)})") from None


def _repair(df: pd.DataFrame, meta: dict) -> None:
    """Enforce the row rules (`schema.RULES`) on a loaded timeline. What was changed goes in
    meta["repairs"]: rule -> {"rows": n, "declared": whether the capture said it kept the rule}
    (a capture that did not was taken with an older trtprof)."""
    note_repairs(meta, schema.enforce_rules(df))


def note_repairs(meta: dict, fixed: dict[str, int]) -> None:
    """meta["repairs"] from the rows changed per rule (`schema.enforce_rules`, or counted in batches)."""
    declared = meta.get("rules") if meta["schema_version"] >= 3 and isinstance(meta.get("rules"), list) else []
    if fixed:
        meta["repairs"] = {k: {"rows": n, "declared": k in declared} for k, n in fixed.items()}
    else:
        meta.pop("repairs", None)  # only the loader writes it: a stale or planted one means nothing


def repair_notes(meta: dict) -> list[str]:
    """One sentence per rule the loader had to enforce (meta["repairs"], written by `_repair`)."""
    repairs = meta.get("repairs") if isinstance(meta.get("repairs"), dict) else {}
    fix = repairs.get("gpu_start_not_before_host_start")
    if not isinstance(fix, dict) or not isinstance(fix.get("rows"), int) or fix["rows"] <= 0:
        return []
    n = fix["rows"]
    what = f"{n:,} GPU start time{'s' if n != 1 else ''} clamped to the enqueue time (the host start of the call)"
    if fix.get("declared"):
        return [what + ": they were earlier, which the capture says its recorder never writes"]
    return [what + f": taken with an older trtprof (timeline schema {meta.get('schema_version')}), whose recorder "
                   "let a start event shared with the previous call stand for the start of this one"]


def _load_meta(folder: Path) -> dict:
    p = folder / META
    try:
        if not p.is_file():
            raise CaptureError(f"{folder} has no {META}: not a trtprof capture")
        data = p.read_bytes()
    except OSError as e:  # permissions, a folder of that name: not a question of JSON
        raise CaptureError(f"cannot read {p}: {e.strerror or _first_line(e)}") from None
    try:
        # NaN / Infinity are not JSON: read as null, so no consumer (export, report) meets them
        meta = json.loads(data, parse_constant=lambda _: None)
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, absurdly nested
        raise CaptureError(f"{p} is not valid JSON ({_first_line(e)})") from None
    if not isinstance(meta, dict) or "schema_version" not in meta:
        raise CaptureError(f"{p} is not trtprof metadata")
    version = meta["schema_version"]
    if type(version) is not int or version not in schema.READABLE_VERSIONS:
        raise CaptureError(f"{folder} uses timeline schema {_short(version)}; "
                           f"this trtprof reads {', '.join(map(str, schema.READABLE_VERSIONS))}")
    return meta


def _short(value, n: int = 40) -> str:
    r = repr(value)
    return r if len(r) <= n else r[:n] + "..."


def locate(path: str | os.PathLike) -> tuple[Path, dict]:
    """The capture folder at `path` (a folder or its timeline.parquet) and its metadata, with
    `status` "incomplete" where the writer never finished. CaptureError when it is not a capture."""
    folder = Path(path)
    try:
        if folder.is_file() and folder.name == TIMELINE:
            folder = folder.parent
        if not folder.is_dir():
            raise CaptureError(f"no capture at {folder}")
        has_parquet, has_spill = (folder / TIMELINE).is_file(), (folder / SPILL).is_file()
    except OSError as e:
        raise CaptureError(f"cannot read {folder}: {e.strerror or e}") from None
    meta = _load_meta(folder)
    if not has_parquet and not has_spill:
        raise CaptureError(f"{folder} has no {TIMELINE}: not a trtprof capture")
    if not has_parquet or meta.get("status") == "running":  # the writer never reached close()
        meta["status"] = "incomplete"
        meta.setdefault("incomplete_reason", "the capturing process ended before finishing the capture")
    return folder, meta


def check_names(folder: Path, names: list[str], meta: dict) -> None:
    """The column names of a stored timeline must be the schema's, each once (an older schema may
    lack the columns added after it: they read as nulls)."""
    later = {c for v, added in schema.ADDED_IN.items() if meta["schema_version"] < v for c in added}
    missing = [c for c in schema.COLUMNS if c not in names and c not in later]
    if missing:
        raise CaptureError(f"{folder} is not a trtprof timeline: missing columns {', '.join(missing[:5])}")
    dup = [c for c in schema.COLUMNS if names.count(c) > 1]
    if dup:
        raise CaptureError(f"{folder} is not a trtprof timeline: duplicate columns {', '.join(dup[:5])}")


def load(path: str | os.PathLike, columns=None, filter=None, lazy: bool = False):
    """The timeline DataFrame of a capture folder; its metadata is in `df.attrs['trtprof']`.

    `columns` (names) and `filter` (a `pyarrow.compute` expression, or (column, op, value) tuples
    as pandas' read_parquet takes them) read only part of it, batch by batch, so the selection
    needs memory and the whole capture does not; `lazy=True` returns a `scan.Timeline` instead,
    which reads nothing until asked (`.to_pandas(columns, filter)`, `.batches(...)`, `.meta`)."""
    if lazy and (columns is not None or filter is not None):
        raise UsageError("load(lazy=True) takes no columns or filter: give them to the timeline's "
                         ".to_pandas(columns, filter) or .batches(columns, filter)")
    if lazy or columns is not None or filter is not None:
        from trtprof.timeline import scan

        tl = scan.open_timeline(path)
        return tl if lazy else tl.to_pandas(columns, filter)
    cap = load_capture(path)
    cap.timeline.attrs["trtprof"] = cap.meta
    return cap.timeline
