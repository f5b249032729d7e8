"""`trtprof capture`: parse options, run the script under a capture, print the summary and where it went."""
from __future__ import annotations

import os
import sys

import click

from trtprof.capture.options import LEVELS, CaptureOptions
from trtprof.capture.prealloc import Policy
from trtprof.cli import common, ranks


def _check_prealloc(ctx, param, value):
    try:
        Policy.parse(value, "--" + param.name)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False,
                                 "help_option_names": ["-h", "--help"]})
@click.option("-m", "module", is_flag=True, help="Run TARGET as a module, like python -m.")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Capture folder (default: reports/<script>-<timestamp>/); made if missing.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress, summary or pointers (the capture and its report are still written).")
@click.option("--prealloc", default="as-is", show_default=True, callback=_check_prealloc,
              help="Pre-allocated outputs on every engine: on, off, as-is (the script decides), or "
                   "alternate[:K] (flip every K inferences, default 50; first call after a flip excluded).")
@click.option("--cudagraphs", default="as-is", show_default=True, callback=_check_prealloc,
              help="Per-engine CUDA graphs (torch_tensorrt.runtime.set_cudagraphs_mode) on every engine: on, "
                   "off, as-is, or alternate[:K] (flip every K inferences, default 50; the first 2 after a "
                   "flip excluded); summary and report give the measured difference.")
@click.option("--cpp-allocs/--no-cpp-allocs", default=True, show_default=True,
              help="Record the C++ runtime's allocations from the CUDA caching allocator's log.")
@click.option("--level", type=click.Choice(LEVELS), default="full", show_default=True,
              help="What to record. full: CUDA events on every range, allocation shapes and bytes, the C++ "
                   "allocator log. minimal: host times of every range, CUDA events only around each "
                   "inference; the least overhead (docs/recording.md).")
@click.option("--sample", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Record 1 inference in N, plus every inference whose input shapes change and the one "
                   "after it; the others run with (almost) no overhead (docs/recording.md).")
@click.option("--kernels/--no-kernels", default=True, show_default=True,
              help="Record every kernel and memcpy the GPU ran (CUPTI, needs cupti-python), so each "
                   "row gets its kernels' busy time and span; off by itself under nsys or torch.profiler.")
@click.option("--brackets/--no-brackets", default=True, show_default=True,
              help="CUDA events around every engine and fallback call (full level). --no-brackets: only around "
                   "each inference; the calls' GPU side comes from the kernels they launched (needs --kernels "
                   "with CUPTI launch times, else the brackets stay), one event record less per call.")
@click.option("--no-report", is_flag=True, help="Do not write report.html (the HTML report) into the capture folder.")
@click.option("--nsys", is_flag=True, help="Run the capture under Nsight Systems (nsys profile -t cuda,nvtx); "
              "the .nsys-rep goes into the capture folder and is imported (see trtprof nsys-import).")
