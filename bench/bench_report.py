#!/usr/bin/env python3
"""Benchmark: render the HTML report of a synthetic 1,000,000-row capture; print time and size.

The target (issue 5) is <= 10 s and <= 15 MB. The capture is written as a real capture folder
(timeline.parquet + meta.json) and timed in two parts: loading it, and analysing + rendering +
writing the report (what `trtprof report` does after loading).

    python3 bench/bench_report.py [--rows 1000000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "support"), str(ROOT)]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import synthetic  # noqa: E402
from trtprof.timeline import schema  # noqa: E402
from trtprof.timeline.store import load_capture  # noqa: E402
from trtprof.cli.common import write_report  # noqa: E402

ROWS_PER_INFERENCE = 7.5  # about: engine -> fallback -> engine, half the run with pre-allocated outputs


def build(rows: int, folder: Path) -> int:
    n = int(rows / ROWS_PER_INFERENCE)
    rng = np.random.default_rng(0)
    shapes = np.where(rng.random(n) < 0.03, "(4,128)", "(8,128)")  # a few shape changes
    df = synthetic.timeline(n, shapes=list(shapes), seed=1).head(rows)  # the last inference may be cut
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, schema=schema.ARROW_SCHEMA, preserve_index=False),
                   folder / "timeline.parquet", compression="zstd")
    meta = {"schema_version": schema.SCHEMA_VERSION, "status": "complete", "rows": len(df),
            "command": ["python", "bench.py"], "environment": {"gpu": "synthetic"}}
    (folder / "meta.json").write_text(json.dumps(meta))
    return len(df)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, default=None, help="keep the capture and report in this folder")
    a = ap.parse_args()
    tmp = None if a.keep else tempfile.TemporaryDirectory()
    folder = a.keep or Path(tmp.name) / "capture"
    t = time.perf_counter()
    rows = build(a.rows, folder)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    cap = load_capture(folder)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    path = write_report(cap, folder / "report.html")
    t_render = time.perf_counter() - t
    size = os.path.getsize(path)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"rows: {rows:,} ({len(cap.timeline['inference'].unique()):,} inferences); built in {t_build:.1f} s")
    print(f"load capture: {t_load:.2f} s")
    print(f"analyse + render + write report: {t_render:.2f} s")
    print(f"total (load + report): {t_load + t_render:.2f} s")
    print(f"report size: {size / 1e6:.2f} MB ({size:,} bytes)")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
