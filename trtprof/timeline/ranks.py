"""A folder of ranks: one capture per process of a distributed run (DIR/rank0, DIR/rank1, ...), loaded
together and put on one clock.

Why one capture per rank rather than one shared capture: each process records on its own (no
locking between processes, a crash of one rank never damages another's rows), and each rank folder
stays an ordinary capture that every command reads alone.

One clock: times are CLOCK_MONOTONIC, which all processes of one boot of one machine share, so ranks
whose `meta.json` names the same boot id (or, without one, the same host) are already on one clock
and are not shifted. A rank on another machine is put on the clock of the lowest rank through
wall-clock time: each rank recorded a monotonic / wall-clock pair at its start, and its offset is
the difference of the two pairs' (wall - monotonic). That is as good as the machines' clock
synchronisation (NTP: around a millisecond; PTP: microseconds), and the report says so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trtprof.errors import CaptureError, ExitCode, TrtprofError
from trtprof.timeline.rank_layout import RANK_DIR, is_ranks, rank_folders  # noqa: F401
from trtprof.timeline.store import Capture, load_capture

TIME_COLUMNS = ("host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns", "kernel_first_ns", "kernel_last_ns")
PID_SPACING = 1 << 32  # merged pids: rank * PID_SPACING + pid, only where two ranks had the same pid


def rank_meta(meta: dict) -> dict:
    """The rank block of a capture's meta.json ({} for a capture taken outside a launcher)."""
    r = meta.get("rank")
    return r if isinstance(r, dict) else {}


@dataclass
class Ranks:
    """The captures of a folder of ranks, each on its own clock, and how to put them on one."""
    root: Path
    captures: dict  # rank -> Capture, in rank order
    offsets: dict  # rank -> ns to add to its times for the common clock
    clock: str  # how the clocks were aligned, one sentence
    notes: list = field(default_factory=list)  # ranks missing or unreadable, world sizes that disagree
    world_size: int | None = None

    @property
    def ranks(self) -> list[int]:
        return list(self.captures)

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.captures.values())


def _int(v):
    return v if type(v) is int else None


def clock_offsets(metas: dict[int, dict]) -> tuple[dict[int, int], str]:
    """rank -> ns offset onto the lowest rank's clock, and the sentence saying how (module docstring)."""
    if not metas:
        return {}, ""
    refs = {}
    for r, meta in metas.items():
        c = rank_meta(meta).get("clock")
        c = c if isinstance(c, dict) else (meta.get("clock_anchor") if isinstance(meta.get("clock_anchor"), dict) else {})
        boot = c.get("boot_id") or None
        host = rank_meta(meta).get("host") or c.get("host")
        p, w = _int(c.get("perf_counter_ns")), _int(c.get("time_ns"))
        refs[r] = (boot or (f"host:{host}" if host else None), p, w)
    first = min(refs)
    base = refs[first]
    offsets, shifted, unknown = {}, [], []
    for r, (machine, p, w) in refs.items():
        if machine is not None and machine == base[0]:
            offsets[r] = 0
        elif None not in (p, w, base[1], base[2]):
            offsets[r] = (w - p) - (base[2] - base[1])
            shifted.append(r)
        else:
            offsets[r] = 0
            unknown.append(r)
    hosts = len({m for m, _, _ in refs.values()})
    if not shifted and not unknown:
        text = ("every rank ran in one boot of one machine, so all share its CLOCK_MONOTONIC: times are shown "
                "as recorded, exact to the clock")
    else:
        text = (f"the ranks ran on {hosts} machines; rank{'s' if len(shifted) != 1 else ''} "
                f"{', '.join(map(str, shifted)) or '-'} put on rank {first}'s clock through wall-clock time "
                "(CLOCK_REALTIME pairs recorded at each start), so their placement is only as good as the "
                "machines' clock synchronisation (NTP: about a millisecond; PTP: microseconds)")
        if unknown:
            text += f"; ranks {', '.join(map(str, unknown))} recorded no clock reference and are not shifted"
    return offsets, text


