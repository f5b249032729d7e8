"""The drivers: where each thread's inferences start and which GPU work queues behind which.

- `timeline`: one thread whose loop synchronises after every inference, so each inference finds the GPU
  idle (the analysis, report and scale tests, bench/bench_report.py, bench/bench_scale.py);
- `concurrent`: several threads running inferences at once, sharing the engines' streams and, or not,
  the caller's stream, with CUDA-event clock jitter, and which allocation feeds which call as ground
  truth beside the frame (the export tests: crossing ranges on one stream, nanosecond edges).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .model import Thread
from .rows import typed
from .timing import event_jitter, queue_by

THREAD = 139_700_000_000_000  # + 4096 per thread in `concurrent`
CALLER_STREAM = 0x7F3A_0000_1200  # + the thread: a caller stream of its own


def timeline(n: int = 200, *, prealloc=None, shapes=None, gpu: bool = True, seed: int = 0,
             model: str = "model0", engines=("_run_on_acc_0", "_run_on_acc_2"),
             fallback: str = "_run_on_gpu_1", pid: int = 4242, t0: int = 10**12,
             alloc_us: float = 40.0, noise: float = 0.12, exclude_flip: bool = True,
             runtime: str = "python") -> pd.DataFrame:
    """A timeline of `n` inferences of engine -> fallback -> engine (more engines: `engines` and a
    tuple of fallbacks, one between each two engines), realistic durations, on thread 1.

    prealloc: bool per inference (default: off for the first half, on for the second);
    shapes: input shape string per inference (default "(8,128)" throughout); gpu=False: no GPU times or
    streams (as a CPU capture).
    """
    th = Thread(n, prealloc=prealloc, shapes=shapes, rng=np.random.default_rng(seed), noise=noise, model=model,
                engines=engines, fallback=fallback, alloc_us=alloc_us, exclude_flip=exclude_flip, runtime=runtime)
    span = th.alone_on_the_gpu()  # the loop synchronises, then starts the next one
    starts = t0 + np.r_[0, np.cumsum(span)[:-1]] if n else np.zeros(0, np.int64)
    df, _ = th.rows.assemble(starts, th.gpu_start, th.gpu_end, th.shapes, model, pid, 1, gpu)
    return df


def hostile(n: int = 40, name: str = "<script>alert(1)</script>") -> pd.DataFrame:
    """A timeline whose model, subgraph names and shapes are hostile strings."""
    evil = "\"'><img src=x onerror=alert(1)>"
    shapes = ["(8,128)"] * (n // 2) + [f"(4,{evil})"] * (n - n // 2)
    return timeline(n, model=name, engines=(name, evil), fallback=f"</script><b>{evil}", shapes=shapes)


@dataclass
class Run:
    """A simulated capture: its rows and what the simulator knows that the rows only imply."""
    frame: pd.DataFrame
    prealloc_links: list[tuple[int, int]] = field(default_factory=list)  # (alloc seq, call seq)


def concurrent(seed: int = 0, threads: int = 2, *, runtime: str = "python", jitter: int = 0,
               shared_caller: bool = True, pid: int = 4242, clock: str = "edges") -> Run:
    """`threads` threads, each running 2 to 5 inferences at the same time as the others, on nanosecond-edge
    durations by default, GPU times jittered by up to `jitter` ns. Pre-alloc is on for about 80 % of the
    inferences, some change shape; thread 0 starts with two pre-allocated calls of one shape, so the
    second reuses the first's outputs. Each thread has its own model instance (pre-allocated outputs,
    shape history) but the engines' streams are shared, and so is the legacy default stream as caller
    stream unless `shared_caller` is false. The GPU runs each stream's work in enqueue order across the
    threads (no cross-stream waits). Rows are in seq order thread by thread."""
    rng = np.random.default_rng(seed)
    runs = []
    for k in range(threads):
        n = int(rng.integers(2, 6))
        warm = (np.arange(n) < 2) if k == 0 else np.zeros(n, bool)
        pre = warm | (rng.random(n) < 0.8)
        shapes = np.where(~warm & (rng.random(n) < 0.15), "(3,8)", "(2,8)").astype(object)
        th = Thread(n, prealloc=pre, shapes=shapes, rng=rng, clock=clock, runtime=runtime,
                    caller=0 if shared_caller else CALLER_STREAM + k)
        t0 = 10_000_000 + int(rng.integers(0, 20_001))  # the threads run at the same time
        th.starts = t0 + np.r_[0, np.cumsum(th.free_running())[:-1]]
        runs.append(th)
    _share_the_gpu(runs)
    frames, links, rows = [], [], 0
    for k, th in enumerate(runs):
        df, keys = th.rows.assemble(th.starts, th.gpu_start, th.gpu_end, th.shapes, "model0", pid,
                                    THREAD + k * 4096)
        df["seq"] += rows
        links += [(a + rows, c + rows) for a, c in th.prealloc_links(keys)]
        frames.append(df)
        rows += len(df)
    df = _number_as_the_hooks_do(typed(pd.concat(frames, ignore_index=True)))
    event_jitter(df, rng, jitter)
    return Run(df, links)


def _share_the_gpu(runs: list[Thread]) -> None:
    """GPU times of free-running threads: one queue per stream, in enqueue order across the threads."""
    parts = [th.queues() for th in runs]
    shift = [th.starts[:, None] for th in runs]
    flat = [np.concatenate([(p[j] + s if j in (1, 2) else p[j]).ravel() for p, s in zip(parts, shift)])
            for j in range(4)]
    end = queue_by(*flat)
    at = 0
    for th, (_, _, _, work), s in zip(runs, parts, shift):
        th.gpu_end = end[at:at + work.size].reshape(work.shape) - s
        th.gpu_start = th.gpu_end - work
        at += work.size


def _number_as_the_hooks_do(df: pd.DataFrame) -> pd.DataFrame:
    """Inferences of the model, and calls of each subgraph, numbered in the order they start across the
    threads (each thread's rows come numbered 0.. by its own inferences, and each inference calls each
    subgraph once)."""
    own = list(zip(df["thread"], df["inference"]))
    inf = df[df["event"] == "inference"].sort_values("host_start_ns", kind="stable")
    number = {key: i for i, key in enumerate(zip(inf["thread"], inf["inference"]))}
    opened = df[df["event"].isin(["call", "fallback"])].sort_values("host_start_ns", kind="stable")
    call = {}
    for sub, g in opened.groupby("subgraph", sort=False):
        call.update({(sub, *key): i for i, key in enumerate(zip(g["thread"], g["inference"]))})
    df["call"] = [number[key] if ev == "inference" else call[(sub, *key)]
                  for key, ev, sub in zip(own, df["event"], df["subgraph"])]
    df["inference"] = [number[key] for key in own]
    return df
