"""`trtprof compare`: load two captures, print B against A, write the HTML page. Errors are one line.

The text needs no plotly, the page does: plotly is imported only for the page, so on a machine
without it the comparison still prints and only the page fails (EXIT_MISSING_DEPENDENCY).
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import click

from trtprof import workflow
from trtprof.analysis import compare as analysis
from trtprof.model.store import CaptureError, load_capture
from trtprof.render import compare_text

_CONTROL = {c: f"\\x{c:02x}" for c in range(32)}


def _fail(msg: str, code: int):
    click.echo(f"trtprof: {msg.translate(_CONTROL)}", err=True)  # one line, whatever it quotes
    sys.exit(code)


def default_output(path_a, path_b) -> Path:
    """compare-<A>-vs-<B>.html in the current directory, from the capture folders' names (anything
    but letters, digits, '.', '_' and '-' becomes '_')."""
    def stem(p) -> str:
        name = Path(os.path.abspath(p)).name
        name = name if name != "timeline.parquet" else Path(os.path.abspath(p)).parent.name
        return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:60] or "capture"
    return Path(f"compare-{stem(path_a)}-vs-{stem(path_b)}.html")


def _load(label: str, path: str):
    try:
        cap = load_capture(path)
    except CaptureError as e:
        _fail(f"{label}: {e}", workflow.EXIT_BAD_CAPTURE)
    if cap.timeline.empty:
        _fail(f"{label}: {cap.path} holds no rows: nothing ran under Torch-TensorRT while it recorded, "
              "nothing to compare", workflow.EXIT_EMPTY_CAPTURE)
    return cap


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("capture_a", metavar="CAPTURE_A", type=click.Path())
@click.argument("capture_b", metavar="CAPTURE_B", type=click.Path())
@click.option("-o", "--output", type=click.Path(), default=None,
              help="HTML file, or a folder for the default name (default: compare-<A>-vs-<B>.html in the "
                   "current directory).")
@click.option("--mode", type=click.Choice(analysis.MODES), default="all", show_default=True,
              help="Inferences to compare: with pre-allocated outputs on, off, or all of them.")
@click.option("--shape", default=analysis.SHAPES_COMMON, show_default=True, metavar="common|all|SHAPES",
              help="Input shapes to compare: those run in both captures, all, or one, e.g. '(1,128);(1,128)'.")
@click.option("--no-html", is_flag=True, help="Print the comparison only; write no HTML page.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (the HTML page is still written).")
def compare(capture_a, capture_b, output, mode, shape, no_html, quiet):
    """Compare capture B against capture A: is B faster or slower, end to end and per subgraph?

    Prints the end-to-end latency per inference (median of each capture, B - A in ms and %, 95 %
    bootstrap confidence interval), then per subgraph (matched by model and subgraph name) the median
    GPU and host time per call with their CIs, allocations per inference, and the subgraphs that
    appeared or disappeared. Negative differences mean B is faster. Inferences marked excluded (the
    first after a pre-alloc mode flip) are left out. Writes the same as a self-contained HTML page.

    \b
    Example:
      trtprof compare reports/cases/small-cpp reports/cases/small-python
      trtprof compare reports/before reports/after --mode on -o before-after.html
    """
    cap_a, cap_b = _load("A", capture_a), _load("B", capture_b)
    try:
        res = analysis.compare_captures(cap_a, cap_b, mode=mode, shape=shape)
    except Exception as e:  # a capture the analysis cannot make sense of: one line, no traceback
        if os.environ.get("TRTPROF_DEBUG"):
            raise
        _fail(f"cannot compare {capture_a} and {capture_b}: {type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else ''} (set TRTPROF_DEBUG=1 for the traceback)",
              workflow.EXIT_BAD_CAPTURE)
    if not quiet:
        click.echo(compare_text.render(res, capture_a, capture_b, cap_a.meta, cap_b.meta))
    if no_html:
        return
    try:
        from trtprof.render import compare_html  # plotly: only for the page
    except ImportError as e:
        _fail(f"cannot write the HTML comparison here: {e} (pip install plotly, or use --no-html)",
              workflow.EXIT_MISSING_DEPENDENCY)
    out = Path(output) if output else default_output(capture_a, capture_b)
    if out.is_dir():
        out = out / default_output(capture_a, capture_b)
    try:
        path = compare_html.write(res, cap_a, cap_b, out)
    except OSError as e:
        _fail(f"cannot write {out}: {e.strerror or e}", workflow.EXIT_BAD_OUTPUT)
    if not quiet:
        click.echo(f"comparison written: {path}, open it with xdg-open {shlex.quote(str(path))}", err=True)