@click.option("--nsys-args", default="", metavar="'ARGS'",
              help="Extra options for nsys profile, quoted as one argument (implies --nsys).")
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def capture(module, output, quiet, prealloc, cudagraphs, cpp_allocs, level, sample, kernels, brackets, no_report, nsys,
            nsys_args, target, args):
    """Run a Python script (or -m module) and record every Torch-TensorRT call it makes.

    TARGET (a script, a folder with __main__.py, or with -m a module) runs as __main__ with ARGS,
    exactly as `python TARGET ARGS`; trtprof exits with its exit code (meta.json's exit_code_from
    says whose it was). The capture folder holds timeline.parquet (one row per range), meta.json and,
    if the script raised, traceback.txt.

    As the program a launcher starts (torchrun, python -m torch_tensorrt.distributed.run, mpirun,
    srun) with more than one rank, each rank writes its own capture DIR/rank<N> into the folder
    given with -o, and the last rank to finish writes the merged report DIR/report.html.

    \b
    Example:
      trtprof capture examples/bert_prealloc.py --python-runtime
      trtprof capture -o reports/infer -m examples.infer --batch 8
      trtprof capture --prealloc alternate:100 examples/bert_prealloc.py
      trtprof capture --cudagraphs alternate:50 examples/bert_prealloc.py
      trtprof capture --level minimal --sample 10 examples/bert_prealloc.py
      trtprof capture --no-brackets examples/bert_prealloc.py
      trtprof capture --nsys examples/bert_prealloc.py
      torchrun --nproc-per-node 2 -m trtprof capture -o reports/ranks examples/infer.py
    """
    options = CaptureOptions(prealloc=prealloc, cudagraphs=cudagraphs, cpp_allocs=cpp_allocs, level=level,
                             sample=sample, kernels=kernels and not (nsys or nsys_args),  # nsys holds CUPTI
                             brackets=brackets)
    output = common.output_folder(output)
    rank, output, root = _place(target, module, output)
    if nsys or nsys_args:
        if root is not None:  # the child capture under nsys writes this rank's folder as it is
            from trtprof.record.ranks import CLAIMED_ENV

            os.environ[CLAIMED_ENV] = str(output)
        code = _under_nsys(target, list(args), options, module, output, quiet, nsys_args, no_report)
        if root is not None:
            ranks.after_capture(root, rank, quiet, no_report)
        sys.exit(code)
    from trtprof.record import script

    command = common.typed_command()
    place = f" as rank {rank['rank']} of {rank['world_size']}" if root is not None else ""
    common.say(f"capturing {'-m ' if module else ''}{target} {' '.join(args)}".rstrip() + place, quiet)
    res = script.capture_script(target, list(args), module=module, out=output, options=options, command=command,
                                rank=rank)
    if res.capture is None:  # a forked child of the script: it records and says nothing
        sys.exit(res.exit_code)
    if res.notes:
        common.say("could not record everything: " + "; ".join(res.notes), quiet)
    if res.error:
        where = f"; full traceback in {res.traceback}" if res.traceback else ""
        common.say(f"the script stopped: {res.error}{where}")
    cap = res.capture
    if not quiet and root is None:  # a rank's table comes with every other rank's, from the last one
        common.echo(summary(cap.timeline), err=True)
        if options.cg_policy.forcing or "cudagraph" in cap.timeline and cap.timeline["cudagraph"].notna().any():
            from trtprof.analysis import cudagraphs, latency
            from trtprof.render import summary_text

            lines = summary_text.cudagraph_lines(cudagraphs.compare(cap.timeline, latency.inference_latency(cap.timeline)))
            if lines:
                common.echo(lines, err=True)
    if not quiet:
        status = "" if cap.complete else " (incomplete)"
        rows = f"{len(cap.timeline)} rows" + (", so no report" if cap.timeline.empty and not no_report else "")
        common.echo(f"capture written{status}: {common.clean(cap.path)}/ ({rows}); "
                   f"load it with trtprof.load({str(cap.path)!r})", err=True)
    if not no_report:
        _report(cap, quiet or root is not None)
    if root is not None:
        ranks.after_capture(root, rank, quiet, no_report)
    if 2 <= res.exit_code <= 8 and not res.error:
        common.say(f"the script exited with {res.exit_code}, its own code (passed through; trtprof's "
                   "own errors write no capture)", quiet)
    sys.exit(res.exit_code)


def summary(timeline) -> str:
    """The per-subgraph table printed after a capture: the report's own table (`analysis.subgraphs.table`),
    so both show the same counts and medians."""
    from trtprof.analysis import subgraphs
    from trtprof.render import summary_text

    return summary_text.render(subgraphs.table(timeline))


def _place(target, module, output):
    """(rank, folder, DIR): under a launcher that started several ranks, this rank's new folder
    DIR/rank<N> (claimed, or refused in one line, after the target is checked); otherwise the
    folder as given and DIR None. `rank` is the launcher's word on this process, or None."""
    from trtprof.capture.ranks import from_environment
    from trtprof.record import ranks as record_ranks

    rank = from_environment()
    if not record_ranks.is_distributed(rank) or record_ranks.claimed_folder(output):
        return rank, output, None
    from trtprof.record import script

    script.check_target(target, module)
    folder = record_ranks.claim(output, rank)
    return rank, folder, folder.parent


def _under_nsys(target, args, options, module, output, quiet, nsys_args, no_report) -> int:
    """The capture as a child of nsys, then the import of its report, then the report."""
    from trtprof.nsys import importer
    from trtprof.record import under_nsys
    from trtprof.render import nsys_text
    from trtprof.timeline.store import load_capture

    code, folder, rep = under_nsys.run(target, args, options, module=module, output=output, quiet=quiet,
                                       nsys_args=nsys_args, echo=common.say)
    if rep is not None:
        try:
            res = importer.import_report(folder, rep)
        except common.TrtprofError as e:
            common.say(f"nsys report written ({rep}) but not imported: {e}")
        else:
            if not quiet:
                common.echo(nsys_text.render(res), err=True)
    if not no_report:
        try:
            cap = load_capture(folder)
        except common.TrtprofError:
            return code  # the child said why
        _report(cap, quiet)
    return code


def _report(cap, quiet: bool) -> None:
    """Write report.html next to the timeline; a failure is a note, never the script's exit code."""
    if cap.timeline.empty:
        return  # "capture written: ... (0 rows, so no report)" said it
    try:
        path = common.write_report(cap)
    except common.TrtprofError as e:
        common.say(f"report not written: {e}; try trtprof report {cap.path}", quiet)
        return
    except Exception as e:  # noqa: BLE001 - the capture is written; the report is a bonus
        common.say(f"could not write the report: {type(e).__name__}: {e}; try trtprof report {cap.path}")
        return
    if not quiet:
        common.echo(f"report written: {path}, {common.open_hint(path)}", err=True)
