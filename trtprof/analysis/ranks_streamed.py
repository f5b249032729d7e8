"""The merged report's analysis of a folder of ranks too long to load together, in memory bounded by
one rank's chunk and every rank's per-inference tables.

Why not `ranks.analyse_ranks`: it holds every rank's whole timeline at once (a 12.5 M-row rank takes
about 5 GB loaded). Here each rank is analysed alone and let go: chunk by chunk (`analysis.streamed`)
where the caller says so (a rank past the chunked report's threshold), else loaded whole as today
(a short rank, or one with kernel records or an nsys import, which are read whole). Of each rank only
what the merged report reads is kept: its `report.Results` (per-inference tables, compact), its
inference ends on the common clock (read lazily: four columns of the rows whose `event` is inference), its number of
rows, and a reader of the rows of a window of inferences for the timeline (`window_rows`). The merged
numbers are then `ranks.combine`'s, as for the whole load, so the page is the same.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis import ranks as whole, report, streamed as chunked
from trtprof.errors import CaptureError, ExitCode, TrtprofError
from trtprof.timeline.ranks import in_keys, inference_rows, window_rows as read_window


def ends(tl, offset: int) -> pd.DataFrame:
    """`ranks._ends` of the lazily opened timeline `tl` on the common clock, read batch by batch and
    kept compact (model as categories, inference in 32 bits where it fits): 1.7 M inferences of a
    12.5 M-row rank are about 14 bytes each instead of a string and three 64-bit numbers."""
    parts = [chunked.compact(whole.end_times(f), labels=("model",)) for f in inference_rows(tl, offset)]
    if not parts:
        return pd.DataFrame({"model": pd.Series([], dtype=object), "inference": np.zeros(0, np.int64),
                             "end_ns": np.zeros(0)})
    out = chunked.join_parts(parts, labels=("model",))
    return out.drop_duplicates(["model", "inference"]).reset_index(drop=True)


def _whole_reader(tl, res: report.Results):
    """The window reader of a rank analysed whole: its rows read again with a filter, its allocations
    and gaps those of its analysis."""
    return lambda keys: (read_window(tl, keys), res.allocs, res.gaps)


def analyse(ranks, streamed: set, n_boot: int = report.N_BOOT, **plan) -> whole.RankResults:
    """`ranks`: a `timeline.ranks.Ranks` of `Opened` captures (`open_ranks`). The ranks in `streamed`
    are analysed chunk by chunk (`plan`: chunk_rows, batch_rows), the others loaded whole, one rank at
    a time. `RankResults.readers` holds each rank's window reader, for `window_rows`."""
    per, end, rows, readers = {}, {}, {}, {}
    for r, c in list(ranks.captures.items()):
        try:
            if r in streamed:
                s = chunked.analyse(c.timeline, c.meta, n_boot=n_boot, **plan)
                s.starts = None  # the merged timeline chooses its window from the inferences
                per[r], rows[r], readers[r] = s.results, s.rows, s.window
            else:
                cap = c.load()
                per[r] = report.analyse(cap.timeline, n_boot=n_boot, kernels=cap.kernels, meta=cap.meta)
                rows[r], readers[r] = len(cap.timeline), _whole_reader(c.timeline, per[r])
                del cap
            end[r] = ends(c.timeline, ranks.offsets.get(r, 0))
        except TrtprofError as e:  # rows damaged inside its file: left out, as `load_ranks` leaves it out
            for d in (per, end, rows, readers):
                d.pop(r, None)
            del ranks.captures[r]
            ranks.notes.append(f"rank {r} left out: {e}")
    if not ranks.captures:
        raise CaptureError(f"no rank of {ranks.root} is a readable capture ({ranks.notes[-1]})",
                           ExitCode.BAD_CAPTURE)
    res = whole.combine(ranks, per, end, rows)
    res.readers = readers
    return res


def window_rows(res: whole.RankResults, windows: dict) -> dict:
    """rank -> (rows, allocations, gaps) of the inferences of its window (`windows`: rank -> KEY
    frame), each as the whole timeline gives them for those inferences; read one rank at a time and
    cut to the window at once, so only the drawn rows are held."""
    out = {}
    for r, keys in windows.items():
        rows, allocs, gaps = res.readers[r](keys)
        rows = rows[in_keys(rows, keys)].reset_index(drop=True)
        allocs = allocs[allocs["seq"].isin(rows["seq"]).to_numpy(bool)] if len(allocs) else allocs
        gaps = gaps[in_keys(gaps, keys)] if len(gaps) else gaps
        out[r] = (rows, allocs, gaps)
    return out

