"""`trtprof report`: load a capture, write its HTML report, say where it is. Errors are one line."""
from __future__ import annotations

import os
import shlex
import sys

import click

from trtprof import workflow
from trtprof.model.store import CaptureError, load_capture


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)}


def _fail(msg: str, code: int):
    click.echo(f"trtprof: {msg.translate(_CONTROL)}", err=True)  # one line, whatever it quotes
    sys.exit(code)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("capture_path", metavar="CAPTURE", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Report file (default: CAPTURE/report.html).")
@click.option("--open", "open_", is_flag=True, help="Open the report in the default browser.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def report(capture_path, output, open_, quiet):
    """Write the HTML report of a capture folder: one self-contained file that opens offline.

    It shows latency with pre-allocated outputs on and off (with a 95 % confidence interval), a
    timeline of host and GPU work, how much output allocation overlapped GPU execution, input shape
    changes, a per-subgraph table and recommendations. Nothing from the capture is executed.

    \b
    Example:
      trtprof report reports/bert-20250101-120000
      trtprof report reports/bert-20250101-120000 -o bert.html --open
    """
    try:
        from trtprof.render.html import EmptyCaptureError, write_report  # plotly: only for reports
    except ImportError as e:
        _fail(f"cannot write HTML reports here: {e} (pip install plotly)", workflow.EXIT_MISSING_DEPENDENCY)
    try:
        cap = load_capture(capture_path)
    except CaptureError as e:
        _fail(str(e), workflow.EXIT_BAD_CAPTURE)
    try:
        path = write_report(cap, output)
    except EmptyCaptureError as e:
        _fail(f"{capture_path}: {e}", workflow.EXIT_EMPTY_CAPTURE)
    except OSError as e:
        _fail(f"cannot write the report {output or 'into ' + str(capture_path)}: {e.strerror or e}",
              workflow.EXIT_BAD_OUTPUT)
    except Exception as e:  # a capture the analysis cannot make sense of: one line, no traceback
        if os.environ.get("TRTPROF_DEBUG"):
            raise
        _fail(f"cannot analyse {capture_path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
              "(set TRTPROF_DEBUG=1 for the traceback)", workflow.EXIT_BAD_CAPTURE)
    if not quiet:
        status = "" if cap.complete else " (from an incomplete capture)"
        click.echo(f"report written{status}: {path}, open it with xdg-open {shlex.quote(str(path))}", err=True)
    if open_:
        click.launch(str(path))
