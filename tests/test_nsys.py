"""Nsight Systems import: a real export from the H100 joined to the trtprof capture of the same process
(tests/data/nsys), synthetic exports for what that one cannot show, and the CLI end to end.

Figures measured on the real data (two_engines.py, Python runtime, 12 inferences, 96 rows), which the
tolerances below are built on:
- every row pairs with its NVTX range; start differences (call/alloc/exec) MAD 0.17 us, max 2.2 us;
  nsys's pop comes 1.5 us after trtprof's host end (MAD 0.2 us); the fitted offset is 2.0 us from the
  one implied by the two wall-clock anchors (nsys session start in UTC, trtprof's time_ns anchor);
- one kernel per exec and per fallback call, 3 per inference, none in an allocation;
- the nsys kernel interval lies inside the CUDA-event interval: the start event precedes the first
  kernel by 84-3847 us (exec) and 52-10030 us (fallback; the first calls include warm-up), the end
  event follows the last kernel by 1.6-134 us.
  The error budget is the CUDA-event anchor (meta gpu_anchor_error_ns, 14.5 us here) plus the
  offset's spread, so containment is checked with that tolerance. The durations do not agree on this
  workload: a 2.4 us kernel inside a ~130 us event interval (the GPU waits for the enqueue).
"""
from __future__ import annotations

import json
import lzma
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import trtprof
from trtprof.errors import ExitCode, NsysError, TrtprofError
from trtprof.nsys import importer
from trtprof.record import under_nsys
from trtprof.nsys import join as an
from trtprof.nsys import reader as model, store as nsys_store

sys.path.insert(0, str(Path(__file__).parent))
import nsys_synth  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "nsys"
EVENTS = ("exec", "fallback", "inference", "call", "alloc")


