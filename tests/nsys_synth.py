"""Synthetic Nsight Systems SQLite exports made from a trtprof timeline, and a fake `nsys` executable.

For what the one real export (tests/data/nsys) cannot show: a report that starts late
(`--capture-range=nvtx`), two threads, a report of another run, the C++ runtime's single `exec` range,
and CPU-only end-to-end runs of `trtprof capture --nsys`. Only the tables and columns the importer
reads are made, with the layout of a real export (registered strings in StringIds, globalTid =
pid << 24 | tid, a second NVTX domain using the same names).
"""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trtprof.timeline.nvtx import range_names  # noqa: E402

OFFSET = 123_456_789_000  # host = nsys + OFFSET
PUSH_LAG = {"inference": 30_000, "fallback": 20_000}  # host start after the push (CUDA event recorded first)
POP_LAG = 1_500  # pop after the host end


def gtid(pid: int, tid: int) -> int:
    return (pid << 24) | tid


def _session_start(df) -> int:
    """nsys's session start in UTC, consistent with the capture's clock anchor when the timeline
    carries its metadata (as a real run's is: the wall clocks then agree with the fitted offset)."""
    anchor = (getattr(df, "attrs", {}).get("trtprof") or {}).get("clock_anchor")
    if isinstance(anchor, dict) and {"time_ns", "perf_counter_ns"} <= set(anchor):
        return OFFSET + int(anchor["time_ns"]) - int(anchor["perf_counter_ns"])
    return 1_700_000_000_000_000_000


def build(path, df: pd.DataFrame, *, pid: int = 4242, tids: dict | None = None, keep=None, jitter_ns: int = 0,
          seed: int = 0, enum: bool = True, domain: str = "trtprof") -> Path:
    """Write an export of `df`'s run: an NVTX range per row (C++ runtime: exec only, as trtprof pushes),
    one launch API call and one kernel per exec/fallback row. `keep`: boolean mask of rows whose range
    was recorded; `jitter_ns`: random timing noise (another run)."""
    rng = np.random.default_rng(seed)
    session_start = _session_start(df)
    df = df.sort_values(["host_start_ns", "seq"]).reset_index(drop=True)
    names = range_names(df)
    has_range = ~((df["runtime"] == "cpp") & df["event"].isin(["call", "alloc"]))
    if keep is not None:
        has_range &= np.asarray(keep, bool)
    threads = sorted(df["thread"].unique())
    tids = tids or {t: pid + i for i, t in enumerate(threads)}
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE NVTX_EVENTS (start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL, rangeId INTEGER,
            category INTEGER, color INTEGER, text TEXT, globalTid INTEGER, endGlobalTid INTEGER, textId INTEGER,
            domainId INTEGER);
        CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INTEGER NOT NULL, end INTEGER NOT NULL, eventClass INTEGER,
            globalTid INTEGER, correlationId INTEGER, nameId INTEGER NOT NULL, returnValue INTEGER);
        CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER,
            streamId INTEGER, correlationId INTEGER, globalPid INTEGER, shortName INTEGER);
        CREATE TABLE TARGET_INFO_SESSION_START_TIME (utcEpochNs INTEGER, utcTime TEXT, localTime TEXT);
    """)
    if enum:
        con.execute("CREATE TABLE ENUM_NSYS_EVENT_TYPE (id INTEGER PRIMARY KEY, name TEXT, label TEXT)")
        con.executemany("INSERT INTO ENUM_NSYS_EVENT_TYPE VALUES (?, ?, ?)",
                        [(59, "NvtxPushPopRange", "NvtxPushPopRange"), (75, "NvtxDomainCreate", "NvtxDomainCreate")])
    strings = {n: i + 10 for i, n in enumerate(sorted(set(names)))}
    con.executemany("INSERT INTO StringIds VALUES (?, ?)", [(i, n) for n, i in strings.items()] + [(1, "cuLaunchKernel")])
    t0 = int(df["host_start_ns"].min()) - OFFSET - 1_000_000
    g0 = gtid(pid, tids[threads[0]])
    con.execute("INSERT INTO NVTX_EVENTS (start, eventType, text, globalTid, domainId) VALUES (?, 75, ?, ?, 1)",
                (t0, domain, g0))
    con.execute("INSERT INTO NVTX_EVENTS (start, eventType, text, globalTid, domainId) VALUES (?, 75, 'other', ?, 2)",
                (t0, g0))
    con.execute("INSERT INTO TARGET_INFO_SESSION_START_TIME VALUES (?, '', '')", (session_start,))
    nvtx, api, kern = [], [], []
    corr = 1000
    for i, r in df.iterrows():
        g = gtid(pid, tids[r["thread"]])
        noise = int(rng.integers(-jitter_ns, jitter_ns + 1)) if jitter_ns else 0
        start = int(r["host_start_ns"]) - OFFSET - PUSH_LAG.get(r["event"], 0) + noise
        end = int(r["host_end_ns"]) - OFFSET + POP_LAG + noise
        if has_range[i]:
            nvtx.append((start, end, 59, strings[names[i]], g, 1))
            if i % 7 == 0:  # the same name in another domain: must be ignored
                nvtx.append((start + 10, end - 10, 59, strings[names[i]], g, 2))
        if r["event"] in ("exec", "fallback"):
            corr += 1
            launch = (start + end) // 2
            api.append((launch, launch + 2_000, g, corr, 1))
            if pd.notna(r["gpu_start_ns"]):
                k0, k1 = int(r["gpu_start_ns"]) - OFFSET + 1_000, int(r["gpu_end_ns"]) - OFFSET - 1_000
            else:
                k0, k1 = end + 1_000, end + 5_000
            kern.append((k0, max(k1, k0 + 1), corr, pid << 24))
    con.executemany("INSERT INTO NVTX_EVENTS (start, end, eventType, textId, globalTid, domainId) "
                    "VALUES (?, ?, ?, ?, ?, ?)", nvtx)
    con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME (start, end, globalTid, correlationId, nameId) "
                    "VALUES (?, ?, ?, ?, ?)", api)
    con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL (start, end, correlationId, globalPid) VALUES (?, ?, ?, ?)",
                    kern)
    con.commit()
    con.close()
    return Path(path)


FAKE_NSYS = '''#!{python}
"""Fake nsys: logs its argv, runs `profile`'s application, answers `export` with a synthetic export."""
import json, os, subprocess, sys
sys.path.insert(0, {tests!r})
argv = sys.argv[1:]
with open(os.environ["FAKE_NSYS_LOG"], "a") as f:
    f.write(json.dumps(argv) + "\\n")
