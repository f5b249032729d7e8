"""What every command shares: the one place errors become a line and an exit code, loading a
capture, choosing and writing an output file, writing a report.

Why here (memray's `commands/common.py`): a command is then only wiring (parse, call, print); the
flow "load, analyse, render, write" exists once, for `report` and for `capture` alike. Heavy imports
(pandas, plotly) happen inside the functions, so `trtprof --help` stays fast.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from trtprof.errors import CaptureError, EmptyCaptureError, ExitCode, MissingDependency, TrtprofError, clean, first_line  # noqa: F401

# files of a capture folder an output must never replace
OWN_FILES = ("meta.json", "timeline.parquet", "timeline.arrows", "nsys.parquet", "nsys.json", ".capturing",
             "traceback.txt", "kernels.parquet", "nsys_kernels.parquet")
OWN_SUFFIXES = (".nsys-rep", ".sqlite")  # the nsys report and its export


class Group(click.Group):
    """The `trtprof` group: a TrtprofError from any command is one line on stderr and its exit code,
    and so is a usage error (click's own is four lines: usage, hint, blank, error). `trtprof` alone
    still prints the help."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            _usage(e, info_name or "trtprof")

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            _usage(e, ctx.command_path)
        except TrtprofError as e:
            say(str(e))
            sys.exit(e.exit_code)
        except KeyboardInterrupt:  # after the capture is written (it holds Ctrl-C while finishing)
            say("interrupted")
            sys.exit(ExitCode.INTERRUPTED)


def _usage(e: click.UsageError, path: str):
    """A usage error as one line naming where help is; the bare group keeps click's help page."""
    if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # click >= 8.2
        raise e
    where = e.ctx.command_path if e.ctx is not None else path
    say(f"{e.format_message()} (see '{where} --help')")
    sys.exit(e.exit_code)


def say(msg: str, quiet: bool = False) -> None:
    """One line on stderr, prefixed and escaped (a path or a name may hold control characters)."""
    if not quiet:
        click.echo(f"trtprof: {clean(msg)}", err=True)


def echo(text: str, err: bool = False) -> None:
    """Print `text` (a table, a pointer) with every line escaped by `clean`: the one way the commands
    print, so an engine name, a path or a stored reason can never clear the screen or reverse a line."""
    click.echo("\n".join(clean(line) for line in str(text).split("\n")), err=err)


def unexpected(what: str, e: Exception, code: int = ExitCode.BAD_CAPTURE) -> TrtprofError:
    """An error nobody foresaw (a capture the analysis cannot make sense of): one line, no traceback,
    unless TRTPROF_DEBUG is set."""
    if os.environ.get("TRTPROF_DEBUG"):
        raise e
    return TrtprofError(f"{what}: {type(e).__name__}: {first_line(e) if str(e) else ''} "
                        "(set TRTPROF_DEBUG=1 for the traceback)", code)


def load(path, label: str = ""):
    """The capture at `path`, which must hold rows (TrtprofError otherwise)."""
    from trtprof.timeline.store import load_capture

    prefix = f"{label}: " if label else ""
    try:
        cap = load_capture(path)
    except TrtprofError as e:
        raise type(e)(prefix + str(e), e.exit_code) from None
    if cap.timeline.empty:
        raise EmptyCaptureError(f"{prefix}{cap.path} holds no rows: nothing ran under Torch-TensorRT while it recorded")
    return cap


def open_lazy(path, label: str = ""):
    """The capture at `path` opened without reading its rows (`scan.Timeline`); it must hold rows."""
    from trtprof.timeline.scan import open_timeline

    prefix = f"{label}: " if label else ""
    try:
        tl = open_timeline(path)
        empty = not tl.has_rows()
    except TrtprofError as e:
        raise type(e)(prefix + str(e), e.exit_code) from None
    if empty:
        raise EmptyCaptureError(f"{prefix}{tl.path} holds no rows: nothing ran under Torch-TensorRT while it recorded")
    return tl


def _no_file_in_the_way(p: Path, folders) -> None:
    """The first of `folders` (innermost first) that exists must be a folder: one message for all."""
    for up in folders:
        if up.exists() and not up.is_dir():
            raise TrtprofError(f"cannot write {p}: {up} is a file, not a folder", ExitCode.BAD_OUTPUT)
        if up.is_dir():
            return


def output_path(output, default: Path, capture_folders=()) -> Path:
    """The one -o rule of every command: none gives `default`; an existing folder gets `default`'s
    name inside it; anything else is the file to write, and missing folders above it are made (as
    `capture -o` makes its folder). A file in the way of those folders is an error, and so is a file
    of a capture folder (its timeline, its metadata): an output never replaces one."""
    p = Path(output) if output else Path(default)
    if output and p.is_dir():
        p = p / Path(default).name
    parent = p.parent
    _no_file_in_the_way(p, (parent, *parent.parents))
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrtprofError(f"cannot write {p}: {e.strerror or e}", ExitCode.BAD_OUTPUT) from None
    for folder in capture_folders:
        own = p.name in OWN_FILES or p.suffix in OWN_SUFFIXES
        if folder is not None and own and _same(parent, Path(folder)):
            raise TrtprofError(f"refusing to write {p}: it is part of the capture in {folder}", ExitCode.BAD_OUTPUT)
    return p


def output_folder(output) -> Path | None:
    """The same rule for `capture -o`, whose output is a folder: it, or the first one above it that
    exists, must not be a file (BAD_OUTPUT, the message of `output_path`); None keeps the default."""
    if not output:
        return None
    p = Path(output)
    _no_file_in_the_way(p, (p, *p.parents))
    return p


def typed_command() -> list[str]:
    """The command line as the user typed it, for meta.json: `trtprof capture ...` from the console
    script, `python3 -m trtprof capture ...` (interpreter and its options as typed) under -m."""
    argv0 = sys.argv[0] if sys.argv else "trtprof"
    if os.path.basename(argv0) == "__main__.py":
        orig = list(getattr(sys, "orig_argv", []) or [])
        if "-m" in orig:
            return orig
        return [os.path.basename(sys.executable), "-m", "trtprof", *sys.argv[1:]]
    return [os.path.basename(argv0), *sys.argv[1:]]


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write(path: Path, writer, mode: str = "w") -> Path:
    """Write through `writer(file)` atomically (never through a planted link); one line on failure."""
    from trtprof import _files

    try:
        with _files.atomic(path, mode) as f:
            writer(f)
    except OSError as e:
        raise TrtprofError(f"cannot write {path}: {e.strerror or e}", ExitCode.BAD_OUTPUT) from None
    return path


def need_plotly(what: str) -> None:
    try:
        import plotly  # noqa: F401
    except ImportError as e:
        raise MissingDependency(f"cannot write {what} here: {e} (pip install plotly)") from None


def write_report(cap, output=None) -> Path:
    """Analyse the capture, render its report, write it (default: report.html in the capture folder)."""
    need_plotly("HTML reports")
    from trtprof.analysis.report import analyse
    from trtprof.nsys.importer import report_inputs
    from trtprof.render import report_html

    default = (Path(cap.path) if cap.path else Path.cwd()) / report_html.REPORT
    path = output_path(output, default, [cap.path])
    try:
        seen, view = report_inputs(cap)
        html = report_html.render(seen, analyse(seen.timeline, kernels=cap.kernels, meta=cap.meta), view)
    except TrtprofError:
        raise
    except Exception as e:  # noqa: BLE001 - a capture the analysis cannot make sense of
        raise unexpected(f"cannot analyse {cap.path}", e) from None
    return write(path, lambda f: f.write(html))


# Past this many rows the report is analysed chunk by chunk. Why not from one chunk on: up to about a
# million rows the whole load is faster (1 M rows: 8.3 s against 12.2 s) and peaks near 1.1 GB; past
# it its memory grows by about 1.1 KB a row, the chunked analysis by about 80 bytes an inference.
STREAM_ROWS = 1 << 20


def streamable(tl) -> bool:
    """Whether the report of the lazily opened capture `tl` is analysed chunk by chunk: a finished
    capture past `STREAM_ROWS`, without kernel records or an nsys import (those are read whole)."""
    from trtprof.nsys.store import NSYS_JSON, NSYS_PARQUET
    from trtprof.timeline.kernels import FILE

    folder = Path(tl.path)
    return getattr(tl, "num_rows", 0) > STREAM_ROWS and \
        not any((folder / f).exists() for f in (FILE, NSYS_PARQUET, NSYS_JSON))


def long(tl) -> bool:
    """Past `STREAM_ROWS`: analysed chunk by chunk (the compare's rule; the report's is `streamable`)."""
    return getattr(tl, "num_rows", 0) > STREAM_ROWS


def compare_open(path_a, path_b):
    """(A, B, sides): the captures at the two paths loaded whole (sides None), or, when either is past
    `STREAM_ROWS`, opened for `analysis.compare_streamed` (the same comparison, read chunk by chunk):
    A and B are then `timeline.ranks.Opened` (metadata, path and status: what the renderers read) and
    sides their ((timeline, pid offset),) lists for `compare_run`."""
    from trtprof.timeline.scan import open_timeline

    try:
        lazy = long(open_timeline(path_a)) or long(open_timeline(path_b))
    except TrtprofError:  # not captures: loaded (and refused) as before
        lazy = False
    if not lazy:
        return load(path_a, "A"), load(path_b, "B"), None
    from trtprof.timeline.ranks import Opened

    a, b = Opened(open_lazy(path_a, "A")), Opened(open_lazy(path_b, "B"))
    return a, b, ([(a.timeline, 0)], [(b.timeline, 0)])


def compare_run(a, b, mode: str, shape: str, path_a, path_b, sides=None):
    """B against A: loaded captures compared whole, or `sides` (two (timeline, pid offset) lists)
    read chunk by chunk; what the analysis cannot make sense of is one line."""
    from trtprof.analysis import compare, compare_streamed

    try:
        if sides is None:
            return compare.compare_captures(a, b, mode=mode, shape=shape)
        return compare.finish(compare_streamed.compare_sides(*sides, mode=mode, shape=shape), a, b)
    except TrtprofError:
        raise
    except Exception as e:  # noqa: BLE001 - a capture the analysis cannot make sense of: one line
        raise unexpected(f"cannot compare {path_a} and {path_b}", e) from None


def report_capture(path, output=None):
    """Write the report of the capture at `path`; returns (report path, whether the capture is
    complete). A capture past `STREAM_ROWS` is analysed chunk by chunk (`analysis.streamed`), in
    bounded memory, with the same statistics; the rest is loaded whole (`write_report`)."""
    from trtprof.timeline.scan import open_timeline

    try:  # the metadata only: a capture that is not one, or a short one, is loaded (and refused) as before
        tl = open_timeline(path)
    except TrtprofError:
        tl = None
    if tl is None or not streamable(tl):
        cap = load(path)
        return write_report(cap, output), cap.complete
    need_plotly("HTML reports")
    from trtprof.render import report_html

    out = output_path(output, Path(tl.path) / report_html.REPORT, [tl.path])
    try:
        html = streamed_html(tl)
    except TrtprofError:
        raise
    except Exception as e:  # noqa: BLE001 - a capture the analysis cannot make sense of
        raise unexpected(f"cannot analyse {tl.path}", e) from None
    return write(out, lambda f: f.write(html)), tl.meta.get("status") == "complete"


def streamed_html(tl, **plan) -> str:
    """The report page of the lazily opened capture `tl`, analysed chunk by chunk (`plan`: chunk_rows,
    batch_rows); only the rows of the timeline's window are read into a frame."""
    from trtprof.analysis import streamed
    from trtprof.render import report_html, timeline_fig
    from trtprof.timeline.store import Capture

    meta = tl.meta
    s = streamed.analyse(tl, meta, **plan)
    r = s.results
    # one row per inference already (a 100 M-row capture has 14 M of them): no grouping, no merge
    window = timeline_fig.window_in(s.starts.assign(mode=r.infs["mode"]), r.changes, r.latency)
    s.starts = None
    rows, r.allocs, r.gaps = s.window(window[0])
    return report_html.render(Capture(timeline=rows, meta=meta, path=Path(tl.path)), r, None, window, s.rows)


def open_hint(path: Path) -> str:
    import shlex

    return f"open it with xdg-open {shlex.quote(str(path))}"


def _gui_session() -> bool:
    """A browser window can appear: macOS and Windows always, elsewhere only with a display."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _xdg_open(uri: str) -> bool | None:
    """xdg-open with its output discarded; True once it succeeded (or still runs after 10 s: a
    browser starting), False when it failed, None when there is no xdg-open."""
    import shutil
    import subprocess

    exe = shutil.which("xdg-open")
    if exe is None:
        return None
    p = subprocess.Popen([exe, uri], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return p.wait(timeout=10) == 0
    except subprocess.TimeoutExpired:
        return True


def _window_browser(uri: str) -> bool:
    """Python's own choice of browser, but only one that opens a window (never a console browser,
    which would take the terminal), started with its output discarded."""
    import subprocess
    import webbrowser

    try:
        b = webbrowser.get()
    except webbrowser.Error:
        return False
    if sys.platform in ("darwin", "win32"):
        return bool(b.open(uri))  # the system's own launcher: quiet
    if not isinstance(b, webbrowser.BackgroundBrowser):
        return False
    try:
        subprocess.Popen([b.name, *(a.replace("%s", uri) for a in b.args)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return False
    return True


def open_in_browser(path: Path, quiet: bool = False) -> bool:
    """Open `path` in a browser if one can be shown; otherwise one line saying how to open it.

    Why not plain `webbrowser.open`: without a display it falls back to console browsers (lynx
    would take the terminal) or runs xdg-open, which prints its own errors and still counts as
    opened. Here $BROWSER is honoured as given; otherwise a launcher runs only where a window can
    appear, with its output discarded, and a launcher that fails gives the same one line."""
    import webbrowser

    uri = Path(path).resolve().as_uri()
    if os.environ.get("BROWSER"):
        opened = webbrowser.open(uri)
    elif not _gui_session():
        opened = False
    else:
        opened = _xdg_open(uri) if sys.platform.startswith("linux") else None
        if opened is None:
            opened = _window_browser(uri)
    if not opened:
        say(f"no browser to open the report here: open {Path(path).resolve()} in a browser "
            "(copy the file to a machine that has one)", quiet)
    return bool(opened)
