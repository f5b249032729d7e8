"""Capture folders: write the timeline while recording, finish it as parquet, load it back.

Layout of a capture folder::

    meta.json          run metadata (command, versions, GPU, options, status)
    timeline.parquet   the timeline, one row per range (written when the capture ends)
    timeline.arrows    Arrow IPC stream the rows are spilled to while recording

Why spill to an IPC stream: every batch written there is readable even if the process dies before
the end, so a crash keeps what was recorded and memory stays bounded on long runs. At the end the
stream becomes one parquet file (compact, typed) and is removed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trtprof.model import schema

META = "meta.json"
TIMELINE = "timeline.parquet"
SPILL = "timeline.arrows"
LOCK = ".capturing"


class CaptureError(Exception):
    """A capture folder that cannot be written or read; the message is one line for the user."""


@dataclass
class Capture:
    """A loaded capture: its timeline DataFrame, its metadata and where it lives."""

    timeline: pd.DataFrame
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def complete(self) -> bool:
        return self.meta.get("status") == "complete"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class CaptureWriter:
    """Owns one capture folder while recording. Not thread-safe: the recorder serialises calls."""

    def __init__(self, folder: Path, meta: dict):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if any(p.name in (META, TIMELINE, SPILL) for p in self.folder.iterdir()):
                raise CaptureError(f"{self.folder} already holds a capture; choose another folder with -o")
            fd = os.open(self.folder / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise CaptureError(f"another capture is writing into {self.folder}") from None
        except OSError as e:
            raise CaptureError(f"cannot write the capture folder {self.folder}: {e.strerror}") from None
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        self.meta = dict(meta, schema_version=schema.SCHEMA_VERSION, status="running")
        _write_json(self.folder / META, self.meta)
        self._sink = pa.OSFile(str(self.folder / SPILL), "wb")
        self._stream = pa.ipc.new_stream(self._sink, schema.ARROW_SCHEMA)
        self.rows = 0

    def write(self, records: list[list]) -> None:
        """Append a batch of raw records; flushed to disk at once so a crash keeps it."""
        if not records:
            return
        self._stream.write_table(schema.records_to_table(records))
        self._sink.flush()
        self.rows += len(records)

    def close(self, **meta_updates) -> Path:
        """Turn the spill stream into parquet and record the final status in meta.json."""
        self._stream.close()
        self._sink.close()
        table = _read_spill(self.folder / SPILL)
        pq.write_table(table, self.folder / TIMELINE, compression="zstd")
        (self.folder / SPILL).unlink()
        self.meta.update(meta_updates, rows=table.num_rows)
        self.meta.setdefault("status", "complete")
        if self.meta["status"] == "running":
            self.meta["status"] = "complete"
        _write_json(self.folder / META, self.meta)
        (self.folder / LOCK).unlink(missing_ok=True)
        return self.folder


def _read_spill(path: Path) -> pa.Table:
    """Every complete batch of an IPC stream, even one cut off mid-write."""
    batches = []
    try:
        with pa.OSFile(str(path), "rb") as f, pa.ipc.open_stream(f) as reader:
            for batch in _batches(reader):
                batches.append(batch)
    except (pa.ArrowInvalid, OSError):
        pass  # truncated before the first batch or the schema: keep what was read
    return pa.Table.from_batches(batches, schema=schema.ARROW_SCHEMA)


def _batches(reader):
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError):
            return  # a batch cut off by a crash


def load_capture(path: str | os.PathLike) -> Capture:
    """Read a capture folder (or its timeline.parquet). Raises CaptureError with a one-line reason."""
    folder = Path(path)
    if folder.is_file() and folder.name == TIMELINE:
        folder = folder.parent
    if not folder.is_dir():
        raise CaptureError(f"no capture at {folder}")
    meta = _load_meta(folder)
    if (folder / TIMELINE).is_file():
        try:
            table = pq.read_table(folder / TIMELINE)
        except (pa.ArrowException, OSError) as e:
            raise CaptureError(f"{folder / TIMELINE} is not a readable parquet file ({_first_line(e)})") from None
    elif (folder / SPILL).is_file():
        table = _read_spill(folder / SPILL)
        meta["status"] = "incomplete"
        meta.setdefault("incomplete_reason", "the capturing process ended before finishing the capture")
    else:
        raise CaptureError(f"{folder} has no {TIMELINE}: not a trtprof capture")
    missing = [c for c in schema.COLUMNS if c not in table.column_names]
    if missing:
        raise CaptureError(f"{folder} is not a trtprof timeline: missing columns {', '.join(missing[:5])}")
    try:
        table = table.select(list(schema.COLUMNS)).cast(schema.ARROW_SCHEMA)
        df = schema.to_frame(table)
    except (pa.ArrowException, ValueError, TypeError) as e:
        raise CaptureError(f"{folder} has a timeline of the wrong types ({_first_line(e)})") from None
    df.attrs["trtprof"] = meta
    return Capture(timeline=df, meta=meta, path=folder)


def _load_meta(folder: Path) -> dict:
    p = folder / META
    if not p.is_file():
        raise CaptureError(f"{folder} has no {META}: not a trtprof capture")
    try:
        meta = json.loads(p.read_text())
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise CaptureError(f"{p} is not valid JSON ({_first_line(e)})") from None
    if not isinstance(meta, dict) or "schema_version" not in meta:
        raise CaptureError(f"{p} is not trtprof metadata")
    if meta["schema_version"] != schema.SCHEMA_VERSION:
        raise CaptureError(f"{folder} uses timeline schema {meta['schema_version']!r}; "
                           f"this trtprof reads {schema.SCHEMA_VERSION}")
    return meta


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def load(path: str | os.PathLike) -> pd.DataFrame:
    """The timeline DataFrame of a capture folder; its metadata is in `df.attrs['trtprof']`."""
    return load_capture(path).timeline
