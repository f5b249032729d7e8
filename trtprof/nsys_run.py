"""Nsight Systems around trtprof: `capture --nsys` (run the capture under `nsys profile`) and
`nsys-import` (export, join, write nsys.parquet / nsys.json into the capture folder).

Why re-execute under nsys instead of attaching: nsys must start the process to trace CUDA from its
first call, so `trtprof capture --nsys` runs `nsys profile -t cuda,nvtx ... -o CAPTURE/nsys python -m
trtprof capture -o CAPTURE [same options] TARGET ARGS`; the child writes the capture as usual, nsys
writes CAPTURE/nsys.nsys-rep next to it, and the import then runs here, in the parent. The child's
exit code is the one returned: taken from the capture's meta.json (nsys's own exit status is not
guaranteed to be the application's), else from nsys.

Kept out of the CLI so the command line built here can be tested with a fake `nsys` on PATH.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from trtprof import workflow
from trtprof.analysis import nsys as analysis
from trtprof.model import nsys as model
from trtprof.model.store import META, TIMELINE, CaptureError, load_capture
from trtprof.session import default_folder

REPORT_STEM = "nsys"  # nsys writes CAPTURE/nsys.nsys-rep
TRACE = ("-t", "cuda,nvtx")
_OWN_OUTPUT = ("-o", "--output")
_TRACE_OPTS = ("-t", "--trace")


class NsysRunError(CaptureError):
    """A one-line failure (control characters escaped, as CaptureError does) with the exit code to use."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


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
        raise NsysRunError(f"{folder} holds several .nsys-rep files ({', '.join(p.name for p in reps[:3])}): "
                           "name the one to import", workflow.EXIT_NO_NSYS)
    if reps:
        return reps[0]
    if len(sqls) == 1:
        return sqls[0]
    if sqls:
        raise NsysRunError(f"{folder} holds several .sqlite files: name the one to import", workflow.EXIT_NO_NSYS)
    raise NsysRunError(f"no nsys report (.nsys-rep or .sqlite) in {folder}: name one, or capture with "
                       "`trtprof capture --nsys`", workflow.EXIT_NO_NSYS)


def _sqlite_for(report: Path, folder: Path) -> Path:
    """An .nsys-rep becomes CAPTURE/<stem>.sqlite (reused when newer than the report)."""
    try:
        with open(report, "rb") as f:
            if f.read(len(model.SQLITE_MAGIC)) == model.SQLITE_MAGIC:
                return report
    except OSError as e:
        raise NsysRunError(f"cannot read {report}: {e.strerror or e}", workflow.EXIT_NO_NSYS) from None
    if report.suffix not in (".nsys-rep", ".qdrep"):
        return report  # read_sqlite says what it is not
    out = folder / (report.stem + ".sqlite")
    if out.is_file() and out.stat().st_mtime >= report.stat().st_mtime:
        return out
    try:
        return model.export_sqlite(report, out)
    except model.NsysError as e:
        raise NsysRunError(str(e), workflow.EXIT_NO_NSYS) from None


def import_report(capture_path, report=None) -> ImportResult:
    """Join an nsys report to a capture and write nsys.parquet / nsys.json into the capture folder."""
    try:
        cap = load_capture(capture_path)
    except CaptureError as e:
        raise NsysRunError(str(e), workflow.EXIT_BAD_CAPTURE) from None
    if cap.timeline.empty:
        raise NsysRunError(f"{cap.path} holds no rows: nothing to join", workflow.EXIT_EMPTY_CAPTURE)
    if report is None:
        report = find_report(cap.path)
    report = Path(report)
    if not report.is_file():
        raise NsysRunError(f"no nsys report at {report}", workflow.EXIT_NO_NSYS)
    sqlite = _sqlite_for(report, cap.path)
    try:
        trace = model.read_sqlite(sqlite)
        j = analysis.join(cap.timeline, trace, cap.meta)
    except model.NsysError as e:
        raise NsysRunError(str(e), workflow.EXIT_NO_NSYS) from None
    j.summary.update(nsys_report=str(report), sqlite=str(sqlite))
    try:
        written = model.write_import(cap.path, j.rows, j.summary)
    except OSError as e:
        raise NsysRunError(f"cannot write into {cap.path}: {e.strerror or e}", workflow.EXIT_BAD_OUTPUT) from None
    return ImportResult(cap.path, report, sqlite, j, analysis.compare(cap.timeline, j.rows), written, j.notes)


# -- capture --nsys ------------------------------------------------------------------------------------------
def profile_command(nsys: str, folder: Path, nsys_args: str, child: list[str]) -> list[str]:
    """`nsys profile -t cuda,nvtx [EXTRA] -o FOLDER/nsys python -m trtprof capture CHILD...`.

    EXTRA (--nsys-args) may replace the trace list (-t/--trace) but not the output: the report must
    land in the capture folder for the import to find it."""
    try:
        extra = shlex.split(nsys_args or "")
    except ValueError as e:
        raise NsysRunError(f"--nsys-args: {e}", 2) from None
    if any(a in _OWN_OUTPUT or a.startswith(("--output=", "-o=")) for a in extra):
        raise NsysRunError("--nsys-args must not set the output (-o): the report goes into the capture folder",
                           2)
    own_trace = any(a in _TRACE_OPTS or a.startswith("--trace=") for a in extra)
    return [nsys, "profile", *(() if own_trace else TRACE), *extra, "-o", str(folder / REPORT_STEM),
            sys.executable, "-m", "trtprof", "capture", *child]