VALUED = {{"-t", "--trace", "-o", "--output", "-c", "--capture-range", "-p", "--nvtx-capture",
          "--capture-range-end", "--force-overwrite", "-s", "--sample", "--type"}}
def split(args):
    opts, i = {{}}, 0
    while i < len(args) and args[i].startswith("-"):
        if "=" in args[i]:
            k, v = args[i].split("=", 1); opts[k] = v; i += 1
        elif args[i] in VALUED:
            opts[args[i]] = args[i + 1]; i += 2
        else:
            opts[args[i]] = True; i += 1
    return opts, args[i:]
if argv[0] == "profile":
    opts, app = split(argv[1:])
    rc = subprocess.call(app)
    out = opts.get("-o") or opts.get("--output")
    if os.environ.get("FAKE_NSYS_NO_REPORT") != "1":
        open(out + ".nsys-rep", "w").write("not a real report")
    sys.exit(int(os.environ.get("FAKE_NSYS_RC", rc)))
if argv[0] == "export":
    opts, rest = split(argv[1:])
    rep = rest[0]
    import nsys_synth, trtprof
    nsys_synth.build(opts["-o"], trtprof.load(os.path.dirname(rep)))
    sys.exit(0)
sys.exit(2)
'''


def install_fake_nsys(bin_dir: Path) -> Path:
    """Write the fake `nsys` into bin_dir (put it first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    p = bin_dir / "nsys"
    p.write_text(FAKE_NSYS.format(python=sys.executable, tests=str(Path(__file__).parent)))
    p.chmod(0o755)
    return p