@dataclass
class Opened:
    """A rank's capture opened without reading its rows (`open_ranks`): what the merged report asks
    of a rank besides its analysis (metadata, folder, status), as a loaded `Capture` answers it, and
    the lazily read timeline (`scan.Timeline`) its analysis reads chunk by chunk."""
    timeline: object  # scan.Timeline

    @property
    def meta(self) -> dict:
        return self.timeline.meta

    @property
    def path(self) -> Path:
        return Path(self.timeline.path)

    @property
    def complete(self) -> bool:
        return self.meta.get("status") == "complete"

    def load(self) -> Capture:
        """The whole capture (`load_capture`), for a rank the chunked analysis does not take."""
        return load_capture(self.path)


def _open(path) -> Opened:
    from trtprof.timeline.scan import open_timeline

    opened = Opened(open_timeline(path))
    opened.meta  # its repair count reads two columns of every row: a damaged one is this rank's note
    return opened


def load_ranks(root: str | os.PathLike) -> Ranks:
    """Load every rank folder of `root`. A rank folder that is not a readable capture, or holds rows of
    another rank, is left out with a note; none readable is a CaptureError (one line)."""
    return _ranks(root, load_capture)


def open_ranks(root: str | os.PathLike) -> Ranks:
    """`load_ranks` without loading any rank's rows: each capture an `Opened` (metadata now, rows on
    demand), for a folder whose ranks do not fit in memory together. Only the two columns the repair
    count reads (`Timeline.meta`) are scanned now, so a rank damaged there is left out with a note
    here; one damaged in another column is left out when its analysis reads it
    (`analysis.ranks_streamed.analyse`)."""
    return _ranks(root, _open)


def _ranks(root, opener) -> Ranks:
    root = Path(root)
    folders = rank_folders(root)
    if not folders:
        raise CaptureError(f"{root} holds no rank folders (rank0, rank1, ...): not a folder of ranks")
    captures, notes, worlds = {}, [], set()
    for r, path in folders.items():
        try:
            cap = opener(path)
        except TrtprofError as e:
            notes.append(f"rank {r} left out: {e}")
            continue
        info = rank_meta(cap.meta)
        own = _int(info.get("rank"))
        if own is not None and own != r:
            notes.append(f"rank {r} left out: {path} holds the capture of rank {own}")
            continue
        if _int(info.get("world_size")) is not None:
            worlds.add(info["world_size"])
        captures[r] = cap
    if not captures:
        raise CaptureError(f"no rank of {root} is a readable capture ({notes[0]})", ExitCode.BAD_CAPTURE)
    world = max(worlds) if worlds else None
    if len(worlds) > 1:
        notes.append(f"the ranks disagree on the world size ({', '.join(map(str, sorted(worlds)))}): "
                     "folders of different runs are mixed in this folder")
    if world is not None:
        missing = [r for r in range(world) if r not in folders]
        if missing:
            notes.append(f"rank{'s' if len(missing) != 1 else ''} {', '.join(map(str, missing[:20]))} of "
                         f"{world} ha{'s' if len(missing) == 1 else 've'} no folder here")
    offsets, clock = clock_offsets({r: c.meta for r, c in captures.items()})
    return Ranks(root=root, captures=captures, offsets=offsets, clock=clock, notes=notes, world_size=world)


def shifted(df: pd.DataFrame, offset: int) -> pd.DataFrame:
    """`df` with its absolute times (not durations) moved by `offset` ns."""
    if not offset:
        return df
    out = df.copy()
    for c in TIME_COLUMNS:
        if c in out:
            out[c] = out[c] + offset
    return out


END_READS = ["model", "inference", "host_end_ns", "gpu_end_ns"]


def inference_rows(tl, offset: int):
    """The top-level inference rows of the lazily opened timeline `tl` (model, inference and the two
    end times only), batch by batch, on the common clock (`shifted` by the rank's `offset`): what
    the finish skew reads of a rank, without reading the rest of its rows."""
    for f in tl.frames(END_READS, filter=[("event", "==", "inference"), ("inference", ">=", 0)]):
        if len(f):
            yield shifted(f, offset)


