"""How the simulated times are drawn, and how GPU times follow from host times: one rule for every
generator here.

Host durations come from a `Clock`: "realistic" ones scatter around nominal microsecond values
(lognormal), which is what the analyses and reports are tested and benchmarked on; "edges" ones are a
few nanoseconds to a few microseconds, with gaps of exactly 0 or 1 ns, which is where exporters round
and nest wrongly.

GPU times: each timed row puts items (kernels, events) on a GPU queue in the order its thread enqueues
them. An item runs for `work` ns once the item before it on its queue has ended, and cannot end before
`not_before` (its enqueue time, plus the launch lag and its work where it is a kernel):
end_i = max(not_before_i, end_(i-1) + work_i), start_i = end_i - work_i.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

US = 1_000  # ns


class Clock:
    """Host and GPU durations for n inferences at once: gaps (may be 0), durations (never 0) and launch
    lags (how long after the host enqueued or recorded it GPU work or an event can be reached), each an
    int64 array of n ns. Realistic ones scatter around the nominal `us`; edges ones ignore it."""

    def __init__(self, rng: np.random.Generator, n: int, noise: float = 0.12, kind: str = "realistic"):
        if kind not in ("realistic", "edges"):
            raise ValueError(f"clock kind {kind!r}: 'realistic' or 'edges'")
        self.rng, self.n, self.noise, self.edges = rng, n, noise, kind == "edges"

    def _around(self, us):
        return (us * US * self.rng.lognormal(0.0, self.noise, self.n)).astype(np.int64)

    def gap(self, us):
        if not self.edges:
            return self._around(us)
        pick = self.rng.integers(0, 3, self.n)
        return np.where(pick < 2, pick, self.rng.integers(2, 3001, self.n))

    def dur(self, us, scale=None):
        """`us` scaled by `scale` (per inference) where realistic; edges ignore both."""
        if self.edges:
            return self.rng.integers(2, 5001, self.n)
        d = self._around(us)
        return d if scale is None else (d * scale).astype(np.int64)

    def lag(self, us):
        return self.rng.integers(0, 2001, self.n) if self.edges else self._around(us)


def queue(not_before, work):
    """End times of queued items, items in queue order along the last axis (one queue per row of a 2-D
    array, each idle at first): end_i = max(not_before_i, end_(i-1) + work_i).
    Vectorised: with c the running sum of work, end - c is the running maximum of not_before - c."""
    c = np.cumsum(work, axis=-1)
    return np.maximum.accumulate(not_before - c, axis=-1) + c


def queue_by(key, order, not_before, work):
    """`queue` over flat items, one queue per `key` value, in `order` within each (stable on ties)."""
    end = np.empty_like(not_before)
    for k in np.unique(key):
        at = np.flatnonzero(key == k)
        at = at[np.argsort(order[at], kind="stable")]
        end[at] = queue(not_before[at], work[at])
    return end


def event_jitter(df: pd.DataFrame, rng: np.random.Generator, ns: int) -> None:
    """CUDA-event clock rounding on every GPU range of `df`, up to `ns` either way: ranges nested on one
    stream may come out crossing, and an enqueue's GPU start may fall before its host start (no range
    ends before it starts)."""
    if not ns:
        return
    at = df.index[df["gpu_start_ns"].notna()]
    s = df.loc[at, "gpu_start_ns"].to_numpy(np.int64) + rng.integers(-ns, ns + 1, len(at))
    e = np.maximum(df.loc[at, "gpu_end_ns"].to_numpy(np.int64) + rng.integers(-ns, ns + 1, len(at)), s)
    df.loc[at, "gpu_start_ns"], df.loc[at, "gpu_end_ns"] = s, e
