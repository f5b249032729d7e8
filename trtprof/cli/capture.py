"""`trtprof capture`: parse options, call the workflow, print the summary and where it went."""
from __future__ import annotations

import sys

import click

from trtprof import workflow
from trtprof.analysis.summary import by_subgraph
from trtprof.capture.prealloc import Policy
from trtprof.render.text import summary_table


def _check_prealloc(ctx, param, value):
    try:
        Policy.parse(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


def _err(msg: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(f"trtprof: {msg}", err=True)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-m", "module", is_flag=True, help="Run TARGET as a module, like python -m.")
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None,
              help="Capture folder (default: reports/<script>-<timestamp>/).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--prealloc", default="as-is", show_default=True, callback=_check_prealloc,
              help="Pre-allocated outputs on every engine: on, off, as-is (the script decides), or "
                   "alternate[:K] (flip every K inferences, default 50; first call after a flip excluded).")
@click.option("--cpp-allocs/--no-cpp-allocs", default=True, show_default=True,
              help="Record the C++ runtime's allocations from the CUDA caching allocator's log.")
@click.option("--level", type=click.Choice(["full", "minimal"]), default="full", show_default=True,
              help="What to record. full: CUDA events on every range, allocation shapes and bytes, the C++ "
                   "allocator log. minimal: host times of every range, CUDA events only around each "
                   "inference; the least overhead (README: Overhead).")
@click.option("--sample", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Record 1 inference in N, plus every inference whose input shapes change and the one "
                   "after it; the others run with (almost) no overhead (README: Overhead).")
@click.option("--no-report", is_flag=True, help="Do not write report.html (the HTML report) into the capture folder.")
@click.option("--nsys", is_flag=True, help="Run the capture under Nsight Systems (nsys profile -t cuda,nvtx); "
              "the .nsys-rep goes into the capture folder and is imported (see trtprof nsys-import).")
@click.option("--nsys-args", default="", metavar="'ARGS'",
              help="Extra options for nsys profile, quoted as one argument (implies --nsys).")
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def capture(module, output, quiet, prealloc, cpp_allocs, level, sample, no_report, nsys, nsys_args, target,
            args):
    """Run a Python script (or -m module) and record every Torch-TensorRT call it makes.

    TARGET runs as __main__ with ARGS, exactly as `python TARGET ARGS`; trtprof exits with its exit
    code. The capture folder holds timeline.parquet (one row per range) and meta.json.

    \b
    Example:
      trtprof capture scripts/bert_prealloc.py --python-runtime
      trtprof capture -o reports/bert -m mypkg.infer --batch 8
      trtprof capture --prealloc alternate:100 scripts/bert_prealloc.py
      trtprof capture --level minimal scripts/bert_prealloc.py
      trtprof capture --sample 10 scripts/bert_prealloc.py
      trtprof capture --nsys scripts/bert_prealloc.py
    """
    if nsys or nsys_args:  # the same capture under Nsight Systems, then its import: trtprof/nsys_run.py
        from trtprof.nsys_run import cli_main
        sys.exit(cli_main(target, list(args), module=module, output=output, quiet=quiet, prealloc=prealloc,
                          cpp_allocs=cpp_allocs, level=level, sample=sample, nsys_args=nsys_args, echo=_err,
                          report=None if no_report else _report))
    options = {"module": module, "output": output, "prealloc": prealloc, "cpp_allocs": cpp_allocs, "level": level,
               "sample": sample}
    command = [sys.executable, "-m", "trtprof", "capture"] + sys.argv[2:] if sys.argv else None
    _err(f"capturing {'-m ' if module else ''}{target} {' '.join(args)}".rstrip(), quiet)
    try:
        res = workflow.capture_script(target, list(args), module=module, out=output, options=options,
                                      command=command,
                                      session_kwargs={"prealloc": prealloc, "cpp_allocs": cpp_allocs,
                                                      "level": level, "sample": sample})
    except workflow.UsageError as e:
        _err(str(e))
        sys.exit(e.code)
    if res.notes:
        _err("could not record everything: " + "; ".join(res.notes), quiet)
    if res.error:
        _err(f"the script stopped: {res.error}")
    cap = res.capture
    if not quiet:
        click.echo(summary_table(by_subgraph(cap.timeline)), err=True)
        status = "" if cap.complete else " (incomplete)"
        click.echo(f"capture written{status}: {cap.path}/ ({len(cap.timeline)} rows); "
                   f"load it with trtprof.load({str(cap.path)!r})", err=True)
    if not no_report:
        _report(cap, quiet)
    sys.exit(res.exit_code)


def _report(cap, quiet: bool) -> None:
    """Write report.html next to the timeline; a failure is a note, never the script's exit code."""
    import shlex

    try:
        from trtprof.render.html import EmptyCaptureError, write_report  # plotly: only once the script ran
    except ImportError as e:
        _err(f"report not written: {e} (pip install plotly, then trtprof report {cap.path})", quiet)
        return
    try:
        path = write_report(cap)
    except EmptyCaptureError:
        return  # the summary above already says nothing ran
    except Exception as e:  # noqa: BLE001 - the capture is written; the report is a bonus
        _err(f"could not write the report: {type(e).__name__}: {e}; try trtprof report {cap.path}")
        return
    if not quiet:
        click.echo(f"report written: {path}, open it with xdg-open {shlex.quote(str(path))}", err=True)
