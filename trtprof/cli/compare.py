"""`trtprof compare`: load two captures, compare them, print B against A, write the HTML page.

The text needs no plotly, the page does: plotly is imported only for the page, so on a machine
without it the comparison still prints and only the page fails (MISSING_DEPENDENCY).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import click

from trtprof.cli import common, ranks

MODES = ("all", "on", "off")  # analysis.compare.MODES (a test keeps them equal; no pandas for --help)


def default_output(path_a, path_b) -> Path:
    """compare-<A>-vs-<B>.html in the current directory, from the capture folders' names (anything
    but letters, digits, '.', '_' and '-' becomes '_')."""
    def stem(p) -> str:
        name = Path(os.path.abspath(p)).name
        name = name if name != "timeline.parquet" else Path(os.path.abspath(p)).parent.name
        return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:60] or "capture"
    return Path(f"compare-{stem(path_a)}-vs-{stem(path_b)}.html")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("capture_a", metavar="CAPTURE_A", type=click.Path(readable=False))
@click.argument("capture_b", metavar="CAPTURE_B", type=click.Path(readable=False))
@click.option("-o", "--output", type=click.Path(), default=None,
              help="HTML file, or a folder for the default name (default: compare-<A>-vs-<B>.html in the "
                   "current directory).")
@click.option("--mode", type=click.Choice(MODES), default="all", show_default=True,
              help="Inferences to compare: with pre-allocated outputs on, off, or all of them.")
@click.option("--shape", default="common", show_default=True, metavar="common|all|SHAPES",
              help="Input shapes to compare: those run in both captures, all, or one, e.g. '(1,128);(1,128)'.")
@click.option("--no-html", is_flag=True, help="Print the comparison only; write no HTML page.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress or pointers: only the comparison itself and errors (the page is still written).")
def compare(capture_a, capture_b, output, mode, shape, no_html, quiet):
    """Compare capture B against capture A: is B faster or slower, end to end and per subgraph?

    Prints the end-to-end latency per inference (median of each capture, B - A in ms and %, 95 %
    bootstrap confidence interval), then per subgraph (matched by model and subgraph name) the median
    GPU and host time per call with their CIs, allocations per inference, and the subgraphs that
    appeared or disappeared. Negative differences mean B is faster. Inferences marked excluded (the
    cold start, the first after a pre-alloc mode flip, CUDA-graph warm-up and capture, raised) are
    left out. Writes the same as a self-contained HTML page.
    Folders of ranks are compared rank by rank (rank N of A against rank N of B), then merged (every
    rank's inferences together); the page shows the merged comparison.

    \b
    Example:
      trtprof compare reports/cases/small-cpp reports/cases/small-python
      trtprof compare reports/before reports/after --mode on -o before-after.html
      trtprof compare reports/ranks-before reports/ranks-after --no-html
    """
    if ranks.is_ranks(capture_a) or ranks.is_ranks(capture_b):  # folders of ranks: rank by rank, then merged
        out = None if no_html else common.output_path(output, default_output(capture_a, capture_b),
                                                      [capture_a, capture_b])
        text, (res, cap_a, cap_b) = ranks.compare(capture_a, capture_b, mode, shape)
        common.echo(text)
        if not no_html:
            _page(res, cap_a, cap_b, out, quiet)
        return
    cap_a, cap_b, sides = common.compare_open(capture_a, capture_b)
    out = None if no_html else common.output_path(output, default_output(capture_a, capture_b),
                                                  [cap_a.path, cap_b.path])  # a bad -o fails before the work
    from trtprof.render import compare_text

    res = common.compare_run(cap_a, cap_b, mode, shape, capture_a, capture_b, sides)
    common.echo(compare_text.render(res, capture_a, capture_b, cap_a.meta, cap_b.meta))  # the result: even with -q
    if no_html:
        return
    _page(res, cap_a, cap_b, out, quiet)


def _page(res, cap_a, cap_b, out, quiet) -> None:
    common.need_plotly("the HTML comparison (or use --no-html)")
    from trtprof.render import compare_html

    html = compare_html.render(res, cap_a, cap_b)
    path = common.write(out, lambda f: f.write(html))
    if not quiet:
        common.echo(f"comparison written: {path}, {common.open_hint(path)}", err=True)