def child_options(folder: Path, *, module: bool, quiet: bool, prealloc: str, cpp_allocs: bool,
                  level: str = "full", sample: int = 1) -> list[str]:
    """The options of the capture run under nsys: the parent's, with the folder fixed; no report
    there (the parent writes it once the nsys columns exist)."""
    return (["-o", str(folder), "--prealloc", prealloc, "--cpp-allocs" if cpp_allocs else "--no-cpp-allocs",
             "--level", level, "--sample", str(sample), "--no-report"] + (["-q"] if quiet else []) + (["-m"] if module else []))


def cli_main(target: str, args: list[str], *, echo, report=None, **kw) -> int:
    """`trtprof capture --nsys`: run, import, then `report(capture, quiet)` when given; the exit code."""
    try:
        code, folder = capture_under_nsys(target, args, echo=echo, **kw)
    except NsysRunError as e:
        echo(str(e))
        return e.code
    if report is not None:
        try:
            cap = load_capture(folder)
        except CaptureError:
            return code  # the child said why
        report(cap, kw.get("quiet", False))
    return code


def capture_under_nsys(target: str, args: list[str], *, module: bool, output: str | None, quiet: bool,
                       prealloc: str, cpp_allocs: bool, nsys_args: str, echo=print,
                       level: str = "full", sample: int = 1) -> tuple[int, Path]:
    """Run the capture under nsys, then import its report: (exit code to leave with, capture folder)."""
    nsys = model.find_nsys()
    if nsys is None:
        raise NsysRunError("--nsys: nsys (Nsight Systems) is not on PATH", workflow.EXIT_NO_NSYS)
    try:
        stem = workflow.check_target(target, module)
    except workflow.UsageError as e:
        raise NsysRunError(str(e), e.code) from None
    folder = Path(output) if output else default_folder(stem)
    if folder.is_dir() and any((folder / n).exists() for n in (META, TIMELINE, REPORT_STEM + ".nsys-rep")):
        raise NsysRunError(f"{folder} already holds a capture; choose another folder with -o", workflow.EXIT_BAD_OUTPUT)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NsysRunError(f"cannot write the capture folder {folder}: {e.strerror or e}",
                           workflow.EXIT_BAD_OUTPUT) from None
    cmd = profile_command(nsys, folder, nsys_args,
                          child_options(folder, module=module, quiet=quiet, prealloc=prealloc,
                                        cpp_allocs=cpp_allocs, level=level, sample=sample) + [target, *args])
    if not quiet:
        echo(f"running under Nsight Systems: {shlex.join(cmd)}")
    try:
        proc = subprocess.Popen(cmd)
    except OSError as e:
        raise NsysRunError(f"cannot run nsys: {e.strerror or e}", workflow.EXIT_NO_NSYS) from None
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt:  # nsys and the capture got the same Ctrl-C: let them write what they have
            continue
    code = _child_exit_code(folder, rc)
    rep = folder / (REPORT_STEM + ".nsys-rep")
    if not rep.is_file():
        echo(f"nsys wrote no report in {folder} (nsys exit {rc}); the capture is there without nsys columns")
        return code, folder
    try:
        res = import_report(folder, rep)
    except NsysRunError as e:
        echo(f"nsys report written ({rep}) but not imported: {e}")
        return code, folder
    if not quiet:
        echo(describe(res))
    return code, folder


def _child_exit_code(folder: Path, nsys_rc: int) -> int:
    try:
        meta = json.loads((folder / META).read_text())
        code = meta.get("exit_code")
        if type(code) is int:
            return code
    except (OSError, ValueError):
        pass
    return nsys_rc


# -- text ------------------------------------------------------------------------------------------------------
def describe(res: ImportResult) -> str:
    """A few lines: what matched, the clock, and the per-subgraph comparison."""
    s = res.join.summary
    c, sp, ep = s["clock"], s.get("start_spread", {}), s.get("end_spread", {})
    lines = [f"nsys import: {s['matched_nvtx']} of {s['rows']} rows joined to their NVTX range, "
             f"{s['matched_window']} by host interval, {s['unmatched']} not in the report; "
             f"{s['nsys_ranges_unmatched']} of {s['nsys_ranges']} trtprof ranges in the report unmatched",
             f"clock: host = nsys + {c['offset_ns'] / 1e9:.6f} s (drift {c['drift_ppm']:.2f} ppm); start "
             f"differences: MAD {sp.get('mad_ns', float('nan')) / 1e3:.2f} us, max {sp.get('max_ns', float('nan')) / 1e3:.2f} us; "
             f"pop after host end by {-ep.get('median_ns', float('nan')) / 1e3:.2f} us"
             + (f"; wall-clock check {c['utc_check_us']:+.1f} us" if c.get("utc_check_us") is not None else "")]
    lines += [f"note: {n}" for n in res.notes]
    cmp_ = res.comparison
    if len(cmp_):
        lines.append("CUDA-event GPU time vs nsys kernels (median per call, us):")
        hdr = f"  {'subgraph':<22}{'calls':>6}{'events':>10}{'span':>10}{'busy':>10}{'events-busy':>13}{'lead':>9}{'tail':>9}"
        lines.append(hdr)
        for r in cmp_.itertuples(index=False):
            lines.append(f"  {str(r.subgraph)[:21]:<22}{r.calls:>6}{r.event_us:>10.1f}{r.span_us:>10.1f}{r.busy_us:>10.1f}"
                         f"{r.diff_busy_pct:>12.1f}%{r.lead_us:>9.1f}{r.tail_us:>9.1f}")
    lines.append(f"written: {res.written[0]} and {res.written[1].name}")
    return "\n".join(lines)
