"""One capture folder per kind of report, for the browser checks (tests/test_report_browser.py): a
single engine, a graph-broken model (>10 subgraphs, shape changes, pre-allocation switched on and off),
kernel activity (kernels.parquet), and an nsys import. Each is written the way the tool writes it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthetic import timeline, write_capture
from trtprof.capture.records import FIELDS
from trtprof.timeline.store import CaptureWriter

ROOT = Path(__file__).resolve().parent.parent
ENGINES = tuple(f"_run_on_acc_{2 * i}" for i in range(12))
FALLBACKS = tuple(f"_run_on_gpu_{2 * i + 1}" for i in range(11))
META = {"command": ["python", "infer.py"], "start_time": "2025-01-01T12:00:00+00:00"}


def single(folder: Path) -> Path:
    """The committed single-engine capture (reports/cases/small-python), as taken on a GPU."""
    import shutil

    src = ROOT / "reports" / "cases" / "small-python"
    folder.mkdir(parents=True)
    for name in ("meta.json", "timeline.parquet"):
        shutil.copy(src / name, folder / name)
    return folder


def broken(folder: Path) -> Path:
    """12 engines and 11 fallbacks; pre-allocation off, on, off, on; a shape change now and then."""
    n = 240
    pre = (np.arange(n) // 60) % 2 == 1
    shapes = ["(4,128)" if i % 37 == 20 else "(8,128)" for i in range(n)]
    df = timeline(n, prealloc=pre, shapes=shapes, engines=ENGINES, fallback=FALLBACKS, seed=5)
    return write_capture(df, folder, META)


def _records(df: pd.DataFrame) -> list[list]:
    return [[None if pd.isna(r[f]) else r[f] for f in FIELDS] for r in df.to_dict("records")]


def with_kernels(folder: Path) -> Path:
    """Engine, fallback, engine with three kernels per GPU range (CUPTI records, attributed by the writer)."""
    df = timeline(150, shapes=["(8,128)"] * 120 + ["(4,128)"] * 30, seed=7)
    w = CaptureWriter(folder, META)
    w.write(_records(df))
    g = df[df["event"].isin(["exec", "fallback"]) & df["gpu_start_ns"].notna()]
    s, e = g["gpu_start_ns"].astype("int64").to_numpy(), g["gpu_end_ns"].astype("int64").to_numpy()
    span = e - s
    starts = np.concatenate([s + span * k // 8 for k in (1, 3, 5)])
    ends = np.concatenate([s + span * k // 8 for k in (2, 4, 7)])
    n = len(starts)
    w.write_kernels({"kind": np.array(["kernel"] * n, dtype=object), "name": np.array(["gemm"] * n, dtype=object),
                     "start_ns": starts, "end_ns": ends, "stream": np.tile(g["stream"].astype("int64").to_numpy(), 3),
                     "correlation": np.arange(n), "device": np.zeros(n, np.int64)})
    w.close()
    return folder


def nsys(folder: Path) -> Path:
    """The synthetic timeline with an Nsight Systems export of the same run, imported."""
    import nsys_synth
    from trtprof.nsys import importer
    from trtprof.timeline.store import load

    write_capture(timeline(80, seed=9), folder, META)
    importer.import_report(folder, nsys_synth.build(folder / "run.sqlite", load(folder)))
    return folder


KINDS = {"single": single, "broken": broken, "kernels": with_kernels, "nsys": nsys}
