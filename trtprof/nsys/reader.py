"""Read an Nsight Systems SQLite export: trtprof's NVTX ranges, CUDA API calls and GPU activities.

Why our own reader (stdlib sqlite3) rather than `nsys stats` or nsys's Python recipes: we need three
tables joined our way (NVTX ranges of one domain, the API calls on a thread, the kernels and copies
those calls launched through `correlationId`), CI has no nsys, and the export schema is documented
and stable enough to read directly. Tables an export lacks (nsys writes only what it recorded: no
MEMSET table when nothing was memset) are read as empty, never guessed.

Identities in an export: `globalTid` packs the process and OS thread ids (pid = bits 24..47, tid =
bits 0..23); `globalPid` is the same with the tid bits zero. NVTX domain ids are per process, so a
range belongs to trtprof when its (process, domainId) matches a domain-create event named 'trtprof'.
All times are nanoseconds on nsys's own session clock; the analysis aligns them with trtprof's.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from trtprof.errors import NsysError
from trtprof.timeline.nvtx import DOMAIN

SQLITE_MAGIC = b"SQLite format 3\x00"
EXPORT_TIMEOUT_S = int(os.environ.get("TRTPROF_NSYS_EXPORT_TIMEOUT", "900"))
# Reading an export is bounded in time: a foreign or hostile database (a recursive view named
# NVTX_EVENTS) would otherwise keep a query running forever. SQLite calls the progress handler every
# _PROGRESS_STEPS virtual-machine steps; past the deadline it interrupts the query.
READ_TIMEOUT_S = float(os.environ.get("TRTPROF_NSYS_READ_TIMEOUT", "300"))
_PROGRESS_STEPS = 100_000

# ENUM_NSYS_EVENT_TYPE ids, used when an export lacks that enum table (they have been stable for years)
_EVENT_TYPES = {"NvtxPushPopRange": 59, "NvtxDomainCreate": 75}
_ACTIVITY_TABLES = {"kernel": "CUPTI_ACTIVITY_KIND_KERNEL", "memcpy": "CUPTI_ACTIVITY_KIND_MEMCPY",
                    "memset": "CUPTI_ACTIVITY_KIND_MEMSET"}

@dataclass
class NsysTrace:
    """What the analysis needs from one export, times in nsys ns.

    ranges:   start, end, name, gtid, pid          (trtprof domain, push/pop ranges, ended)
    runtime:  start, end, gtid, pid, correlation   (CUDA runtime and driver API calls)
    activity: start, end, kind, pid, correlation,  (kernel | memcpy | memset on the GPU)
              stream, name                         (stream -1 and name None where the export has none)
    """

    path: Path
    ranges: pd.DataFrame
    runtime: pd.DataFrame
    activity: pd.DataFrame
    session_start_utc_ns: int | None = None
    notes: list[str] = field(default_factory=list)


def pid_of(gtid):
    """Process id from a globalTid/globalPid (an int or an integer Series)."""
    if isinstance(gtid, pd.Series):
        return pd.Series((gtid.to_numpy("int64") >> 24) & 0xFFFFFF, index=gtid.index)
    return (int(gtid) >> 24) & 0xFFFFFF


def find_nsys() -> str | None:
    return shutil.which("nsys")


def export_sqlite(report: Path, out: Path, timeout: int = EXPORT_TIMEOUT_S) -> Path:
    """`nsys export --type sqlite` of a .nsys-rep into `out`; NsysError (one line) when it cannot."""
    nsys = find_nsys()
    if nsys is None:
        raise NsysError(f"cannot read {report}: nsys is not on PATH to export it "
                        "(run `nsys export --type sqlite` where nsys is, and pass the .sqlite)")
    cmd = [nsys, "export", "--type", "sqlite", "--force-overwrite", "true", "-o", str(out), str(report)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NsysError(f"nsys export of {report} took more than {timeout} s "
                        "(TRTPROF_NSYS_EXPORT_TIMEOUT sets the limit)") from None
    except OSError as e:
        raise NsysError(f"cannot run nsys export: {e.strerror or e}") from None
    if r.returncode != 0 or not out.is_file():
        last = ((r.stderr or r.stdout or "").strip().splitlines() or ["no output"])[-1][:200]
        raise NsysError(f"nsys export of {report} failed (exit {r.returncode}): {last}")
    return out


def _connect(path: Path) -> sqlite3.Connection:
    try:
        if not path.is_file():
            raise NsysError(f"no nsys report at {path}")
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise NsysError(f"cannot read {path}: {e.strerror or e}") from None
    if head != SQLITE_MAGIC:
        raise NsysError(f"{path} is not an SQLite file (make one with `nsys export --type sqlite`)")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise NsysError(f"cannot open {path}: {e}") from None
    deadline = time.monotonic() + READ_TIMEOUT_S
    con.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    return con


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def _columns(con, table: str) -> set[str]:
    return {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}


def _event_types(con, tables) -> dict[str, int]:
    types = dict(_EVENT_TYPES)
    if "ENUM_NSYS_EVENT_TYPE" in tables:
        for name, i in con.execute("SELECT name, id FROM ENUM_NSYS_EVENT_TYPE"):
            if name in types:
                types[name] = int(i)
    return types


def _frame(con, sql: str, params=(), columns=()) -> pd.DataFrame:
    rows = con.execute(sql, params).fetchall()
    return pd.DataFrame(rows, columns=list(columns))


def read_sqlite(path: str | os.PathLike, domain: str = DOMAIN) -> NsysTrace:
    """Load one export. Raises NsysError with a one-line reason for anything unusable."""
    path = Path(path)
    con = _connect(path)
    try:
        return _read(con, path, domain)
    except sqlite3.OperationalError as e:
        if "interrupt" not in str(e):
            raise NsysError(f"{path} is not a readable nsys export ({str(e).splitlines()[0][:200]})") from None
        raise NsysError(f"reading {path} took more than {READ_TIMEOUT_S:g} s (a recursive view, or not an "
                        "nsys export; TRTPROF_NSYS_READ_TIMEOUT sets the limit)") from None
    except sqlite3.Error as e:  # a damaged or foreign database
        raise NsysError(f"{path} is not a readable nsys export ({str(e).splitlines()[0][:200]})") from None
    except (ValueError, TypeError, OverflowError, KeyError) as e:  # values of the wrong type (an edited export)
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise NsysError(f"{path} is not a readable nsys export ({msg})") from None
    finally:
        con.close()


def _read(con, path: Path, domain: str) -> NsysTrace:
    tables = _tables(con)
    if "NVTX_EVENTS" not in tables:
        raise NsysError(f"{path} has no NVTX_EVENTS table: profile with `nsys profile -t cuda,nvtx`")
    types = _event_types(con, tables)
    strings = "StringIds" in tables
    name = "COALESCE(n.text, s.value)" if strings else "n.text"
    join = "LEFT JOIN StringIds s ON s.id = n.textId" if strings else ""
    domains = con.execute(f"SELECT DISTINCT n.globalTid, n.domainId FROM NVTX_EVENTS n {join} "
                          f"WHERE n.eventType = ? AND {name} = ?", (types["NvtxDomainCreate"], domain)).fetchall()
    keys = {(pid_of(int(g)), int(d)) for g, d in domains if g is not None and d is not None}
    if not keys:
        raise NsysError(f"{path} has no NVTX range in the {domain!r} domain: was trtprof capturing in the "
                        "profiled process (nsys profile -t nvtx)?")
    ranges = _frame(con, f"SELECT n.start, n.end, {name}, n.globalTid, n.domainId FROM NVTX_EVENTS n {join} "
                         "WHERE n.eventType = ? AND n.domainId IN (%s)" % ",".join("?" * len({d for _, d in keys})),
                    (types["NvtxPushPopRange"], *sorted({d for _, d in keys})),
                    ["start", "end", "name", "gtid", "domain"])
    notes = []
    if len(ranges):
        ranges["pid"] = pid_of(ranges["gtid"].astype("int64"))
        ranges = ranges[[(p, d) in keys for p, d in zip(ranges["pid"], ranges["domain"])]]
        open_ = int(ranges["end"].isna().sum())
        if open_:
            notes.append(f"{open_} trtprof NVTX ranges never ended in the report (left out)")
        ranges = ranges.dropna(subset=["end", "name"])
    ranges = ranges.astype({"start": "int64", "end": "int64", "gtid": "int64"}).drop(columns="domain")
    ranges = ranges.sort_values(["gtid", "start"], kind="stable").reset_index(drop=True)
    pids = sorted({p for p, _ in keys})
    runtime = _runtime(con, tables, pids)
    if "CUPTI_ACTIVITY_KIND_RUNTIME" not in tables:
        notes.append("the report has no CUDA API trace (profile with -t cuda): no kernels can be attributed")
    activity = _activity(con, tables, pids)
    start = None
    if "TARGET_INFO_SESSION_START_TIME" in tables and "utcEpochNs" in _columns(con, "TARGET_INFO_SESSION_START_TIME"):
        row = con.execute("SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME").fetchone()
        start = int(row[0]) if row and row[0] is not None else None
    return NsysTrace(path, ranges, runtime, activity, start, notes)


def _in_pids(column: str, pids: list[int]) -> str:
    return f"(({column} >> 24) & {0xFFFFFF}) IN ({','.join(str(int(p)) for p in pids)})"


def _runtime(con, tables, pids) -> pd.DataFrame:
    cols = ["start", "end", "gtid", "correlation"]
    if "CUPTI_ACTIVITY_KIND_RUNTIME" not in tables:
        df = pd.DataFrame({c: pd.Series(dtype="int64") for c in cols})
    else:
        df = _frame(con, "SELECT start, end, globalTid, correlationId FROM CUPTI_ACTIVITY_KIND_RUNTIME "
                         f"WHERE correlationId IS NOT NULL AND globalTid IS NOT NULL AND {_in_pids('globalTid', pids)}",
                    columns=cols).astype("int64")
    df["pid"] = pid_of(df["gtid"])
    return df.sort_values(["gtid", "start"], kind="stable").reset_index(drop=True)


def _activity(con, tables, pids) -> pd.DataFrame:
    """Kernels, copies and memsets of the processes `pids`: times, stream (-1 where the export has
    none) and, for kernels, the short name (None where the export has none)."""
    parts = []
    for kind, table in _ACTIVITY_TABLES.items():
        if table not in tables:
            continue
        cols = _columns(con, table)
        stream = "streamId" if "streamId" in cols else "NULL"
        name = ("(SELECT value FROM StringIds WHERE id = shortName)"
                if kind == "kernel" and "shortName" in cols and "StringIds" in tables else "NULL")
        df = _frame(con, f"SELECT start, end, globalPid, correlationId, {stream}, {name} FROM {table} "
                         f"WHERE correlationId IS NOT NULL AND globalPid IS NOT NULL AND {_in_pids('globalPid', pids)}",
                    columns=["start", "end", "gpid", "correlation", "stream", "name"])
        df = df.astype({c: "int64" for c in ("start", "end", "gpid", "correlation")})
        df["stream"] = pd.to_numeric(df["stream"], errors="coerce").fillna(-1).astype("int64")
        df["name"] = df["name"].astype(object).where(df["name"].map(lambda v: isinstance(v, str)), None)
        df["kind"] = kind
        parts.append(df)
    if not parts:
        return pd.DataFrame({"start": pd.Series(dtype="int64"), "end": pd.Series(dtype="int64"),
                             "pid": pd.Series(dtype="int64"), "correlation": pd.Series(dtype="int64"),
                             "kind": pd.Series(dtype="object"), "stream": pd.Series(dtype="int64"),
                             "name": pd.Series(dtype="object")})
    df = pd.concat(parts, ignore_index=True)
    df["pid"] = pid_of(df.pop("gpid"))
    return df[["start", "end", "pid", "correlation", "kind", "stream", "name"]]