def window_rows(tl, keys: pd.DataFrame) -> pd.DataFrame:
    """The rows of the inferences `keys` (pid, model, inference) of the lazily opened timeline `tl`,
    in timeline order: the rows a loaded capture holds for them, read with a filter on the models
    and the span of inference numbers, then only the exact keys kept."""
    if keys.empty:
        return tl.to_pandas(filter=[("seq", "<", 0)])
    models = [str(m) for m in pd.unique(keys["model"])]
    inf = keys["inference"].to_numpy(np.int64)
    rows = tl.to_pandas(filter=[("model", "in", models), ("inference", ">=", int(inf.min())),
                                ("inference", "<=", int(inf.max()))])
    rows.attrs.pop("trtprof", None)  # as load_capture gives it: no metadata on the frame
    return rows[in_keys(rows, keys)].reset_index(drop=True)


def in_keys(df: pd.DataFrame, keys: pd.DataFrame) -> np.ndarray:
    """Which rows of `df` belong to one of the inferences `keys` (pid, model, inference)."""
    k = ["pid", "model", "inference"]
    if df.empty or keys.empty:
        return np.zeros(len(df), bool)
    want = pd.DataFrame({"pid": keys["pid"].to_numpy(np.int64), "model": keys["model"].to_numpy(object),
                         "inference": keys["inference"].to_numpy(np.int64)}).drop_duplicates().assign(_in=True)
    have = pd.DataFrame({"pid": df["pid"].to_numpy(np.int64), "model": df["model"].to_numpy(object),
                         "inference": df["inference"].to_numpy(np.int64)})
    return have.merge(want, on=k, how="left")["_in"].notna().to_numpy()


def merged(ranks: Ranks) -> pd.DataFrame:
    """Every rank's timeline on the common clock in one frame, a `rank` column first. `pid` stays the
    process id unless two ranks had the same one (machines of their own): then rank * 2**32 + pid."""
    frames = []
    pids = [set(c.timeline["pid"].unique()) for c in ranks.captures.values()]
    clash = sum(len(p) for p in pids) != len(set().union(*pids)) if pids else False
    for r, cap in ranks.captures.items():
        d = shifted(cap.timeline, ranks.offsets.get(r, 0))
        if clash:
            d = d.assign(pid=d["pid"].to_numpy(np.int64) + r * PID_SPACING)
        frames.append(d.assign(rank=np.int64(r)))
    df = pd.concat(frames, ignore_index=True)
    return df[["rank"] + [c for c in df.columns if c != "rank"]]


def merged_capture(ranks: Ranks) -> Capture:
    """The merged timeline as one Capture (for the analyses that take one: compare of the whole run);
    its metadata is the lowest rank's, with the folder's status (complete only if every rank is)."""
    return Capture(timeline=merged(ranks).drop(columns="rank"), meta=merged_meta(ranks), path=ranks.root)


def merged_meta(ranks: Ranks) -> dict:
    """The metadata of the whole run: the lowest rank's, with the folder's status."""
    first = ranks.captures[min(ranks.captures)]
    meta = dict(first.meta, status="complete" if ranks.complete else "incomplete")
    if not ranks.complete:
        meta["incomplete_reason"] = "; ".join(f"rank {r}: {c.meta.get('incomplete_reason') or 'incomplete'}"
                                              for r, c in ranks.captures.items() if not c.complete)
    return meta


def merged_sides(ranks: Ranks) -> list:
    """The ranks as a side of a chunked comparison (`analysis.compare_streamed`): (timeline, pid
    offset) each; every rank's pids are offset (what `merged` does only where two ranks share one:
    a comparison reads pids only to tell inferences apart)."""
    return [(c.timeline, r * PID_SPACING) for r, c in ranks.captures.items()]
