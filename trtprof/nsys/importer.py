"""`nsys-import`: find the report, export it to SQLite, join it to the capture, write the result.

The steps are the wing's other modules (`reader`: the export; `join`: pairing and clock; `store`:
nsys.parquet / nsys_kernels.parquet / nsys.json); this one only orders them and turns their failures into one-line errors
with the exit code to use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from trtprof.errors import EmptyCaptureError, ExitCode, NsysError
from trtprof.nsys import join as analysis, reader, store
from trtprof.timeline.store import load_capture


@dataclass
class ImportResult:
    capture_path: Path
    report: Path
    sqlite: Path
    join: analysis.Join
    comparison: pd.DataFrame
    written: tuple[Path, Path]
    notes: list[str] = field(default_factory=list)


# -- nsys-import ------------------------------------------------------------------------------------------
def find_report(folder: Path) -> Path:
    """The nsys report in a capture folder: the only .nsys-rep (or, without one, the only .sqlite)."""
    reps = sorted(folder.glob("*.nsys-rep"))
    sqls = sorted(folder.glob("*.sqlite"))
    if len(reps) > 1:
        raise NsysError(f"{folder} holds several .nsys-rep files ({', '.join(p.name for p in reps[:3])}): "
                           "name the one to import", ExitCode.NO_NSYS)
    if reps:
        return reps[0]
    if len(sqls) == 1:
        return sqls[0]
    if sqls:
        raise NsysError(f"{folder} holds several .sqlite files: name the one to import", ExitCode.NO_NSYS)
    raise NsysError(f"no nsys report (.nsys-rep or .sqlite) in {folder}: name one, or capture with "
                       "`trtprof capture --nsys`", ExitCode.NO_NSYS)


def _sqlite_for(report: Path, folder: Path) -> Path:
    """An .nsys-rep becomes CAPTURE/<stem>.sqlite (reused when newer than the report)."""
    try:
        with open(report, "rb") as f:
            if f.read(len(reader.SQLITE_MAGIC)) == reader.SQLITE_MAGIC:
                return report
    except OSError as e:
        raise NsysError(f"cannot read {report}: {e.strerror or e}", ExitCode.NO_NSYS) from None
    if report.suffix not in (".nsys-rep", ".qdrep"):
        return report  # read_sqlite says what it is not
    out = folder / (report.stem + ".sqlite")
    if out.is_symlink():  # planted: nsys would write through it; the export is ours to make
        out.unlink()
    elif out.is_file() and out.stat().st_mtime >= report.stat().st_mtime:
        return out
    return reader.export_sqlite(report, out)


def import_report(capture_path, report=None) -> ImportResult:
    """Join an nsys report to a capture and write nsys.parquet, nsys_kernels.parquet and nsys.json into
    the capture folder."""
    cap = load_capture(capture_path)  # CaptureError: BAD_CAPTURE
    if cap.timeline.empty:
        raise EmptyCaptureError(f"{cap.path} holds no rows: nothing to join")
    if report is None:
        report = find_report(cap.path)
    report = Path(report)
    if not report.is_file():
        raise NsysError(f"no nsys report at {report}", ExitCode.NO_NSYS)
    sqlite = _sqlite_for(report, cap.path)
    trace = reader.read_sqlite(sqlite)  # NsysError: NO_NSYS
    j = analysis.join(cap.timeline, trace, cap.meta)
    j.summary.update(nsys_report=str(report), sqlite=str(sqlite))
    try:
        written = store.write_import(cap.path, j.rows, j.summary, j.kernels)
    except OSError as e:
        raise NsysError(f"cannot write into {cap.path}: {e.strerror or e}", ExitCode.BAD_OUTPUT) from None
    return ImportResult(cap.path, report, sqlite, j, analysis.compare(cap.timeline, j.rows), written, j.notes)


@dataclass
class ReportView:
    """What the report shows of a capture's nsys import: the per-subgraph comparison and the import's
    summary, or why the import cannot be read."""

    comparison: pd.DataFrame | None
    summary: dict
    error: str | None = None
    rows: pd.DataFrame | None = None  # nsys.parquet, keyed by seq
    filled: int = 0  # GPU rows whose kernel columns the report took from nsys (see `with_nsys_kernels`)
    kernels: pd.DataFrame | None = None  # nsys_kernels.parquet: each kernel and copy of an engine or fallback


def report_view(cap) -> ReportView | None:
    """The capture's nsys import for the report; None when there is none. Never raises for a damaged
    import: the report says it cannot be read instead."""
    if getattr(cap, "path", None) is None:
        return None
    try:
        got = store.read_import(cap.path)
    except NsysError as e:
        return ReportView(None, {}, str(e))
    if got is None:
        return None
    rows, summary = got
    try:
        kernels = store.read_kernels(cap.path)
    except NsysError:  # the timeline then draws the kernel spans of nsys.parquet alone
        kernels = None
    return ReportView(analysis.compare(cap.timeline, rows), summary, rows=rows, kernels=kernels)


# kernel column <- nsys column: nsys's busy and span cover the row's kernels and copies
_FROM_NSYS = {"kernel_count": "nsys_kernel_count", "kernel_first_ns": "nsys_gpu_start_ns",
              "kernel_last_ns": "nsys_gpu_end_ns", "kernel_busy_ns": "nsys_busy_ns"}


def with_nsys_kernels(cap, view: ReportView | None):
    """The capture as the report should see it: engine and fallback rows that have no kernel activity
    of their own (no cupti-python, or CUPTI taken by nsys) get their kernel span and busy time from
    the nsys import, so the timeline draws nsys's kernels beside trtprof's allocation rows (the C++
    runtime's allocations come from the caching allocator's log and have no NVTX range of their own)
    and hidden vs exposed is computed against them. Returns (capture, rows filled); the capture is
    unchanged when there is nothing to fill."""
    import dataclasses

    if view is None or view.rows is None or view.rows.empty:
        return cap, 0
    df = cap.timeline
    nsys = view.rows.set_index("seq")
    gpu = df["event"].isin(["exec", "fallback"]) & df["kernel_first_ns"].isna()
    seq = df.loc[gpu, "seq"]
    have = seq[seq.isin(nsys.index[nsys["nsys_gpu_start_ns"].notna() & nsys["nsys_gpu_end_ns"].notna()])]
    if have.empty:
        return cap, 0
    out = df.copy()
    for col, src in _FROM_NSYS.items():
        out.loc[have.index, col] = nsys.loc[have.to_numpy(), src].to_numpy()
    view.filled = len(have)
    return dataclasses.replace(cap, timeline=out), len(have)


def report_inputs(cap):
    """(the capture as the report sees it, its nsys view): the one way the CLI and tests prepare a report."""
    view = report_view(cap)
    return with_nsys_kernels(cap, view)[0], view
