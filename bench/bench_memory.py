"""Memory bound of a long capture: record N rows (10 M by default) and report the peak RSS.

Why this path: rows go through the real `Recorder` (records built with `Recorder.new`, safe points
like a model's inference loop, shape formatting, batch drains) into the real `CaptureWriter` (Arrow
IPC spill while recording, then `close()` streaming the spill into parquet). Only the hooks and the
GPU are left out (gpu=None), so it runs on a CPU and reaches 10 M rows in minutes. If memory is
bounded, the peak RSS does not grow with N: compare `--rows 1000000` with the default.

    python bench/bench_memory.py                      # 10 M rows, a temporary folder
    python bench/bench_memory.py --rows 1000000 --out /tmp/cap --keep

Peak RSS is `resource.getrusage(RUSAGE_SELF).ru_maxrss`; the baseline is the RSS after the imports
(trtprof imports torch), so `peak - baseline` is what recording and closing cost.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.parquet as pq  # noqa: E402

from trtprof.capture.recorder import Recorder  # noqa: E402
from trtprof.timeline import store  # noqa: E402
from trtprof.timeline.store import CaptureWriter  # noqa: E402

MB = 1024 * 1024
# One inference of a partitioned model (engine -> fallback -> engine), as the hooks record it.
SHAPE = ((8, 128), (8, 128))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def record(rec: Recorder, rows: int, report_every: int) -> list[tuple[int, float]]:
    """Feed `rows` records, 8 per inference, with a safe point after each inference."""
    t, i, inf = 10**12, 0, 0
    samples = []
    new, add, safe = rec.new, rec.add, rec.safe_point
    while i < rows:
        for sub, call in (("_run_on_acc_0", inf), ("_run_on_acc_2", inf)):
            add(new("alloc", model="model0", inference=inf, subgraph=sub, subgraph_kind="engine", runtime="python",
                    call=call, host_start_ns=t, host_end_ns=t + 40_000, shapes=SHAPE[:1], bytes=1_572_864,
                    prealloc=True, alloc_phase="after_enqueue"))
            add(new("exec", model="model0", inference=inf, subgraph=sub, subgraph_kind="engine", runtime="python",
                    call=call, host_start_ns=t + 50_000, host_end_ns=t + 60_000, stream=7, input_shapes=SHAPE,
                    outputs="preallocated", prealloc=True))
            add(new("call", model="model0", inference=inf, subgraph=sub, subgraph_kind="engine", runtime="python",
                    call=call, host_start_ns=t, host_end_ns=t + 90_000, input_shapes=SHAPE, shapes=SHAPE[:1],
                    outputs="preallocated", prealloc=True, shape_changed=False, reallocated=False))
            t += 100_000
        add(new("fallback", model="model0", inference=inf, subgraph="_run_on_gpu_1", subgraph_kind="fallback",
                runtime="torch", call=inf, host_start_ns=t, host_end_ns=t + 20_000, input_shapes=SHAPE[:1]))
        add(new("inference", model="model0", inference=inf, subgraph="model0", subgraph_kind="model",
                runtime="torch", call=inf, host_start_ns=t - 200_000, host_end_ns=t + 30_000, input_shapes=SHAPE[:1]))
        safe()
        i += 8
        inf += 1
        t += 50_000
        if i % report_every < 8:
            samples.append((i, rss_mb()))
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=4096, help="rows per spilled batch (the recorder's default)")
    ap.add_argument("--out", default=None, help="folder to write the capture in (kept; default: a temporary "
                                                "folder, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary capture folder")
    a = ap.parse_args()
    if a.rows <= 0 or a.rows % 8:
        ap.error("--rows must be a positive multiple of 8 (one inference records 8 rows)")

    tmp = None if a.out else tempfile.mkdtemp(prefix="trtprof-bench-")
    folder = Path(a.out or tmp) / "cap"
    base = rss_mb()
    writer = CaptureWriter(folder, {"command": sys.argv, "bench": "memory"})
    rec = Recorder(writer.write, gpu=None, marks=None, batch=a.batch)
    t0 = time.perf_counter()
    samples = record(rec, a.rows, max(a.rows // 5, 8))
    rec.drain(wait=True)
    t1 = time.perf_counter()
    peak_rec = peak_mb()
    spill_mb = (folder / store.SPILL).stat().st_size / MB
    writer.close()
    t2 = time.perf_counter()
    peak = peak_mb()
    meta = pq.ParquetFile(folder / store.TIMELINE).metadata
    rows = meta.num_rows

    print(f"rows recorded      {rec.rows:,} (recorder) / {writer.rows:,} (writer) / {rows:,} in timeline.parquet "
          f"({meta.num_row_groups} row groups)")
    print(f"time               record {t1 - t0:.1f} s ({rec.rows / (t1 - t0) / 1e6:.2f} M rows/s), "
          f"close (spill -> parquet) {t2 - t1:.1f} s, total {t2 - t0:.1f} s")
    print(f"files              spill {spill_mb:.0f} MB, parquet {(folder / store.TIMELINE).stat().st_size / MB:.0f} MB")
    print("rss while recording " + ", ".join(f"{n / 1e6:.1f}M rows: {m:.0f} MB" for n, m in samples))
    print(f"baseline rss       {base:.0f} MB (after imports: trtprof imports torch)")
    print(f"peak rss           {peak:.0f} MB (recording {peak_rec:.0f} MB); above baseline {peak - base:.0f} MB")
    print(f"machine            {os.cpu_count()} cores, python {sys.version.split()[0]}")
    ok = rows == a.rows == rec.rows
    if tmp and not a.keep:
        shutil.rmtree(tmp)
    else:
        print(f"capture kept       {folder}")
    if not ok:
        print(f"FAIL: expected {a.rows:,} rows", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
