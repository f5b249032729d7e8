"""What a trtprof row looks like, for every generator here: rows declared once per kind of row and
vectorised across inferences, turned into a schema-typed timeline frame; hand-written rows the same way.

A row is declared by `Rows.add` as a template over the n inferences of one thread: its host range and
column values are arrays (one value per inference, host times relative to the inference's start), a
mask says in which inferences it happens, and its GPU range names two items of the GPU queues
(timing.py): it starts when the first starts and ends when the second ends.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.capture.records import FIELDS
from trtprof.timeline.schema import COLUMNS

class Rows:
    """The row templates of n inferences, in recording order within an inference."""

    def __init__(self, n: int):
        self.n, self.templates = n, []

    def add(self, event, sub, kind, runtime, s, e, gpu=None, mask=None, **cols) -> int:
        """Declare a row; returns its order within the inference. `gpu`: (start item, end item) or None."""
        self.templates.append(dict(order=len(self.templates), event=event, subgraph=sub, subgraph_kind=kind,
                                   runtime=runtime, host_start_ns=s, host_end_ns=e, gpu=gpu,
                                   mask=np.ones(self.n, bool) if mask is None else mask, **cols))
        return len(self.templates) - 1

    def assemble(self, starts, gpu_start, gpu_end, shapes, model, pid, thread, with_gpu=True):
        """The rows as a typed frame, inference by inference (each shifted by its start time) and by order
        within one; `gpu_start`/`gpu_end`: (n, items) arrays of GPU item times, relative like the host times.
        Also returns each row's (inference, order), so ground truth kept per template can be found by seq."""
        n, idx, parts = self.n, np.arange(self.n), []
        for r in self.templates:
            m = r["mask"]
            k = int(m.sum())
            if not k:
                continue

            def col(name, applies=True):
                v = r.get(name)
                if v is None or not applies:
                    return np.full(k, None, dtype=object)
                return np.broadcast_to(np.asarray(v), (n,))[m].astype(object)

            def gpu(times, item):
                if not with_gpu or r["gpu"] is None:
                    return np.full(k, None, dtype=object)
                return (starts[m] + times[m, r["gpu"][item]]).astype(object)

            ev = r["event"]
            parts.append(pd.DataFrame({
                "_i": idx[m], "_o": np.full(k, r["order"]),
                "pid": np.full(k, pid), "thread": np.full(k, thread), "model": np.full(k, model, dtype=object),
                "inference": idx[m], "subgraph": np.full(k, r["subgraph"], dtype=object),
                "subgraph_kind": np.full(k, r["subgraph_kind"], dtype=object),
                "runtime": np.full(k, r["runtime"], dtype=object), "event": np.full(k, ev, dtype=object),
                "call": idx[m], "host_start_ns": starts[m] + r["host_start_ns"][m],
                "host_end_ns": starts[m] + r["host_end_ns"][m],
                "gpu_start_ns": gpu(gpu_start, 0), "gpu_end_ns": gpu(gpu_end, 1),
                "stream": col("stream", with_gpu),
                "input_shapes": shapes[m],
                "shapes": np.array([s.replace(")", ",768)") for s in shapes[m]], dtype=object)
                if ev in ("alloc", "call", "inference", "fallback") else np.full(k, None, dtype=object),
                "bytes": col("bytes", ev == "alloc"), "prealloc": col("prealloc"),
                "alloc_phase": np.full(k, r.get("alloc_phase"), dtype=object),
                "outputs": col("outputs", ev in ("call", "exec")), "shape_changed": col("shape_changed"),
                "reallocated": col("reallocated"), "new_segment": np.full(k, None, dtype=object),
                "exclude": col("exclude"), "note": np.full(k, None, dtype=object),
            }))
        if not parts:
            return typed(pd.DataFrame({c: [] for c in FIELDS})), (np.zeros(0, int), np.zeros(0, int))
        df = pd.concat(parts, ignore_index=True).sort_values(["_i", "_o"], kind="stable")
        keys = (df["_i"].to_numpy(), df["_o"].to_numpy())
        df = df.drop(columns=["_i", "_o"]).reset_index(drop=True)
        df["seq"] = np.arange(len(df))
        return typed(df.reindex(columns=list(FIELDS))), keys  # columns not simulated (kernels) are null


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with the timeline schema's pandas dtypes (what trtprof.load gives)."""
    for name, (_, dtype, _) in COLUMNS.items():
        df[name] = df[name].astype(dtype)
    return df


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
    return typed(pd.DataFrame(recs, columns=list(FIELDS)) if recs else pd.DataFrame({c: [] for c in FIELDS}))


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
