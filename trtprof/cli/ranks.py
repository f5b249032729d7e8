"""The commands on a folder of ranks (DIR/rank0, DIR/rank1, ... as `torchrun ... trtprof capture -o DIR`
writes it): wiring only, like `common` (load, analyse, render, write); the logic is in
`timeline.ranks`, `analysis.ranks` and the `render.ranks_*` modules. Heavy imports stay inside the
functions, so `--help` never loads pandas.
"""
from __future__ import annotations

from pathlib import Path

from trtprof.cli import common
from trtprof.timeline.rank_layout import is_ranks  # noqa: F401 - the commands ask it first


def load(path, label: str = ""):
    """The ranks of `path` (timeline.ranks.Ranks); one of them at least must hold rows."""
    from trtprof.timeline.ranks import load_ranks

    prefix = f"{label}: " if label else ""
    try:
        ranks = load_ranks(path)
    except common.TrtprofError as e:
        raise type(e)(prefix + str(e), e.exit_code) from None
    if all(c.timeline.empty for c in ranks.captures.values()):
        raise common.EmptyCaptureError(f"{prefix}no rank in {ranks.root} holds rows: nothing ran under "
                                       "Torch-TensorRT while it recorded")
    return ranks


def _opened(path):
    """(the ranks of `path` opened without reading their rows, the ranks to analyse chunk by chunk)
    when any rank is past `common.STREAM_ROWS` (`common.streamable`: the single report's rule);
    None otherwise, or for a folder the lazy opening refuses (loaded, and refused, as before)."""
    from trtprof.timeline.ranks import open_ranks

    try:
        ranks = open_ranks(path)
    except common.TrtprofError:
        return None
    stream = {r for r, c in ranks.captures.items() if common.streamable(c.timeline)}
    return (ranks, stream) if stream else None


def load_and_analyse(path):
    """(ranks, results): loaded whole and analysed (`analysis.ranks`) when every rank is short; else
    opened lazily and analysed a rank at a time, the long ones chunk by chunk
    (`analysis.ranks_streamed`), in bounded memory, with the same results."""
    lazy = _opened(path)
    if lazy is None:
        ranks = load(path)
        return ranks, _analyse(ranks)
    ranks, stream = lazy
    return ranks, _analyse(ranks, stream)


def _analyse(ranks, stream=None):
    from trtprof.analysis import ranks_streamed
    from trtprof.analysis.ranks import analyse_ranks

    try:
        return analyse_ranks(ranks) if stream is None else ranks_streamed.analyse(ranks, stream)
    except common.TrtprofError:
        raise
    except Exception as e:  # noqa: BLE001 - ranks the analysis cannot make sense of: one line
        raise common.unexpected(f"cannot analyse {ranks.root}", e) from None


def _window_rows(res):
    """Each rank's rows of the merged timeline's window, where the ranks were not loaded whole."""
    if not res.readers:
        return None
    from trtprof.analysis import ranks_streamed
    from trtprof.render import ranks_timeline

    _, _, wins = ranks_timeline.windows(res)
    return ranks_streamed.window_rows(res, {r: keys for r, (keys, _) in wins.items()})


def write_report(ranks, output=None, res=None) -> Path:
    """The merged report (default DIR/report.html); returns where it went."""
    common.need_plotly("HTML reports")
    from trtprof.render import ranks_html

    path = common.output_path(output, ranks.root / ranks_html.REPORT,
                              [ranks.root, *(c.path for c in ranks.captures.values())])
    res = _analyse(ranks) if res is None else res
    try:
        html = ranks_html.render(ranks, res, path.parent.resolve(), _window_rows(res))
    except common.TrtprofError:  # a rank's window rows that cannot be read again: its own line
        raise
    except Exception as e:  # noqa: BLE001
        raise common.unexpected(f"cannot render the report of {ranks.root}", e) from None
    return common.write(path, lambda f: f.write(html))


def report(path, output, quiet: bool):
    """`trtprof report DIR`: the per-rank lines and the straggler line on stderr, the page written."""
    from trtprof.render import ranks_text

    ranks, res = load_and_analyse(path)
    out = write_report(ranks, output, res)
    if not quiet:
        common.echo(ranks_text.render(ranks, res, subgraphs=False), err=True)
        common.echo(f"report written{'' if ranks.complete else ' (some ranks incomplete)'}: {out}, "
                    f"{common.open_hint(out)}", err=True)
    return out


def after_capture(root: Path, info: dict, quiet: bool, no_report: bool) -> None:
    """Once this rank is written: the last rank to finish prints every rank's summary and the
    straggler line and writes the merged report; the others say where they are."""
    from trtprof.record import ranks as record_ranks

    rank, world = info["rank"], info["world_size"]
    if not record_ranks.merge_turn(root, world, rank):
        common.say(f"rank {rank} of {world} written into {root}; the last rank to finish writes the merged "
                   f"report (or run: trtprof report {root})", quiet)
        return
    from trtprof.render import ranks_text

    try:
        ranks, res = load_and_analyse(root)
        if not quiet:
            common.echo(ranks_text.render(ranks, res), err=True)
        if not no_report:
            out = write_report(ranks, None, res)
            if not quiet:
                common.echo(f"merged report of {len(ranks.captures)} ranks written: {out}, {common.open_hint(out)}",
                            err=True)
    except common.TrtprofError as e:  # the captures are written: a failed merge is a note
        # a report of ranks without rows would fail the same way: no command to suggest then
        retry = "" if isinstance(e, common.EmptyCaptureError) else f"; try trtprof report {root}"
        common.say(f"merged report not written: {e}{retry}", quiet)


