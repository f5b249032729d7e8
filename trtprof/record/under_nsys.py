"""`trtprof capture --nsys`: the same capture, run again as a child of `nsys profile`.

Why re-execute under nsys instead of attaching: nsys must start the process to trace CUDA from its
first call, so this runs `nsys profile -t cuda,nvtx ... -o CAPTURE/nsys python -m trtprof capture -o
CAPTURE [same options] TARGET ARGS`; the child writes the capture as usual and nsys writes
CAPTURE/nsys.nsys-rep next to it. The import of that report is the caller's next step (the CLI runs
`trtprof.nsys.importer`), so running a capture never depends on the analysis of nsys reports.
The child's exit code is the one returned: taken from the capture's meta.json (nsys's own exit
status is not guaranteed to be the application's), else from nsys.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from trtprof.capture.options import CaptureOptions
from trtprof.errors import CaptureError, ExitCode, NsysError, UsageError
from trtprof.record.script import check_target
from trtprof.record.session import default_folder
from trtprof.timeline.store import META, TIMELINE

REPORT_STEM = "nsys"  # nsys writes CAPTURE/nsys.nsys-rep
TRACE = ("-t", "cuda,nvtx")
_OWN_OUTPUT = ("-o", "--output")
_TRACE_OPTS = ("-t", "--trace")


def find_nsys() -> str | None:
    return shutil.which("nsys")


def profile_command(nsys: str, folder: Path, nsys_args: str, child: list[str]) -> list[str]:
    """`nsys profile -t cuda,nvtx [EXTRA] -o FOLDER/nsys python -m trtprof capture CHILD...`.

    EXTRA (--nsys-args) may replace the trace list (-t/--trace) but not the output: the report must
    land in the capture folder for the import to find it."""
    try:
        extra = shlex.split(nsys_args or "")
    except ValueError as e:
        raise UsageError(f"--nsys-args: {e}") from None
    if any(a in _OWN_OUTPUT or a.startswith(("--output=", "-o=")) for a in extra):
        raise UsageError("--nsys-args must not set the output (-o): the report goes into the capture folder")
    own_trace = any(a in _TRACE_OPTS or a.startswith("--trace=") for a in extra)
    return [nsys, "profile", *(() if own_trace else TRACE), *extra, "-o", str(folder / REPORT_STEM),
            sys.executable, "-m", "trtprof", "capture", *child]


def child_options(folder: Path, options: CaptureOptions, *, module: bool, quiet: bool) -> list[str]:
    """The options of the capture run under nsys: the parent's, with the folder fixed; no report
    there (the parent writes it once the nsys columns exist)."""
    return ["-o", str(folder), *options.to_argv(), "--no-report"] + (["-q"] if quiet else []) + \
        (["-m"] if module else [])


def run(target: str, args: list[str], options: CaptureOptions, *, module: bool, output: str | None,
        quiet: bool, nsys_args: str, echo=print) -> tuple[int, Path, Path | None]:
    """Run the capture under nsys: (exit code to leave with, capture folder, the .nsys-rep or None)."""
    nsys = find_nsys()
    if nsys is None:
        raise NsysError("--nsys: nsys (Nsight Systems) is not on PATH")
    stem = check_target(target, module)
    folder = Path(output) if output else default_folder(stem)
    if folder.is_dir() and any((folder / n).exists() for n in (META, TIMELINE, REPORT_STEM + ".nsys-rep")):
        raise CaptureError(f"{folder} already holds a capture; choose another folder with -o", ExitCode.BAD_OUTPUT)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CaptureError(f"cannot write the capture folder {folder}: {e.strerror or e}", ExitCode.BAD_OUTPUT) from None
    cmd = profile_command(nsys, folder, nsys_args,
                          child_options(folder, options, module=module, quiet=quiet) + [target, *args])
    if not quiet:
        echo(f"running under Nsight Systems: {shlex.join(cmd)}")
    try:
        proc = subprocess.Popen(cmd)
    except OSError as e:
        raise NsysError(f"cannot run nsys: {e.strerror or e}") from None
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
        return code, folder, None
    return code, folder, rep


def _child_exit_code(folder: Path, nsys_rc: int) -> int:
    try:
        meta = json.loads((folder / META).read_text())
        code = meta.get("exit_code")
        if type(code) is int:
            return code
    except (OSError, ValueError):
        pass
    return nsys_rc
