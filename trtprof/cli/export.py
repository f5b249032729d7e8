"""`trtprof export`: a capture's timeline as a Perfetto / chrome://tracing trace, or as CSV."""
from __future__ import annotations

import click

from trtprof.cli import common, ranks

OPEN_HINT = "ui.perfetto.dev (Open trace file) or chrome://tracing"
FORMATS = {"perfetto": "trace.json", "csv": "timeline.csv"}  # format -> default file in the capture folder


def _writer(fmt: str, cap, dropped: dict, rows: list):
    """The function writing the file, streamed batch by batch from the capture's files; `dropped`
    receives the flows the trace left out (perfetto), `rows` the rows written (csv)."""
    if fmt == "perfetto":
        from trtprof.render import perfetto_stream as ps

        def write(f):
            fact = ps.facts(cap.batches(ps.FACT_COLUMNS))
            dropped.update(ps.write(f, fact, cap.in_time_order(ps.COLUMNS), cap.meta))
        return write
    from trtprof.render.tabular import write_csv_batches
    return lambda f: rows.append(write_csv_batches(cap.frames(), f))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("capture_path", metavar="CAPTURE")
@click.option("-f", "--format", "fmt", type=click.Choice(list(FORMATS)), default="perfetto", show_default=True,
              help="perfetto: Chrome trace-event JSON (Perfetto UI, chrome://tracing); csv: the timeline table.")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="File to write, or a folder for the default name (default: trace.json / timeline.csv in "
                   "the capture folder).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or pointers, only errors (the result is still written).")
def export(capture_path, fmt, output, quiet):
    """Export CAPTURE (a capture folder) for a trace viewer or a spreadsheet.

    The perfetto format shows host threads and GPU streams as lanes, arrows from each enqueue to its
    GPU execution and from each pre-allocation to the call that uses it, and shape changes as marks.
    A folder of ranks gives one trace with a process per rank (pid = rank) on one clock, or one CSV
    with a rank column.

    \b
    Example:
      trtprof export reports/cases/small-cpp
      trtprof export reports/cases/small-cpp --format csv -o small.csv
      trtprof export reports/ranks -o ranks-trace.json
    """
    if ranks.is_ranks(capture_path):  # a folder of ranks: one trace, a process per rank
        ranks.export(capture_path, fmt, output, quiet, FORMATS)
        return
    cap = common.open_lazy(capture_path)  # read batch by batch: memory does not grow with the capture
    out = common.output_path(output, cap.path / FORMATS[fmt], [cap.path])
    dropped: dict[str, int] = {}
    rows: list[int] = []
    common.write(out, _writer(fmt, cap, dropped, rows))
    if quiet:
        return
    from trtprof.timeline.store import repair_notes

    for note in repair_notes(cap.meta):
        common.say(f"note: {note}")
    for name, n in dropped.items():
        common.say(f"note: {n:,} '{name}' arrow{'s' if n != 1 else ''} left out: {'they' if n != 1 else 'it'} "
                   "would finish before starting")
    if cap.meta.get("status") != "complete":
        common.say(f"note: the capture is {cap.meta.get('status', 'incomplete')}: "
                   f"{cap.meta.get('incomplete_reason') or cap.meta.get('reason') or 'it may lack its last rows'}")
    if fmt == "perfetto":
        common.echo(f"trace written: {out} — open it at {OPEN_HINT}", err=True)
    else:
        common.echo(f"timeline written: {out} ({rows[0]:,} rows)", err=True)