def export(path, fmt: str, output, quiet: bool, formats: dict) -> Path:
    """`trtprof export DIR`: one Perfetto trace (a process per rank), or one CSV with a rank column."""
    ranks = load(path)
    out = common.output_path(output, ranks.root / formats[fmt], [ranks.root, *(c.path for c in ranks.captures.values())])
    if fmt == "perfetto":
        from trtprof.render import perfetto, ranks_perfetto

        common.write(out, lambda f: f.write(perfetto.to_json(ranks_perfetto.build_trace(ranks))))
    else:
        from trtprof.render.tabular import write_csv
        from trtprof.timeline.ranks import merged

        common.write(out, lambda f: write_csv(merged(ranks), f))
    if not quiet:
        for n in ranks.notes:
            common.say(f"note: {n}")
        what = "trace (one process per rank)" if fmt == "perfetto" else "timeline (a rank column first)"
        common.echo(f"{what} of {len(ranks.captures)} ranks written: {out}", err=True)
    return out


def compare(path_a, path_b, mode: str, shape: str):
    """Rank by rank where both are folders of ranks, then the whole runs merged. Returns the text and
    the merged (CaptureDiff, Capture A, Capture B) for the HTML page. When any rank (or a single
    capture on one side) is past `common.STREAM_ROWS`, every comparison reads its captures chunk by
    chunk (`analysis.compare_streamed`), the merged one each side's ranks in turn."""
    from trtprof.render import compare_text
    from trtprof.timeline.ranks import Opened, merged_capture, merged_meta, merged_sides
    from trtprof.timeline.store import Capture

    lazy = _lazy_sides(path_a, path_b)
    if lazy is None:
        ra = load(path_a, "A") if is_ranks(path_a) else None
        rb = load(path_b, "B") if is_ranks(path_b) else None
        cap_a = merged_capture(ra) if ra else common.load(path_a, "A")
        cap_b = merged_capture(rb) if rb else common.load(path_b, "B")
        pair = lambda r: (ra.captures[r], rb.captures[r], None)  # noqa: E731
        sides = None
    else:
        ra, rb = lazy
        single = [None if r else Opened(common.open_lazy(p, side)) for r, p, side in ((ra, path_a, "A"), (rb, path_b, "B"))]
        cap_a, cap_b = (Capture(timeline=None, meta=merged_meta(r), path=r.root) if r else o
                        for r, o in ((ra, single[0]), (rb, single[1])))
        pair = lambda r: (ra.captures[r], rb.captures[r], ([(ra.captures[r].timeline, 0)], [(rb.captures[r].timeline, 0)]))  # noqa: E731
        sides = tuple(merged_sides(r) if r else [(o.timeline, 0)] for r, o in ((ra, single[0]), (rb, single[1])))
    blocks = []
    if ra and rb:
        both = [r for r in ra.captures if r in rb.captures]
        for r in both:
            a, b, s = pair(r)
            try:
                res = common.compare_run(a, b, mode, shape, path_a, path_b, s)
            except common.CaptureError as e:  # read chunk by chunk, a rank found damaged: left out, as `load_ranks` does
                if s is None:
                    raise
                blocks.append(f"== rank {r} ==\nnot compared: {e}")
                continue
            blocks.append(f"== rank {r} ==\n" + compare_text.render(res, a.path, b.path, a.meta, b.meta))
        only = sorted(set(ra.captures) ^ set(rb.captures))
        if only:
            blocks.append(f"ranks in one run only (not compared rank by rank): {', '.join(map(str, only))}")
    else:
        blocks.append("one side is a single capture: the runs are compared merged only (rank by rank needs two "
                      "folders of ranks)")
    res = common.compare_run(cap_a, cap_b, mode, shape, path_a, path_b, sides)
    label = "all ranks merged" if ra or rb else "merged"
    blocks.append(f"== {label} ==\n" + compare_text.render(res, path_a, path_b, cap_a.meta, cap_b.meta))
    return "\n\n".join(blocks), (res, cap_a, cap_b)


def _lazy_sides(path_a, path_b):
    """(ranks A, ranks B) opened without reading rows (None for a single capture) when any rank or
    single capture of either side is past `common.STREAM_ROWS`; None when all fit (loaded whole)."""
    from trtprof.timeline.ranks import open_ranks
    from trtprof.timeline.scan import open_timeline

    opened, is_long = [], False
    for p in (path_a, path_b):
        try:
            r = open_ranks(p) if is_ranks(p) else None
            if r and not any(c.timeline.has_rows() for c in r.captures.values()):
                return None  # no rank holds rows: `load` says so
            is_long |= any(common.long(c.timeline) for c in r.captures.values()) if r else common.long(open_timeline(p))
        except common.TrtprofError:  # loaded (and refused) as before
            return None
        opened.append(r)
    return tuple(opened) if is_long else None
