"""`trtprof export`: a capture's timeline as a Perfetto / chrome://tracing trace, or as CSV.

Only parses, loads, picks the output path and prints; the conversions live in `trtprof.render`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from trtprof import workflow
from trtprof.model.store import CaptureError, load_capture
from trtprof.render.tabular import write_csv
from trtprof.render.trace import OPEN_HINT, write_trace

# format -> (default file name in the capture folder, writer(df, path, meta))
FORMATS = {
    "perfetto": ("trace.json", write_trace),
    "csv": ("timeline.csv", lambda df, path, meta: write_csv(df, path)),
}


def _fail(msg: str, code: int):
    click.echo(f"trtprof: {msg}", err=True)
    sys.exit(code)


@click.command()
@click.argument("capture_path", metavar="CAPTURE")
@click.option("-f", "--format", "fmt", type=click.Choice(list(FORMATS)), default="perfetto", show_default=True,
              help="perfetto: Chrome trace-event JSON (Perfetto UI, chrome://tracing); csv: the timeline table.")
@click.option("-o", "--output", type=click.Path(dir_okay=True), default=None,
              help="File to write (default: trace.json / timeline.csv in the capture folder).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def export(capture_path, fmt, output, quiet):
    """Export CAPTURE (a capture folder) for a trace viewer or a spreadsheet.

    The perfetto format shows host threads and GPU streams as lanes, arrows from each enqueue to its
    GPU execution and from each pre-allocation to the call that uses it, and shape changes as marks.

    \b
    Example:
      trtprof export reports/bert_prealloc-20250101-120000
      trtprof export reports/bert --format csv -o bert.csv
    """
    try:
        cap = load_capture(capture_path)
    except CaptureError as e:
        _fail(str(e), workflow.EXIT_BAD_CAPTURE)
    if cap.timeline.empty:
        _fail(f"{cap.path} holds no rows: nothing to export", workflow.EXIT_EMPTY_CAPTURE)
    name, writer = FORMATS[fmt]
    out = Path(output) if output else cap.path / name
    if out.is_dir():
        out = out / name
    try:
        writer(cap.timeline, out, cap.meta)
    except OSError as e:
        _fail(f"cannot write {out}: {e.strerror or e}", workflow.EXIT_BAD_OUTPUT)
    if quiet:
        return
    if not cap.complete:
        click.echo(f"trtprof: note: the capture is {cap.meta.get('status', 'incomplete')}: "
                   f"{cap.meta.get('incomplete_reason') or cap.meta.get('reason') or 'it may lack its last rows'}",
                   err=True)
    if fmt == "perfetto":
        click.echo(f"trace written: {out} — open it at {OPEN_HINT}", err=True)
    else:
        click.echo(f"timeline written: {out} ({len(cap.timeline)} rows)", err=True)
