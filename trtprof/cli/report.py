"""`trtprof report`: load a capture, analyse it, write its HTML report, say where it is."""
from __future__ import annotations

import click

from trtprof.cli import common, ranks


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("capture_path", metavar="CAPTURE", type=click.Path(readable=False))
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Report file, or a folder for report.html (default: CAPTURE/report.html).")
@click.option("--open", "open_", is_flag=True, help="Open the report in the default browser.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or pointers, only errors (the result is still written).")
def report(capture_path, output, open_, quiet):
    """Write the HTML report of a capture folder: one self-contained file that opens offline.

    It shows latency with pre-allocated outputs on and off (with a 95 % confidence interval), a
    timeline of host and GPU work, how much output allocation overlapped GPU execution, input shape
    changes, a per-subgraph table and recommendations. Nothing from the capture is executed. On a
    folder of ranks (`torchrun ... trtprof capture -o DIR`): one report of every rank, with the
    straggler at each inference and one timeline.

    \b
    Example:
      trtprof report reports/cases/small-cpp
      trtprof report reports/cases/small-cpp -o small.html --open
      trtprof report reports/ranks      # a folder of ranks: DIR/report.html
    """
    common.need_plotly("HTML reports")
    if ranks.is_ranks(capture_path):  # DIR/rank0, DIR/rank1, ...: one merged report
        path = ranks.report(capture_path, output, quiet)
        if open_:
            common.open_in_browser(path, quiet)
        return
    path, complete = common.report_capture(capture_path, output)
    if not quiet:
        status = "" if complete else " (from an incomplete capture)"
        common.echo(f"report written{status}: {path}, {common.open_hint(path)}", err=True)
    if open_:
        common.open_in_browser(path, quiet)
