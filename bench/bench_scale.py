#!/usr/bin/env python3
"""Benchmark: trtprof commands on large captures, each in its own process: wall time and peak RSS.

Captures of N rows are generated in the capture folder format one row group at a time (the
simulator of support/synthetic/, shifted in time, inference, call and seq per group), so making
a 100 M-row capture needs the memory of one group. Each command then runs as a subprocess; its peak
RSS is the child's own ru_maxrss (os.wait4), its wall time the parent's clock. `--baseline REV` runs
the same commands with the trtprof of git revision REV (extracted to a temporary folder) beside
the working tree's, for the sizes up to `--baseline-max`.

    python3 bench/bench_scale.py --rows 1000000,10000000 --commands report,perfetto,csv,load
    python3 bench/bench_scale.py --rows 1000000 --commands perfetto --baseline f315613 --json out.json

`--ranks N` makes each size a folder of N ranks (DIR/rank0 ... as `torchrun ... -m trtprof capture -o DIR`
writes it, each rank of that many rows with its own seed and the rank block of meta.json), on which
the commands run as on one capture (`trtprof report DIR`: the merged report):

    python3 bench/bench_scale.py --rows 12500000 --ranks 8 --commands report --keep /work/scale-data

Captures are reused from `--keep` (make them once: 100 M rows take about 20 minutes and 2.1 GB of
disk). The machine line gives the CPU, memory and date, and each run the load average before and
after it: on a shared machine wall time follows the load, peak RSS does not.

Commands: report (`trtprof report -q`: past 1 Mi rows analysed chunk by chunk), compare (`trtprof compare
CAP CAP -q`, the capture against itself, page written; past 1 Mi rows read chunk by chunk), perfetto / csv (`trtprof export -q`), load
(`trtprof.load(path, columns=..., filter=...)` of the exec rows' GPU times), lazy (a lazy
timeline's batches summed column by column).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "support"), str(ROOT)]

GROUP_INFERENCES = 16_000  # about 120 k rows per row group, like the capture writer's 128 k

LOAD = ("import trtprof, pyarrow.compute as pc, sys; "
        "df = trtprof.load(sys.argv[1], columns=['model', 'subgraph', 'gpu_start_ns', 'gpu_end_ns'], "
        "filter=pc.field('event') == 'exec'); "
        "print(len(df), float((df.gpu_end_ns - df.gpu_start_ns).median()))")
LAZY = ("import trtprof, sys; tl = trtprof.load(sys.argv[1], lazy=True); "
        "n = s = 0\nfor t in tl.batches(['host_start_ns', 'host_end_ns']):\n"
        "    n += t.num_rows; s += int((t['host_end_ns'].to_numpy() - t['host_start_ns'].to_numpy()).sum())\n"
        "print(n, s)")


def generate(rows: int, folder: Path, seed: int = 0, meta: dict | None = None) -> int:
    """A capture of about `rows` rows (whole inferences), written row group by row group (`seed`:
    the first group's seed, the next ones counting up from it; `meta`: added to meta.json)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import synthetic
    from trtprof.timeline import schema

    folder.mkdir(parents=True, exist_ok=True)
    written, g, t0 = 0, 0, 10**12
    with pq.ParquetWriter(folder / "timeline.parquet", schema.ARROW_SCHEMA, compression="zstd") as out:
        while written < rows:
            rng = np.random.default_rng(seed + g)
            shapes = list(np.where(rng.random(GROUP_INFERENCES) < 0.03, "(4,128)", "(8,128)"))
            df = synthetic.timeline(GROUP_INFERENCES, shapes=shapes, seed=seed + g, t0=t0)
            df = df.head(rows - written)
            for c in ("inference", "call"):
                df[c] = df[c] + g * GROUP_INFERENCES
            df["seq"] = df["seq"] + written
            t0 = int(df["host_end_ns"].max()) + 1_000_000
            out.write_table(pa.Table.from_pandas(df, schema=schema.ARROW_SCHEMA, preserve_index=False))
            written += len(df)
            g += 1
    meta = {"schema_version": schema.SCHEMA_VERSION, "rules": list(schema.RULES), "status": "complete",
            "rows": written, "command": ["python", "bench/bench_scale.py"], "environment": {"gpu": "synthetic"},
            **(meta or {})}
    (folder / "meta.json").write_text(json.dumps(meta))
    return written


def generate_ranks(n: int, rows: int, folder: Path) -> int:
    """A folder of `n` ranks of about `rows` rows each: DIR/rankK a capture of its own seed (the
    ranks' latencies differ, so the straggler view has spreads to find), with the rank block
    `timeline.ranks.load_ranks` reads (rank, world size, host, one boot's clock reference: no shift).
    Returns the rows of all ranks."""
    clock = {"boot_id": "bench-boot", "perf_counter_ns": 10**12, "time_ns": 1_700_000_000 * 10**9, "bracket_ns": 0}
    total = 0
    for r in range(n):
        info = {"rank": r, "world_size": n, "local_rank": r, "local_world_size": n, "host": "bench",
                "launcher": "torchrun", "clock": clock, "device": {"index": r, "name": "synthetic"}}
        total += generate(rows, folder / f"rank{r}", seed=1_000_003 * r, meta={"rank": info, "pid": 4242})
    (folder / "meta.ranks.json").write_text(json.dumps({"rows": total, "ranks": n}))
    return total


def argv(command: str, folder: Path, out: Path) -> list[str]:
    py = sys.executable
    return {"report": [py, "-m", "trtprof", "report", str(folder), "-o", str(out / "report.html"), "-q"],
            "perfetto": [py, "-m", "trtprof", "export", str(folder), "-o", str(out / "trace.json"), "-q"],
            "csv": [py, "-m", "trtprof", "export", str(folder), "-f", "csv", "-o", str(out / "t.csv"), "-q"],
            # the capture against itself: both sides read in full, the page written
            "compare": [py, "-m", "trtprof", "compare", str(folder), str(folder), "-o", str(out / "compare.html"), "-q"],
            "load": [py, "-c", LOAD, str(folder)], "lazy": [py, "-c", LAZY, str(folder)]}[command]


def measure(cmd: list[str], pythonpath: Path, timeout: float) -> dict:
    """Wall time and peak RSS (MB) of one child process; rc, and the last line it printed."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=tempfile.gettempdir())  # not the checkout: python -m and -c put the cwd first
    deadline = t + timeout
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, usage = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t
    text = p.stdout.read() if p.stdout else ""
    rc = os.waitstatus_to_exitcode(status)
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "rc": rc,
            "out": (text.strip().splitlines() or [""])[-1][:200]}


def baseline_tree(rev: str, where: Path) -> Path:
    """The trtprof package of git revision `rev`, extracted under `where`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "trtprof"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def machine() -> str:
    """The CPU, its cores and memory, and the date: what the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    return (f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000", help="comma-separated capture sizes")
    ap.add_argument("--commands", default="report,perfetto,csv,load,lazy")
    ap.add_argument("--baseline", default=None, help="git revision to time beside the working tree")
    ap.add_argument("--baseline-max", type=int, default=1_000_000, help="largest size the baseline runs on")
    ap.add_argument("--baseline-commands", default="report,perfetto,csv",
                    help="commands the baseline runs (load and lazy need this trtprof)")
    ap.add_argument("--ranks", type=int, default=0, help="each size a folder of this many ranks of that size")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep the captures in (reused if there)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="trtprof-scale-"))
    if a.baseline:
        (tmp / "base").mkdir()
    base = baseline_tree(a.baseline, tmp / "base") if a.baseline else None
    results = []
    print(f"machine: {machine()}")
    try:
        for rows in (int(r) for r in a.rows.split(",")):
            folder = (a.keep or tmp) / (f"ranks{a.ranks}-{rows}" if a.ranks else f"cap-{rows}")
            made_file = folder / ("meta.ranks.json" if a.ranks else "meta.json")  # written last: a finished folder
            t = time.perf_counter()
            made = json.loads(made_file.read_text())["rows"] if made_file.is_file() \
                else generate_ranks(a.ranks, rows, folder) if a.ranks else generate(rows, folder)
            size = sum(p.stat().st_size for p in folder.rglob("timeline.parquet")) / 1e6
            what = f" in {a.ranks} ranks" if a.ranks else ""
            print(f"{made:,} rows{what}, timeline.parquet {size:.0f} MB (made in {time.perf_counter() - t:.0f} s)")
            for command in a.commands.split(","):
                old = base and rows <= a.baseline_max and command in a.baseline_commands.split(",")
                trees = [("working tree", ROOT)] + ([(a.baseline, base)] if old else [])
                for label, tree in trees:
                    out = tmp / "out"
                    out.mkdir(exist_ok=True)
                    load = os.getloadavg()[0]
                    r = measure(argv(command, folder, out), tree, a.timeout)
                    shutil.rmtree(out)
                    # the load average before and after: on a shared machine wall time depends on it
                    r.update(rows=made, command=command, trtprof=label,
                             load=[round(load, 1), round(os.getloadavg()[0], 1)])
                    results.append(r)
                    print(f"  {command:9s} {label:14s} {r['wall_s']:8.1f} s {r['peak_rss_mb']:8.0f} MB  rc {r['rc']}  "
                          f"load {r['load'][0]}-{r['load'][1]}"
                          + (f"  ({r['out']})" if r["rc"] else ""), flush=True)
            if a.keep is None:
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
