"""`trtprof nsys-import`: join an Nsight Systems report to a capture; only parses, calls and prints."""
from __future__ import annotations

import click

from trtprof.cli import common
from trtprof.errors import ExitCode


@click.command("nsys-import", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("capture_path", metavar="CAPTURE", type=click.Path(readable=False))
@click.argument("report", required=False, type=click.Path(readable=False))
@click.option("-q", "--quiet", is_flag=True, help="No progress or pointers, only errors (the result is still written).")
def nsys_import(capture_path, report, quiet):
    """Join an Nsight Systems report to CAPTURE: per row, the kernels it launched.

    REPORT is an .nsys-rep (exported with `nsys export --type sqlite`, which needs nsys on PATH) or
    an .sqlite export; without it, the one in the capture folder is used. Each trtprof row is paired
    with its NVTX range (domain trtprof), and the kernels, memcpys and memsets launched inside the
    range are added up. The result goes to CAPTURE/nsys.parquet (columns keyed by seq),
    CAPTURE/nsys_kernels.parquet (each kernel and copy of an engine or fallback call) and
    CAPTURE/nsys.json (clock offset, matching); `trtprof report` then shows CUDA-event GPU times
    beside nsys kernel times, and draws the kernels on its timeline.

    \b
    Example:
      nsys profile -t cuda,nvtx -o run trtprof capture -o reports/run job.py
      trtprof nsys-import reports/run run.nsys-rep
      trtprof nsys-import reports/run             # after trtprof capture --nsys
    """
    from trtprof.nsys import importer
    from trtprof.render import nsys_text

    try:
        res = importer.import_report(capture_path, report)
    except common.TrtprofError:
        raise
    except Exception as e:  # noqa: BLE001 - anything unforeseen in a foreign report: one line
        raise common.unexpected(f"cannot import {report or 'the report in ' + str(capture_path)}", e,
                                ExitCode.NO_NSYS) from None
    if not quiet:
        common.echo(nsys_text.render(res), err=True)