@pytest.fixture(scope="module")
def real_sqlite(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nsys") / "two_engines.sqlite"
    out.write_bytes(lzma.decompress((DATA / "two_engines.sqlite.xz").read_bytes()))
    return out


@pytest.fixture(scope="module")
def real(real_sqlite):
    cap = trtprof.load_capture(DATA / "two_engines_capture")
    trace = model.read_sqlite(real_sqlite)
    return cap, trace, an.join(cap.timeline, trace, cap.meta)


@pytest.fixture
def capture_copy(tmp_path) -> Path:
    dst = tmp_path / "cap"
    shutil.copytree(DATA / "two_engines_capture", dst)
    return dst


def _cli(*args, env=None, cwd=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "trtprof", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def _one_line_error(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trtprof: "), r.stderr
    assert "Traceback" not in r.stderr


# -- the real export ------------------------------------------------------------------------------------
def test_reader_finds_the_trtprof_domain_only(real):
    cap, trace, _ = real
    # the export also holds myelin-exec and TensorRT domains; only trtprof's push/pop ranges are read
    assert set(trace.ranges["pid"]) == {cap.meta["pid"]}
    expected = set(an.range_names(cap.timeline))
    assert set(trace.ranges["name"]) == expected
    assert len(trace.ranges) == len(cap.timeline)
    assert set(trace.activity["kind"]) <= {"kernel", "memcpy", "memset"}


def test_every_row_pairs_with_its_range(real):
    cap, trace, j = real
    s = j.summary
    df = cap.timeline.merge(j.rows, on="seq")
    for ev in EVENTS:
        rows = df[df["event"] == ev]
        assert len(rows) and (rows["nsys_match"] == "nvtx").all(), ev
    assert s["matched_nvtx"] == len(cap.timeline) and s["unmatched"] == 0 and s["nsys_ranges_unmatched"] == 0
    # pairing is one-to-one and by name: the range's host-clock start is the row's within microseconds
    # for rows that read the clock right after the push
    align = df[df["event"].isin(an.ALIGN_EVENTS)]
    d = (align["host_start_ns"] - align["nsys_range_start_ns"]).astype(float).abs()
    assert d.max() < 5_000, d.max()


def test_clock_offset_is_consistent(real):
    cap, _, j = real
    c, sp, ep = j.summary["clock"], j.summary["start_spread"], j.summary["end_spread"]
    assert sp["mad_ns"] < 1_000 and sp["max_ns"] < 5_000, sp
    assert ep["mad_ns"] < 1_000 and -5_000 < ep["median_ns"] < 0, ep  # the pop follows the host end
    # independent check through the two wall clocks (nsys session start in UTC, trtprof's anchor)
    assert c["utc_check_us"] is not None and abs(c["utc_check_us"]) < 50, c
    # inference and fallback rows read the host clock after recording a CUDA event: they lag the push
    lag = j.summary["start_lag_by_event_ns"]
    assert lag["inference"] > 10 * sp["max_ns"] and lag["fallback"] > 10 * sp["max_ns"]


def test_kernels_per_row(real):
    cap, _, j = real
    df = cap.timeline.merge(j.rows, on="seq")
    for ev in ("exec", "fallback"):
        assert (df.loc[df["event"] == ev, "nsys_kernel_count"] > 0).all(), ev
    assert (df.loc[df["event"] == "alloc", "nsys_kernel_count"] == 0).all()
    # an inference holds exactly the kernels of its engines and fallback; a Python call those of its exec
    inner = df[df["event"].isin(["exec", "fallback"])].groupby("inference")[["nsys_kernel_count", "nsys_kernel_ns"]].sum()
    inf = df[df["event"] == "inference"].set_index("inference")[["nsys_kernel_count", "nsys_kernel_ns"]]
    pd.testing.assert_frame_equal(inf.sort_index().astype("int64"), inner.sort_index().astype("int64"))
    calls = df[df["event"] == "call"].set_index(["subgraph", "call"])["nsys_kernel_ns"]
    execs = df[df["event"] == "exec"].set_index(["subgraph", "call"])["nsys_kernel_ns"]
    assert calls.sort_index().tolist() == execs.sort_index().tolist()
    busy = df["nsys_busy_ns"].dropna().astype(float)
    assert (busy <= df.loc[busy.index, "nsys_kernel_ns"].astype(float) + df.loc[busy.index, "nsys_copy_ns"].astype(float)).all()


@pytest.mark.parametrize("event", ["exec", "fallback"])
def test_kernel_interval_inside_cuda_event_interval(real, event):
    cap, _, j = real
    df = cap.timeline.merge(j.rows, on="seq")
    rows = df[df["event"] == event]
    tol = cap.meta["gpu_anchor_error_ns"] + 3 * j.summary["start_spread"]["mad_ns"]
    lead = (rows["nsys_gpu_start_ns"] - rows["gpu_start_ns"]).astype(float)
    tail = (rows["gpu_end_ns"] - rows["nsys_gpu_end_ns"]).astype(float)
    assert lead.notna().all() and tail.notna().all()
    assert (lead >= -tol).all() and (tail >= -tol).all(), (lead.min(), tail.min(), tol)
    # and they are the same calls: the kernel interval is closer to its own event interval than to
    # the neighbouring call's (inferences are > 500 us apart, the tails here < 150 us)
    assert tail.max() < 200_000


def test_comparison_per_subgraph(real):
    cap, _, j = real
    cmp_ = an.compare(cap.timeline, j.rows)
    subs = set(cap.timeline["subgraph"])
    assert set(cmp_["subgraph"]) == subs
    assert (cmp_["busy_us"] > 0).all() and (cmp_["busy_us"] <= cmp_["span_us"] + 1e-9).all()
    # the CUDA-event interval brackets the kernels: never shorter than their span
    assert (cmp_["event_us"] >= cmp_["span_us"]).all()
    pct = (cmp_["event_us"] - cmp_["busy_us"]) / cmp_["busy_us"] * 100
    np.testing.assert_allclose(cmp_["diff_busy_pct"], pct)
    excluded = cap.timeline["exclude"].fillna(False).astype(bool)
    eng = cap.timeline[(cap.timeline["event"] == "exec") & ~excluded]
    assert cmp_.loc[cmp_["kind"] == "engine", "calls"].sum() == len(eng)


# -- synthetic exports -----------------------------------------------------------------------------------
def _cpu_like(n_inf=20, threads=(1,), runtime="python", seed=0):
    """A timeline shaped like a real capture (engine call/alloc/exec, fallback, inference), with jitter."""
    rng = np.random.default_rng(seed)
    rows, seq = [], 0
    t = 1_000_000_000
    for th in threads:
        for i in range(n_inf):
            t += int(rng.integers(200_000, 400_000))
            i0 = t
            items = []
            for sg, kind in (("_run_on_acc_0", "engine"), ("_run_on_gpu_1", "fallback"), ("_run_on_acc_2", "engine")):
                t += int(rng.integers(5_000, 20_000))
                if kind == "fallback":
                    items.append(dict(subgraph=sg, subgraph_kind=kind, event="fallback", runtime="torch",
                                      host_start_ns=t, host_end_ns=t + 40_000, gpu_start_ns=t, gpu_end_ns=t + 45_000))
                    t += 45_000
                    continue
                c0 = t
                if runtime == "python":
                    items.append(dict(subgraph=sg, subgraph_kind=kind, event="alloc", runtime=runtime, alloc_phase="before_exec",
                                      host_start_ns=t + 5_000, host_end_ns=t + 25_000))
                e0 = t + 30_000 + int(rng.integers(0, 5_000))
                items.append(dict(subgraph=sg, subgraph_kind=kind, event="exec", runtime=runtime, host_start_ns=e0,
                                  host_end_ns=e0 + 100_000, gpu_start_ns=e0 - 5_000, gpu_end_ns=e0 + 130_000))
                t = e0 + 110_000
                items.append(dict(subgraph=sg, subgraph_kind=kind, event="call", runtime=runtime,
                                  host_start_ns=c0 if runtime == "python" else e0, host_end_ns=t if runtime == "python" else e0 + 100_000))
            items.append(dict(subgraph="model0", subgraph_kind="model", event="inference", runtime="torch",
                              host_start_ns=i0, host_end_ns=t + 2_000, gpu_start_ns=i0, gpu_end_ns=t + 5_000))
            for it in items:
                rows.append(dict(seq=seq, thread=th, model="model0", inference=i, call=i, exclude=False, **it))
                seq += 1
        t += 137_000
    df = pd.DataFrame(rows)
    for c in ("gpu_start_ns", "gpu_end_ns"):
        df[c] = df[c].astype("Int64") if c in df else pd.NA
    if "alloc_phase" not in df:
        df["alloc_phase"] = pd.NA
    return df


def test_synthetic_round_trip(tmp_path):
    df = _cpu_like()
    j = an.join(df, model.read_sqlite(nsys_synth.build(tmp_path / "s.sqlite", df)))
    assert j.summary["matched_nvtx"] == len(df)
    assert j.clock.offset_ns == pytest.approx(nsys_synth.OFFSET, abs=1)
    m = df.merge(j.rows, on="seq")
    ex = m[m["event"] == "exec"]
    assert (ex["nsys_gpu_start_ns"] == ex["gpu_start_ns"] + 1_000).all()
    assert (ex["nsys_gpu_end_ns"] == ex["gpu_end_ns"] - 1_000).all()


def test_enum_table_absent_uses_known_ids(tmp_path):
    df = _cpu_like(5)
    j = an.join(df, model.read_sqlite(nsys_synth.build(tmp_path / "s.sqlite", df, enum=False)))
    assert j.summary["matched_nvtx"] == len(df)


def test_report_that_starts_late(tmp_path):
    """--capture-range=nvtx: nsys records only from some point on; those rows pair with the right ranges."""
    df = _cpu_like(30)
    order = df.sort_values(["host_start_ns", "seq"])
    cut = order["host_start_ns"].iloc[int(len(order) * 0.4)]
    keep = (df.sort_values(["host_start_ns", "seq"])["host_start_ns"] >= cut).to_numpy()
    j = an.join(df, model.read_sqlite(nsys_synth.build(tmp_path / "s.sqlite", df, keep=keep)))
    m = df.merge(j.rows, on="seq")
    late = m["host_start_ns"] >= cut
    assert (m.loc[late, "nsys_match"] == "nvtx").all()
    assert m.loc[~late, "nsys_match"].isna().all()
    ok = m[late & m["event"].isin(an.ALIGN_EVENTS)]
    assert ((ok["host_start_ns"] - ok["nsys_range_start_ns"]).abs() <= 1).all()  # the right occurrence


def test_two_threads_pair_with_their_own(tmp_path):
    df = _cpu_like(15, threads=(111, 222))
    j = an.join(df, model.read_sqlite(nsys_synth.build(tmp_path / "s.sqlite", df, tids={111: 501, 222: 502})))
    pairs = {t["thread"]: t["nsys_tid"] for t in j.summary["threads"]}
    assert pairs == {111: 501, 222: 502}
    assert j.summary["matched_nvtx"] == len(df)


def test_cpp_runtime_rows_without_a_range_use_their_interval(tmp_path):
    df = _cpu_like(10, runtime="cpp")
    j = an.join(df, model.read_sqlite(nsys_synth.build(tmp_path / "s.sqlite", df)))
    m = df.merge(j.rows, on="seq")
    calls = m[(m["event"] == "call") & (m["runtime"] == "cpp")]
    assert (calls["nsys_match"] == "window").all()
    ex = m[m["event"] == "exec"].set_index(["subgraph", "call"])["nsys_kernel_count"]
    assert (ex > 0).all()
    assert calls.set_index(["subgraph", "call"])["nsys_kernel_count"].sort_index().tolist() == ex.sort_index().tolist()


def test_report_of_another_run_is_refused(tmp_path):
    df = _cpu_like(20)
    p = nsys_synth.build(tmp_path / "s.sqlite", df, jitter_ns=150_000, seed=3)
    with pytest.raises(NsysError, match="do not line up|lines up"):
        an.join(df, model.read_sqlite(p))


# -- errors -------------------------------------------------------------------------------------------------
def test_reader_errors(tmp_path):
    with pytest.raises(NsysError, match="no nsys report"):
        model.read_sqlite(tmp_path / "missing.sqlite")
    (tmp_path / "text.sqlite").write_text("hello")
    with pytest.raises(NsysError, match="not an SQLite file"):
        model.read_sqlite(tmp_path / "text.sqlite")
    sqlite3.connect(tmp_path / "empty.sqlite").execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(NsysError, match="no NVTX_EVENTS"):
        model.read_sqlite(tmp_path / "empty.sqlite")
    df = _cpu_like(3)
    with pytest.raises(NsysError, match="no NVTX range in the 'trtprof' domain"):
        model.read_sqlite(nsys_synth.build(tmp_path / "other.sqlite", df, domain="someone-else"))


def test_cli_errors_are_one_line(tmp_path, capture_copy):
    env = _env(PATH=os.defpath)  # no nsys on it
    (tmp_path / "text.sqlite").write_text("not a database")
    sqlite3.connect(tmp_path / "empty.sqlite").execute("CREATE TABLE x (a)").connection.commit()
    nsys_synth.build(tmp_path / "other.sqlite", _cpu_like(3), domain="someone-else")
    (tmp_path / "r.nsys-rep").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    cases = [(capture_copy, tmp_path / "missing.sqlite", ExitCode.NO_NSYS, "no nsys report"),
             (capture_copy, tmp_path / "text.sqlite", ExitCode.NO_NSYS, "not an SQLite file"),
             (capture_copy, tmp_path / "empty.sqlite", ExitCode.NO_NSYS, "NVTX_EVENTS"),
             (capture_copy, tmp_path / "other.sqlite", ExitCode.NO_NSYS, "trtprof"),
             (capture_copy, tmp_path / "r.nsys-rep", ExitCode.NO_NSYS, "nsys is not on PATH"),
             (capture_copy, tmp_path / "notes.txt", ExitCode.NO_NSYS, "not an SQLite file"),
             (capture_copy, None, ExitCode.NO_NSYS, "no nsys report"),
             (tmp_path / "nope", tmp_path / "text.sqlite", ExitCode.BAD_CAPTURE, "no capture")]
    for cap, rep, code, text in cases:
        r = _cli("nsys-import", cap, *([rep] if rep else []), env=env)
        _one_line_error(r, code)
        assert text in r.stderr, (text, r.stderr)


def test_cli_another_run_is_one_line(tmp_path, capture_copy):
    df = trtprof.load(capture_copy)
    p = nsys_synth.build(tmp_path / "s.sqlite", df.assign(host_start_ns=df["host_start_ns"] + 7,
                                                          host_end_ns=df["host_end_ns"] + 7),
                         jitter_ns=200_000, seed=1)
    _one_line_error(_cli("nsys-import", capture_copy, p, env=_env()), ExitCode.NO_NSYS)


# -- CLI end to end ----------------------------------------------------------------------------------------
def test_cli_import_real(real_sqlite, capture_copy):
    shutil.copy(real_sqlite, capture_copy / "two.sqlite")
    r = _cli("nsys-import", capture_copy, env=_env())  # finds the .sqlite in the folder
    assert r.returncode == 0, r.stderr
    n = len(trtprof.load(capture_copy))
    assert f"{n} of {n} rows joined" in r.stderr
    rows, summary = nsys_store.read_import(capture_copy)
    assert len(rows) == n and summary["matched_nvtx"] == n
    assert summary["nsys_report"].endswith("two.sqlite")
    assert trtprof.load(capture_copy).shape[1] == len(trtprof.timeline.schema.COLUMNS)  # core schema untouched
    assert "--help" not in r.stderr
    h = _cli("nsys-import", "--help", env=_env())
    assert h.returncode == 0 and "Example" in h.stdout and "nsys-import" in h.stdout


def test_cli_import_nsys_rep_with_fake_nsys(tmp_path, capture_copy):
    bin_dir = tmp_path / "bin"
    nsys_synth.install_fake_nsys(bin_dir)
    log = tmp_path / "nsys.log"
    (capture_copy / "run.nsys-rep").write_text("a report")
    env = _env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_NSYS_LOG=str(log))
    r = _cli("nsys-import", capture_copy, env=env)
    assert r.returncode == 0, r.stderr
    argv = json.loads(log.read_text().splitlines()[0])
    assert argv[:3] == ["export", "--type", "sqlite"] and argv[-1] == str(capture_copy / "run.nsys-rep")
    assert argv[argv.index("-o") + 1] == str(capture_copy / "run.sqlite")
    assert (capture_copy / "run.sqlite").is_file() and (capture_copy / nsys_store.NSYS_PARQUET).is_file()


# -- capture --nsys with a fake nsys on PATH -----------------------------------------------------------
JOB = """
import sys
sys.path.insert(0, {tests!r})
import torch
from cpu_models import partitioned
m = partitioned("python")
for _ in range(4):
    m(torch.randn(2, 8))
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def fake_nsys(tmp_path, fake_env):
    bin_dir = tmp_path / "bin"
    nsys_synth.install_fake_nsys(bin_dir)
    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent(JOB.format(tests=str(Path(__file__).parent.parent / "support"))))
    env = dict(fake_env, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_NSYS_LOG=str(tmp_path / "nsys.log"))
    return job, env, tmp_path / "nsys.log"


@pytest.mark.fake_trt
def test_capture_under_nsys(tmp_path, fake_nsys):
    job, env, log = fake_nsys
    out = tmp_path / "cap"
    r = _cli("capture", "--nsys", "--nsys-args", "--capture-range=nvtx --nvtx-capture='model0 inference@trtprof'",
             "-o", out, "--prealloc", "on", job, "17", env=env, cwd=tmp_path)
    assert r.returncode == 17, r.stderr  # the script's own exit code
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    prof = calls[0]
    assert prof[:3] == ["profile", "-t", "cuda,nvtx"]
    assert prof[3:5] == ["--capture-range=nvtx", "--nvtx-capture=model0 inference@trtprof"]
    assert prof[5:7] == ["-o", str(out / "nsys")]
    app = prof[7:]
    assert app[:4] == [sys.executable, "-m", "trtprof", "capture"]
    assert app[app.index("-o") + 1] == str(out) and app[app.index("--prealloc") + 1] == "on"
    assert "--no-report" in app and "--nsys" not in app and "--nsys-args" not in app
    assert app[-2:] == [str(job), "17"]
    assert calls[1][0] == "export"
    assert (out / "nsys.nsys-rep").is_file() and (out / nsys_store.NSYS_PARQUET).is_file()
    rows, summary = nsys_store.read_import(out)
    assert summary["matched_nvtx"] == len(trtprof.load(out)) - summary["matched_window"] - summary["unmatched"]
    assert summary["matched_nvtx"] > 0
    assert "nsys import:" in r.stderr
    if (out / "report.html").exists():  # plotly installed: written after the import, with its section
        assert "Nsight Systems" in (out / "report.html").read_text()


@pytest.mark.fake_trt
def test_capture_under_nsys_exit_code_from_the_capture(tmp_path, fake_nsys):
    job, env, log = fake_nsys
    r = _cli("capture", "--nsys", "--no-report", "-o", tmp_path / "cap", job, "0", env=dict(env, FAKE_NSYS_RC="9"),
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr  # meta.json's exit code, not nsys's
    r = _cli("capture", "--nsys", "--no-report", "-o", tmp_path / "cap2", job, "0",
             env=dict(env, FAKE_NSYS_NO_REPORT="1"), cwd=tmp_path)
    assert r.returncode == 0 and "nsys wrote no report" in r.stderr


@pytest.mark.fake_trt
def test_capture_nsys_errors(tmp_path, fake_nsys, fake_env):
    job, env, _ = fake_nsys
    r = _cli("capture", "--nsys", "-o", tmp_path / "c", job, "0", env=dict(fake_env, PATH=os.defpath), cwd=tmp_path)
    _one_line_error(r, ExitCode.NO_NSYS)
    r = _cli("capture", "--nsys-args", "-o elsewhere", "-o", tmp_path / "c", job, "0", env=env, cwd=tmp_path)
    _one_line_error(r, 2)
    r = _cli("capture", "--nsys", "-o", tmp_path / "c", tmp_path / "missing.py", env=env, cwd=tmp_path)
    _one_line_error(r, ExitCode.NO_SCRIPT)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "meta.json").write_text("{}")
    r = _cli("capture", "--nsys", "-o", tmp_path / "full", job, "0", env=env, cwd=tmp_path)
    _one_line_error(r, ExitCode.BAD_OUTPUT)


def test_profile_command_keeps_a_user_trace_list():
    cmd = under_nsys.profile_command("nsys", Path("/c"), "--trace=cuda,nvtx,osrt -s none", ["x.py"])
    assert "-t" not in cmd and cmd[2:4] == ["--trace=cuda,nvtx,osrt", "-s"]
    with pytest.raises(TrtprofError):
        under_nsys.profile_command("nsys", Path("/c"), "--output=/tmp/x", ["x.py"])


# -- the HTML report's section ------------------------------------------------------------------------------
def test_report_section(real_sqlite, capture_copy):
    from trtprof.render import nsys_html

    def section(c):
        return nsys_html.section(importer.report_view(c))

    cap = trtprof.load_capture(capture_copy)
    assert section(cap) == ""  # no import: the report is unchanged
    importer.import_report(capture_copy, real_sqlite)
    cap = trtprof.load_capture(capture_copy)
    frag = section(cap)
    cmp_ = an.compare(cap.timeline, nsys_store.read_import(capture_copy)[0])
    assert frag.count("<tr>") == len(cmp_) + 1
    for r in cmp_.itertuples():
        assert f"{r.event_us:.1f}" in frag and f"{r.busy_us:.1f}" in frag and f"{r.diff_busy_pct:+.1f} %" in frag
    # hostile names from a capture are text, never markup
    evil = '<script>alert("x")</script>'
    cap.timeline["subgraph"] = cap.timeline["subgraph"].where(cap.timeline["subgraph"] != "_run_on_gpu_1", evil)
    frag = section(cap)
    assert evil not in frag and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in frag
    (capture_copy / nsys_store.NSYS_PARQUET).write_bytes(b"PAR1 damaged")
    frag = section(cap)
    assert "cannot be read" in frag and "<table" not in frag


def test_full_report_includes_the_section(real_sqlite, capture_copy):
    pytest.importorskip("plotly")
    from report_helpers import render

    importer.import_report(capture_copy, real_sqlite)
    page = render(trtprof.load_capture(capture_copy), n_boot=50)
    assert "Nsight Systems: CUDA event brackets against kernels" in page


def test_report_takes_kernels_from_the_import(real_sqlite, capture_copy):
    """Without kernel activity of its own, the report draws nsys's kernel spans and measures hidden vs
    exposed against them; rows that have their own kernel data keep it."""
    pytest.importorskip("plotly")
    from report_helpers import render
    from trtprof.analysis.report import analyse

    importer.import_report(capture_copy, real_sqlite)
    cap = trtprof.load_capture(capture_copy)
    view = importer.report_view(cap)
    assert cap.timeline["kernel_first_ns"].isna().all()
    seen, n = importer.with_nsys_kernels(cap, view)
    rows = view.rows.set_index("seq")
    gpu = seen.timeline[seen.timeline["event"].isin(["exec", "fallback"])]
    filled = gpu[gpu["kernel_first_ns"].notna()]
    assert n == len(filled) == view.filled > 0
    got = rows.loc[filled["seq"].to_numpy()]
    assert (filled["kernel_first_ns"].to_numpy() == got["nsys_gpu_start_ns"].to_numpy()).all()
    assert (filled["kernel_busy_ns"].to_numpy() == got["nsys_busy_ns"].to_numpy()).all()
    assert (filled["kernel_busy_ns"] <= filled["kernel_last_ns"] - filled["kernel_first_ns"]).all()
    assert cap.timeline["kernel_first_ns"].isna().all()  # the loaded capture itself is not changed
    assert analyse(seen.timeline, n_boot=20).busy_source == "kernel spans"
    page = render(cap, n_boot=20)
    assert "kernel spans from the Nsight Systems import" in page and f"{n} calls" in page
    # a row with kernel data of its own keeps it
    own = cap.timeline.copy()
    i = own.index[own["seq"] == filled["seq"].iat[0]][0]
    own.loc[i, ["kernel_first_ns", "kernel_last_ns", "kernel_busy_ns", "kernel_count"]] = [1, 2, 1, 1]
    again, m = importer.with_nsys_kernels(type(cap)(timeline=own, meta=cap.meta, path=cap.path), view)
    assert m == n - 1 and again.timeline.loc[i, "kernel_first_ns"] == 1
    assert importer.with_nsys_kernels(cap, None) == (cap, 0)


def test_import_keeps_each_kernel_and_the_timeline_draws_them(real_sqlite, capture_copy):
    """After nsys-import the timeline drew each engine call as its kernel span only; the kernels
    themselves (what ran, on which stream) were in the report and shown nowhere. Each kernel and copy
    an engine or fallback row launched is kept (nsys_kernels.parquet), inside that row's span and
    counted by it, and drawn in a lane per CUDA stream named as Nsight Systems data."""
    pytest.importorskip("plotly")
    from trtprof.analysis.report import analyse
    from trtprof.nsys.store import read_kernels
    from trtprof.render import timeline_fig

    importer.import_report(capture_copy, real_sqlite)
    cap = trtprof.load_capture(capture_copy)
    k, view = read_kernels(capture_copy), importer.report_view(cap)
    assert k is not None and len(k) and view.kernels.equals(k)
    rows = view.rows.set_index("seq")
    own = cap.timeline.set_index("seq").loc[k["seq"].unique(), "event"]
    assert set(own) <= {"exec", "fallback"}
    per = k.groupby("seq").agg(n=("kind", "size"), lo=("start_ns", "min"), hi=("end_ns", "max"))
    got = rows.loc[per.index]
    assert (per["n"] == got["nsys_kernel_count"] + got["nsys_copy_count"]).all()
    assert (per["lo"] == got["nsys_gpu_start_ns"]).all() and (per["hi"] == got["nsys_gpu_end_ns"]).all()
    gpu = cap.timeline[cap.timeline["event"].isin(["exec", "fallback"])]
    launched = rows.loc[gpu["seq"], ["nsys_kernel_count", "nsys_copy_count"]].fillna(0).sum().sum()
    assert len(k) == launched  # every kernel of an engine or fallback row, once
    assert k["name"].notna().sum() == (k["kind"] == "kernel").sum() and (k["stream"] >= 0).all()
    seen, view = importer.report_inputs(cap)
    r = analyse(seen.timeline, n_boot=20)
    win, centre, why = timeline_fig.choose_window(seen.timeline, r.infs, r.changes, r.latency)
    fig = timeline_fig.timeline_figure(seen.timeline, win, centre, why, r.allocs, r.gaps, r.streams,
                                       kernels=view.kernels, kernel_source="Nsight Systems")
    names = [t.get("name", "") for t in fig.data]
    assert "kernel or copy of an engine (Nsight Systems)" in names and not any("CUPTI" in n for n in names)
    lanes = fig.layout["yaxis"]["categoryarray"]
    assert any(lane.startswith("kernels \u00b7 Nsight Systems stream ") for lane in lanes)
    from report_helpers import render

    page = render(cap, n_boot=20)
    assert "each kernel and copy of the Nsight Systems import" in page
