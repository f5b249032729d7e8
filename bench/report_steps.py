#!/usr/bin/env python3
"""Benchmark: the memory each step after the chunk loop of a streamed report takes (Linux only).

Why: on a large capture the report's peak comes after the chunk loop, in the statistics and the page
over the per-inference tables (14 M inferences in a 100 M-row capture); `bench_scale.py` gives the
peak, this says which step makes it. Each step is wrapped; before it runs the process's peak RSS
(`VmHWM`) is reset (`/proc/self/clear_refs`, 5), so its peak is the step's own; a step called inside
another is not measured apart.

    python3 bench/report_steps.py /work/scale-data/cap-10000000
    python3 bench/report_steps.py --compare /work/scale-data/cap-10000000   # the capture compared with itself
    python3 bench/report_steps.py --ranks /work/scale-data/ranks8-12500000  # a folder of ranks, merged

Prints one line per call on stderr: the peak between the step before and this one (for the first:
the chunk loop's), RSS before, the peak during the call (and the difference), RSS after, seconds.
"""
from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # trtprof from this tree


def rss() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) // 1024
    return out


_DEPTH = [0]


def wrap(owner, name: str) -> None:
    f = getattr(owner, name)

    @functools.wraps(f)
    def step(*a, **k):
        if _DEPTH[0]:
            return f(*a, **k)
        _DEPTH[0] += 1
        r0 = rss()
        before, t = r0["VmRSS"], time.perf_counter()
        with open("/proc/self/clear_refs", "w") as c:
            c.write("5")
        try:
            return f(*a, **k)
        finally:
            r = rss()
            print(f"{name:20s} peak since the step before {r0['VmHWM']:6d} MB  before {before:6d} MB  "
                  f"peak {r['VmHWM']:6d} MB (+{r['VmHWM'] - before:5d})  after {r['VmRSS']:6d} MB  "
                  f"{time.perf_counter() - t:6.1f} s", file=sys.stderr, flush=True)
            _DEPTH[0] -= 1
    setattr(owner, name, step)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    mode = args[0] if args[:1] in (["--compare"], ["--ranks"]) else ""
    args = args[1:] if mode else args
    compare = mode == "--compare"
    if len(args) != 1 or not Path("/proc/self/clear_refs").exists():
        print("usage: report_steps.py [--compare | --ranks] CAPTURE (Linux: reads /proc/self/status)", file=sys.stderr)
        return 2
    if mode == "--ranks":
        return _ranks(args[0])
    from trtprof.analysis import compare as comparison, compare_streamed, streamed
    from trtprof.cli import common
    from trtprof.render import compare_html, figures, timeline_fig
    from trtprof.timeline import scan

    t = time.perf_counter()
    if compare:  # the chunked comparison's passes and what follows them (the capture against itself)
        for name in ("latencies", "_Side"):
            wrap(compare_streamed, name)
        for name in ("select", "sides_diff", "_by_shape", "diff_medians"):
            wrap(comparison, name)
        wrap(compare_html, "render")
        res, a, b = None, None, None
        a, b, sides = common.compare_open(args[0], args[0])
        res = common.compare_run(a, b, "all", "common", args[0], args[0], sides)
        compare_html.render(res, a, b)
        print(f"compare in {time.perf_counter() - t:.1f} s; at the end {rss()}", file=sys.stderr)
        return 0
    for name in ("join_parts", "latency_summary", "compare_modes", "recommendations"):
        wrap(streamed, name)
    wrap(streamed.cudagraphs, "compare")
    wrap(streamed.Streamed, "window")
    wrap(timeline_fig, "window_in")
    for name in ("latency_histogram", "latency_over_run"):
        wrap(figures, name)
    common.streamed_html(scan.open_timeline(Path(args[0])))
    print(f"report in {time.perf_counter() - t:.1f} s; at the end {rss()}", file=sys.stderr)
    return 0


def _ranks(path: str) -> int:
    """The merged report of a folder of ranks: each rank's chunked analysis, its inference ends, the
    combination, the window's rows and the page."""
    from trtprof.analysis import ranks, ranks_streamed, streamed
    from trtprof.cli import ranks as cli_ranks
    from trtprof.render import ranks_html, ranks_text, ranks_timeline

    t = time.perf_counter()
    wrap(streamed, "analyse")
    wrap(ranks_streamed, "ends")
    wrap(ranks, "combine")
    wrap(ranks_streamed, "window_rows")
    for owner, names in ((ranks_html, ("latency_figure", "straggler_figure", "_subgraphs", "_straggler",
                                       "_latency")), (ranks_timeline, ("figure",)), (ranks_text, ("render",))):
        for name in names:
            wrap(owner, name)
    with tempfile.TemporaryDirectory() as d:
        cli_ranks.report(path, str(Path(d) / "report.html"), quiet=False)
    print(f"merged report in {time.perf_counter() - t:.1f} s; at the end {rss()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
