"""`trtprof nsys-import`: join an Nsight Systems report to a capture; only parses, calls and prints."""
from __future__ import annotations

import os
import sys

import click

from trtprof import nsys_run, workflow


def _fail(msg: str, code: int):
    click.echo(f"trtprof: {msg}", err=True)  # messages come one-line from nsys_run (control chars escaped)
    sys.exit(code)


@click.command("nsys-import", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("capture_path", metavar="CAPTURE", type=click.Path())
@click.argument("report", required=False, type=click.Path())
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def nsys_import(capture_path, report, quiet):
    """Join an Nsight Systems report to CAPTURE: per row, the kernels it launched.

    REPORT is an .nsys-rep (exported with `nsys export --type sqlite`, which needs nsys on PATH) or
    an .sqlite export; without it, the one in the capture folder is used. Each trtprof row is paired
    with its NVTX range (domain trtprof), and the kernels, memcpys and memsets launched inside the
    range are added up. The result goes to CAPTURE/nsys.parquet (columns keyed by seq) and
    CAPTURE/nsys.json (clock offset, matching); `trtprof report` then shows CUDA-event GPU times
    beside nsys kernel times.

    \b
    Example:
      nsys profile -t cuda,nvtx -o run python -m trtprof capture -o reports/bert job.py
      trtprof nsys-import reports/bert run.nsys-rep
      trtprof nsys-import reports/bert            # after trtprof capture --nsys
    """
    try:
        res = nsys_run.import_report(capture_path, report)
    except nsys_run.NsysRunError as e:
        _fail(str(e), e.code)
    except Exception as e:  # anything unforeseen in a foreign report: one line, no traceback
        if os.environ.get("TRTPROF_DEBUG"):
            raise
        first = (str(e).splitlines() or [""])[0][:200]
        _fail(f"cannot import {report or 'the report in ' + str(capture_path)}: {type(e).__name__}: {first} "
              "(set TRTPROF_DEBUG=1 for the traceback)", workflow.EXIT_NO_NSYS)
    if not quiet:
        click.echo(nsys_run.describe(res), err=True)
