"""Synthetic timelines with GPU times, for the analysis and report tests and bench/bench_report.py.

A CPU capture has no GPU times, so the overlap analysis needs a stand-in for a GPU run. This one
simulates the Python runtime on a partitioned model, engine -> fallback -> engine, step by step but
vectorised across inferences (each inference starts on an idle GPU, as when the loop synchronises),
so a million rows take about a second. The host/GPU model is the one the tutorial describes:

- pre-alloc off: each engine call allocates its outputs before the enqueue; when the GPU has run dry
  that allocation is exposed (the GPU waits for it);
- pre-alloc on: outputs are allocated right after the enqueue, for the next call, while the GPU runs;
  a shape change or the first call after switching it on forces an allocation before execution again;
- GPU work starts a few microseconds after its enqueue, never before the GPU finished earlier work
  (one GPU, several streams), and the fallback's kernels follow on the default stream.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.capture.records import FIELDS
from trtprof.timeline.schema import COLUMNS

US = 1_000  # ns


def timeline(n: int = 200, *, prealloc=None, shapes=None, gpu: bool = True, seed: int = 0,
             model: str = "model0", engines=("_run_on_acc_0", "_run_on_acc_2"),
             fallback: str = "_run_on_gpu_1", pid: int = 4242, t0: int = 10**12,
             alloc_us: float = 40.0, noise: float = 0.12, exclude_flip: bool = True) -> pd.DataFrame:
    """A timeline of `n` inferences of engine -> fallback -> engine (more engines: `engines` and a
    tuple of fallbacks, one between each two engines).

    prealloc: bool per inference (default: off for the first half, on for the second);
    shapes: input shape string per inference (default "(8,128)" throughout).
    """
    rng = np.random.default_rng(seed)
    pre = np.zeros(n, bool) if prealloc is None and n < 2 else (
        np.arange(n) >= n // 2 if prealloc is None else np.broadcast_to(np.asarray(prealloc, bool), (n,)).copy())
    shp = np.array(["(8,128)"] * n, dtype=object) if shapes is None else np.asarray(shapes, dtype=object)
    batch = np.array([int(s.strip("()").split(",")[0]) if s.strip("()").split(",")[0].isdigit() else 8
                      for s in shp], dtype=float)
    changed = np.r_[False, shp[1:] != shp[:-1]]
    flip_on = pre & ~np.r_[False, pre[:-1]]
    if n and pre[0]:
        flip_on[0] = True

    def d(us):  # a duration in ns with per-inference noise
        return (us * US * rng.lognormal(0.0, noise, n)).astype(np.int64)

    rows: list[dict] = []
    z = np.zeros(n, np.int64)

    def add(order, event, sub, kind, runtime, s, e, gs=None, ge=None, mask=None, **cols):
        m = np.ones(n, bool) if mask is None else mask
        rows.append(dict(order=order, event=event, subgraph=sub, subgraph_kind=kind, runtime=runtime,
                         host_start_ns=s, host_end_ns=e, gpu_start_ns=gs, gpu_end_ns=ge, mask=m, **cols))

    t = d(15)  # python before the first engine
    gpu_free = z.copy()
    inf_gpu_start = z.copy()
    order = 0
    out_bytes = (batch * 128 * 768 * 2).astype(np.int64)
    fallbacks = (fallback,) if isinstance(fallback, str) else tuple(fallback)
    stages = []  # engine, fallback, engine, ...: fallbacks between the engines (all when there are enough)
    for i, eng in enumerate(engines):
        stages.append((eng, 60.0 if i % 2 == 0 else 90.0))
        if i < min(len(fallbacks), len(engines) - 1):
            stages.append((fallbacks[i], None))
    for k, (name, gpu_us) in enumerate(stages):
        if gpu_us is None:
            gpu_us = 20.0
            fs = t
            launch = d(35)
            g0 = np.maximum(fs, gpu_free)
            g1 = np.maximum(gpu_free, fs + d(10)) + (d(gpu_us) * batch / 8).astype(np.int64)
            add(order, "fallback", name, "fallback", "torch", fs, fs + launch, g0, g1,
                stream=0, shape_changed=changed)
            order += 1
            gpu_free = g1
            t = fs + launch + d(8)
            continue
        unowned = k == len(stages) - 1  # the last engine's outputs leave the graph
        cs = t
        t = t + d(8)
        before = ~pre | flip_on | changed
        slow = np.where(changed, 3.0, 1.0)  # a new shape: a new cudaMalloc segment, slower
        a_dur = (d(alloc_us) * slow).astype(np.int64)
        a0, a1 = t, t + a_dur
        t = np.where(before, a1, t)
        q = d(20)
        e0, e1 = t, t + q
        g0 = np.maximum(e0 + d(5), gpu_free)
        g1 = g0 + (d(gpu_us) * batch / 8).astype(np.int64)
        gpu_free = g1
        if k == 0:
            inf_gpu_start = np.minimum(g0, d(2))
        t = e1
        after = pre & (unowned | flip_on | changed)
        p_dur = d(alloc_us)
        p0, p1 = t, t + p_dur
        t = np.where(after, p1, t) + d(6)
        outputs = np.where(pre & ~before, "preallocated", "new")
        realloc = pre & before
        stream = 94_000_000_000 + k
        common = dict(call_stream=stream, prealloc=pre, shape_changed=changed, outputs=outputs,
                      reallocated=realloc, exclude=flip_on if exclude_flip else None, bytes_=out_bytes)
        add(order, "call", name, "engine", "python", cs, t, **common)
        add(order + 1, "exec", name, "engine", "python", e0, e1, g0, g1, **common)
        add(order + 2, "alloc", name, "engine", "python", a0, a1, mask=before, alloc_phase="before_exec",
            **{**common, "reallocated": realloc})
        add(order + 3, "alloc", name, "engine", "python", p0, p1, mask=after, alloc_phase="after_enqueue",
            **{**common, "reallocated": np.zeros(n, bool)})
        order += 4
        t = t + d(10)
    host_end = t + d(10)
    add(order, "inference", model, "model", "torch", z, host_end, inf_gpu_start, gpu_free, stream=0)
    span = np.maximum(host_end, gpu_free) + d(30)  # the loop synchronises, then starts the next one
    starts = t0 + np.r_[0, np.cumsum(span)[:-1]] if n else np.zeros(0, np.int64)
    return _assemble(rows, n, starts, shp, model, pid, gpu, changed)


def _assemble(rows, n, starts, shp, model, pid, gpu, changed) -> pd.DataFrame:
    parts = []
    idx = np.arange(n)
    for r in rows:
        m = r["mask"]
        k = int(m.sum())
        if not k:
            continue

        def col(v, default=None, dtype=object):
            if v is None:
                return np.full(k, default, dtype=object)
            v = np.broadcast_to(np.asarray(v), (n,))
            return v[m].astype(dtype) if dtype is not object else v[m].astype(object)

        ev = r["event"]
        part = {
            "_i": idx[m], "_o": np.full(k, r["order"]),
            "pid": np.full(k, pid), "thread": np.full(k, 1), "model": np.full(k, model, dtype=object),
            "inference": idx[m], "subgraph": np.full(k, r["subgraph"], dtype=object),
            "subgraph_kind": np.full(k, r["subgraph_kind"], dtype=object),
            "runtime": np.full(k, r["runtime"], dtype=object), "event": np.full(k, ev, dtype=object),
            "call": idx[m], "host_start_ns": starts[m] + r["host_start_ns"][m],
            "host_end_ns": starts[m] + r["host_end_ns"][m],
            "gpu_start_ns": (starts[m] + r["gpu_start_ns"][m]).astype(object) if gpu and r["gpu_start_ns"] is not None
            else np.full(k, None, dtype=object),
            "gpu_end_ns": (starts[m] + r["gpu_end_ns"][m]).astype(object) if gpu and r["gpu_end_ns"] is not None
            else np.full(k, None, dtype=object),
            "stream": col(r.get("stream", r.get("call_stream")), None) if gpu else np.full(k, None, dtype=object),
            "input_shapes": shp[m],
            "shapes": np.array([s.replace(")", ",768)") for s in shp[m]], dtype=object)
            if ev in ("alloc", "call", "inference", "fallback") else np.full(k, None, dtype=object),
            "bytes": col(r.get("bytes_")) if ev == "alloc" else np.full(k, None, dtype=object),
            "prealloc": col(r.get("prealloc")),
            "alloc_phase": np.full(k, r.get("alloc_phase"), dtype=object),
            "outputs": col(r.get("outputs")) if ev in ("call", "exec") else np.full(k, None, dtype=object),
            "shape_changed": col(r.get("shape_changed")),
            "reallocated": col(r.get("reallocated")),
            "new_segment": np.full(k, None, dtype=object),
            "exclude": col(r.get("exclude")),
            "note": np.full(k, None, dtype=object),
        }
        parts.append(pd.DataFrame(part))
    if not parts:
        df = pd.DataFrame({c: [] for c in FIELDS})
    else:
        df = pd.concat(parts, ignore_index=True).sort_values(["_i", "_o"], kind="stable")
        df = df.drop(columns=["_i", "_o"]).reset_index(drop=True)
    df["seq"] = np.arange(len(df))
    df = df.reindex(columns=list(FIELDS))  # columns it does not simulate (kernels) are null
    for name, (_, dtype, _) in COLUMNS.items():
        df[name] = df[name].astype(dtype)
    return df


def hostile(n: int = 40, name: str = "<script>alert(1)</script>") -> pd.DataFrame:
    """A timeline whose model, subgraph names and shapes are hostile strings."""
    evil = "\"'><img src=x onerror=alert(1)>"
    shapes = ["(8,128)"] * (n // 2) + [f"(4,{evil})"] * (n - n // 2)
    return timeline(n, model=name, engines=(name, evil), fallback=f"</script><b>{evil}", shapes=shapes)


DEFAULTS = dict(pid=1, thread=1, model="m", inference=0, subgraph="_run_on_acc_0", subgraph_kind="engine",
                runtime="python", call=0)


def frame(rows: list[dict]) -> pd.DataFrame:
    """A schema-typed timeline from hand-written rows; unspecified columns are null (or DEFAULTS).
    `gpu=(start, end)` and `host=(start, end)` are shorthands."""
    recs = []
    for i, r in enumerate(rows):
        r = dict(r)
        if "host" in r:
            r["host_start_ns"], r["host_end_ns"] = r.pop("host")
        if "gpu" in r:
            r["gpu_start_ns"], r["gpu_end_ns"] = r.pop("gpu")
        rec = {c: None for c in FIELDS}
        rec.update(DEFAULTS)
        rec.update(seq=i, host_start_ns=0, host_end_ns=0)
        rec.update(r)
        recs.append(rec)
    df = pd.DataFrame(recs, columns=list(FIELDS)) if recs else pd.DataFrame({c: [] for c in FIELDS})
    for name, (_, dtype, _) in COLUMNS.items():
        df[name] = df[name].astype(dtype)
    return df


def write_capture(df: pd.DataFrame, folder, meta: dict | None = None):
    """A capture folder (timeline.parquet + meta.json) holding `df`, as `trtprof report` reads it."""
    import json
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from trtprof.timeline.schema import ARROW_SCHEMA, RULES, SCHEMA_VERSION

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, schema=ARROW_SCHEMA, preserve_index=False), folder / "timeline.parquet")
    full = {"schema_version": SCHEMA_VERSION, "rules": list(RULES), "status": "complete", "rows": len(df)}
    full.update(meta or {})
    (folder / "meta.json").write_text(json.dumps(full))
    return folder
