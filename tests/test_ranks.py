"""One capture per rank under a launcher, and the commands on the folder of ranks.

The end-to-end test is a real `torchrun` with two processes on the CPU, each running `trtprof
capture` over a real torch model on the stand-in runtime, stepping together through a gloo barrier
after every inference; rank 1 sleeps inside a fallback on every fourth inference, so the straggler
is known: which rank, at which inference, and by how much.
"""
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trtprof.analysis import ranks as analysis
from trtprof.capture import ranks as capture_ranks
from trtprof.errors import UsageError
from trtprof.render.perfetto import check_flows, check_nesting
from trtprof.timeline import rank_layout, ranks as timeline_ranks, store

ROOT = Path(__file__).resolve().parent.parent
SLEEP_MS = 20
N = 12

JOB = """
import os, sys, time
sys.path.insert(0, {tests!r})
import torch
import torch.distributed as dist
from cpu_models import partitioned

class SlowSigmoid(torch.nn.Module):  # the fallback: rank 1 sleeps in it on every 4th inference
    slow = False
    def forward(self, x):
        if self.slow:
            time.sleep({sleep} / 1000)
        return torch.sigmoid(x)

dist.init_process_group("gloo")
rank = dist.get_rank()
m = partitioned("python")
m._run_on_gpu_1 = SlowSigmoid()
x = torch.randn(2, 8)
for i in range({n}):
    m._run_on_gpu_1.slow = rank == 1 and i % 4 == 1
    m(x)
    dist.barrier()
dist.destroy_process_group()
"""


def _torchrun(tmp_path, env, out, *extra):
    job = tmp_path / "job.py"
    job.write_text(JOB.format(tests=str(ROOT / "support"), sleep=SLEEP_MS, n=N))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "trtprof", "capture", *extra, "-o", str(out), str(job)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The torchrun of two ranks, once for the module's tests."""
    tmp = tmp_path_factory.mktemp("ranks")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "support" / "fake_trt"), str(ROOT)])
    out = tmp / "run"
    r = _torchrun(tmp, env, out)
    return tmp, env, out, r


@pytest.mark.fake_trt
def test_torchrun_writes_one_capture_per_rank(run):
    tmp, env, out, r = run
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["rank0", "rank1"]
    pids = set()
    for rank in (0, 1):
        cap = store.load_capture(out / f"rank{rank}")
        info = cap.meta["rank"]
        assert (info["rank"], info["local_rank"], info["world_size"], info["launcher"]) == (rank, rank, 2, "torchrun")
        assert info["host"] and info["clock"]["boot_id"] == capture_ranks.boot_id()
        assert info["clock"]["bracket_ns"] >= 0 and info["device"]["index"] is None  # no CUDA here
        assert cap.complete and set(cap.timeline["pid"]) == {cap.meta["pid"]}
        infs = cap.timeline.loc[cap.timeline["event"] == "inference", "inference"]
        assert infs.max() == N - 1 and len(infs) >= N - 1  # the model is found at its first call
        pids.add(cap.meta["pid"])
    assert len(pids) == 2
    assert (out / "report.html").is_file() and (out / "rank0" / "report.html").is_file()
    # the last rank printed every rank and the straggler line; each rank says where it is
    assert r.stderr.count("straggler model0:") == 1 and "rank 0 (" in r.stderr and "rank 1 (" in r.stderr
    assert "as rank 0 of 2" in r.stderr and "as rank 1 of 2" in r.stderr


@pytest.mark.fake_trt
def test_straggler_view_finds_the_slow_rank(run):
    _, _, out, r = run
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = timeline_ranks.load_ranks(out)
    assert ranks.offsets == {0: 0, 1: 0} and "one boot of one machine" in ranks.clock
    res = analysis.analyse_ranks(ranks, n_boot=50)
    st = res.straggler.set_index("inference")
    slow = [i for i in range(N) if i % 4 == 1 and i in st.index]
    assert slow, st
    for i in slow:
        assert st.at[i, "slowest_rank"] == 1 and st.at[i, "spread_ms"] > SLEEP_MS / 2, st.loc[i]
        # on one clock the two ranks left the same barrier: rank 1 finished about the sleep later
        assert SLEEP_MS / 2 < st.at[i, "finish_skew_ms"] < st.at[i, "spread_ms"] + SLEEP_MS, st.loc[i]
    # one clock: no rank started inference i+1 before both had ended inference i (they met in between)
    order = analysis.lockstep_check(ranks)
    assert order["pairs"] >= 2 * (N - 2) and order["violations"] == 0, order
    skewed = dataclasses.replace(ranks, offsets={0: 0, 1: 5 * SLEEP_MS * 10**6})  # a clock 100 ms off
    assert analysis.lockstep_check(skewed)["violations"] > 0
    # the merged numbers are each rank's own
    for rank, cap in ranks.captures.items():
        from trtprof.analysis.latency import inference_latency, latency_summary

        own = latency_summary(inference_latency(cap.timeline), ("model",))
        got = res.latency[res.latency["rank"] == rank]
        assert got["median_ms"].tolist() == pytest.approx(own["median_ms"].tolist())
        assert got["n"].tolist() == own["n"].tolist()
    assert set(res.subgraphs["rank"]) == {0, 1}
    assert set(res.subgraphs["subgraph"]) == {"_run_on_acc_0", "_run_on_gpu_1", "_run_on_acc_2"}


def _cli(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "trtprof", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.fake_trt
def test_report_compare_export_on_the_folder(run):
    tmp, env, out, r = run
    assert r.returncode == 0, r.stderr[-3000:]
    rep = _cli(["report", str(out), "-o", str(tmp / "merged.html")], tmp, env)
    assert rep.returncode == 0, rep.stderr
    html = (tmp / "merged.html").read_text()
    assert "2 ranks" in html and "rank 1 \\u00b7 host \\u00b7 inference" in html and "run/rank0/report.html" in html
    assert "straggler model0" in rep.stderr and "rank 1 (" in rep.stderr
    exp = _cli(["export", str(out), "-o", str(tmp / "trace.json")], tmp, env)
    assert exp.returncode == 0, exp.stderr
    trace = json.loads((tmp / "trace.json").read_text())
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "process_name"}
    assert sorted(names) == [0, 1] and names[1].startswith("rank 1 (")
    assert check_nesting(trace) == [] and check_flows(trace) == []
    slices = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    assert {e["pid"] for e in slices} == {0, 1}
    tids = {}
    for e in trace["traceEvents"]:
        if e.get("ph") in ("X", "M") and e.get("tid"):
            tids.setdefault(e["tid"], set()).add(e["pid"])
    assert all(len(p) == 1 for p in tids.values())  # no thread shared between ranks
    csv = _cli(["export", str(out), "-f", "csv", "-o", str(tmp / "t.csv")], tmp, env)
    assert csv.returncode == 0, csv.stderr
    df = pd.read_csv(tmp / "t.csv")
    assert df.columns[0] == "rank" and sorted(df["rank"].unique()) == [0, 1]
    cmp = _cli(["compare", str(out), str(out), "--no-html"], tmp, env)
    assert cmp.returncode == 0, cmp.stderr
    assert "== rank 0 ==" in cmp.stdout and "== rank 1 ==" in cmp.stdout and "== all ranks merged ==" in cmp.stdout
    merged = cmp.stdout.split("== all ranks merged ==")[1]
    assert f"{2 * (N - 1)}" in merged.split("End to end")[0] or f"({2 * N} inferences" in merged
    one = _cli(["compare", str(out / "rank0"), str(out), "-o", str(tmp / "cmp.html")], tmp, env)
    assert one.returncode == 0, one.stderr
    assert "merged only" in one.stdout and (tmp / "cmp.html").is_file()


def _rank_env(env, **kw):
    e = {k: v for k, v in env.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_", "OMPI_", "PMI_", "SLURM_"))}
    e.update({k: str(v) for k, v in kw.items()})
    return e


@pytest.mark.parametrize("kw,code,text", [
    ({"RANK": 0, "WORLD_SIZE": 2}, 2, "give it with -o DIR"),
    ({"RANK": 2, "WORLD_SIZE": 2}, 2, "must be below the world size"),
    ({"RANK": "x", "WORLD_SIZE": 2}, 2, "is not a number"),
])
def test_bad_launcher_environment_is_one_line(tmp_path, fake_env, kw, code, text):
    s = tmp_path / "s.py"
    s.write_text("print('ran')\n")
    r = subprocess.run([sys.executable, "-m", "trtprof", "capture", str(s)], cwd=tmp_path,
                       env=_rank_env(fake_env, **kw), capture_output=True, text=True, timeout=120)
    assert r.returncode == code and text in r.stderr and "ran" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_same_rank_twice_and_a_capture_folder_are_refused(tmp_path, fake_env):
    s = tmp_path / "s.py"
    s.write_text("print('ran')\n")
    env = _rank_env(fake_env, RANK=1, WORLD_SIZE=2, LOCAL_RANK=1)

    def cap(out):
        return subprocess.run([sys.executable, "-m", "trtprof", "capture", "-q", "-o", str(out), str(s)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    first = cap(tmp_path / "d")
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "d" / "rank1" / "meta.json").read_text())["rank"]["rank"] == 1
    second = cap(tmp_path / "d")
    assert second.returncode == 4 and "rank 1 was captured into" in second.stderr and "ran" not in second.stdout
    single = subprocess.run([sys.executable, "-m", "trtprof", "capture", "-q", "-o", str(tmp_path / "c"), str(s)],
                            cwd=tmp_path, env=_rank_env(fake_env), capture_output=True, text=True, timeout=120)
    assert single.returncode == 0
    into_capture = cap(tmp_path / "c")
    assert into_capture.returncode == 4 and "is a capture folder" in into_capture.stderr
    missing = subprocess.run([sys.executable, "-m", "trtprof", "capture", "-o", str(tmp_path / "e"), "nope.py"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 3 and not (tmp_path / "e" / "rank1").exists()  # nothing claimed


# -- units ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env,want", [
    ({}, None),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "j"},
     (1, 2, 1, 2, "torchrun", "j")),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (3, 4, 1, None, "torchrun", None)),  # torchtrtrun
    ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
      "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, (2, 4, 0, 2, "mpirun (Open MPI)", None)),
    ({"PMI_RANK": "1", "PMI_SIZE": "2"}, (1, 2, None, None, "mpirun (MPICH / Intel MPI)", None)),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4(x2)",
      "SLURM_JOB_ID": "77"}, (5, 8, 1, 4, "srun (Slurm)", "77")),
])
def test_rank_from_each_launcher(env, want):
    got = capture_ranks.from_environment(env)
    if want is None:
        assert got is None
        return
    assert (got["rank"], got["world_size"], got["local_rank"], got["local_world_size"], got["launcher"],
            got["run_id"]) == want


def test_rank_without_world_size_is_refused():
    with pytest.raises(UsageError, match="WORLD_SIZE is not set"):
        capture_ranks.from_environment({"RANK": "0"})


def test_clock_reference_is_a_tight_pair():
    c = capture_ranks.clock_reference()
    assert c["bracket_ns"] >= 0 and abs((c["time_ns"] - c["perf_counter_ns"]) - (
        __import__("time").time_ns() - __import__("time").perf_counter_ns())) < 50_000_000


def _meta(boot, perf, wall, host="h"):
    return {"rank": {"host": host, "clock": {"boot_id": boot, "perf_counter_ns": perf, "time_ns": wall}}}


def test_clock_offsets_one_machine_and_two():
    same, text = timeline_ranks.clock_offsets({0: _meta("b", 100, 1000), 1: _meta("b", 5000, 99999)})
    assert same == {0: 0, 1: 0} and "one boot" in text
    # rank 1's monotonic clock reads 10_000 less than rank 0's at the same wall time: shifted up by 10_000
    two, text = timeline_ranks.clock_offsets({0: _meta("a", 50_000, 1_000_000), 1: _meta("b", 40_000, 1_000_000, "g"),
                                              2: _meta("a", 70_000, 1_000_020)})
    assert two == {0: 0, 1: 10_000, 2: 0} and "2 machines" in text and "NTP" in text


def _lat(rank_ms: dict, excluded=()):
    """rank -> latency frame for inferences 0..n-1 of model0, as inference_latency writes it."""
    out = {}
    for r, ms in rank_ms.items():
        n = len(ms)
        out[r] = pd.DataFrame({"pid": 100 + r, "model": "model0", "inference": np.arange(n),
                               "mode": "off", "excluded": [(r, i) in excluded for i in range(n)],
                               "input_shapes": "(2,8)", "host_ns": np.array(ms) * 1e6, "gpu_ns": np.nan,
                               "latency_ns": np.array(ms, dtype=float) * 1e6})
    return out


def test_straggler_arithmetic():
    lat = _lat({0: [1.0, 2.0, 3.0, 1.0], 1: [1.5, 1.0, 3.0, 4.0], 2: [1.2, 1.1, 0.5]})
    st = analysis.straggler(lat).set_index("inference")
    assert st["ranks"].tolist() == [3, 3, 3, 2]
    assert st["slowest_rank"].tolist() == [1, 0, 0, 1]  # inference 2: ranks 0 and 1 tie, the lower rank
    assert st["fastest_rank"].tolist() == [0, 1, 2, 0]
    assert st["spread_ms"].tolist() == pytest.approx([0.5, 1.0, 2.5, 3.0])
    assert st["finish_skew_ms"].isna().all()
    s = analysis.straggler_summary(st.reset_index()).iloc[0]
    assert s["median_spread_ms"] == pytest.approx(1.75) and s["max_spread_ms"] == pytest.approx(3.0)
    assert (s["max_spread_inference"], s["max_spread_rank"]) == (3, 1)
    assert s["slowest_counts"] == {0: 2, 1: 2} and list(s["slowest_counts"]) == [0, 1]


def test_straggler_leaves_out_excluded_and_single_rank_inferences():
    lat = _lat({0: [1.0, 9.0, 1.0], 1: [2.0, 1.0]}, excluded={(0, 1)})
    st = analysis.straggler(lat)
    assert st["inference"].tolist() == [0]  # 1: rank 0's is excluded; 2: only rank 0 ran it
    ends = {0: pd.DataFrame({"model": ["model0"], "inference": [0], "end_ns": [5e6]}),
            1: pd.DataFrame({"model": ["model0"], "inference": [0], "end_ns": [8e6]})}
    assert analysis.straggler(lat, ends)["finish_skew_ms"].tolist() == pytest.approx([3.0])
    assert analysis.straggler(_lat({0: [1.0]})).empty
    assert analysis.straggler_summary(analysis.straggler(_lat({0: [1.0]}))).empty


def test_layout_names_match_the_store():
    assert rank_layout.CAPTURE_FILES == (store.META, store.TIMELINE, store.SPILL)


def test_folder_of_ranks_detection(tmp_path):
    (tmp_path / "rank0").mkdir()
    (tmp_path / "rank01").mkdir()  # not a rank name
    (tmp_path / "rankx").mkdir()
    assert list(rank_layout.rank_folders(tmp_path)) == [0] and rank_layout.is_ranks(tmp_path)
    (tmp_path / "meta.json").write_text("{}")
    assert not rank_layout.is_ranks(tmp_path)


@pytest.mark.fake_trt
def test_merged_report_renders_in_the_browser(run, tmp_path):
    from test_report_browser import BROWSER, IN_CI, check_legends, page_facts

    if BROWSER is None:  # as test_report_browser: required in CI, skipped elsewhere
        if IN_CI:
            pytest.fail("CI=true but no chromium on PATH", pytrace=False)
        pytest.skip("chromium is not installed (it is required in CI)")
    _, _, out, r = run
    assert r.returncode == 0, r.stderr[-3000:]
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    facts = page_facts(out / "report.html", tmp_path, shots / "ranks.png")
    figs = facts["figures"]
    assert len(figs) == 3 and facts["errors"] == [] and all(f["svgs"] >= 2 for f in figs)
    assert facts["scrollWidth"] <= facts["innerWidth"]
    check_legends(figs)  # every trace in its legend; titles inside, legends clear of title, plot and labels
    timeline = next(f for f in figs if f["title"].startswith("Timeline of 2 ranks"))
    lanes = timeline["categories"][1]
    assert any(c.startswith("rank 0 \u00b7 host") for c in lanes) and any(c.startswith("rank 1 \u00b7 host") for c in lanes)
    assert len(timeline["legend"]) == len(set(timeline["legend"]))  # one legend entry per kind, not per rank
    assert set(timeline["traces"]) <= set(timeline["legend"])


def test_straggler_figure_of_a_long_run_draws_buckets_and_the_largest_spreads():
    """Millions of inferences: a marker and a hover text each would make a page of hundreds of MB."""
    from trtprof.render import figures, ranks_html

    rng = np.random.default_rng(3)
    n = figures.MAX_POINTS * 3
    st = pd.DataFrame({"model": "m", "inference": np.arange(n), "ranks": 2, "fastest_rank": 0,
                       "slowest_rank": rng.integers(0, 3, n), "fastest_ms": 1.0, "slowest_ms": 1 + rng.gamma(2, 0.1, n)})
    st["spread_ms"] = st["slowest_ms"] - st["fastest_ms"]
    data = ranks_html.straggler_figure(st).data
    lines = [t for t in data if t["mode"] == "lines"]
    marks = [t for t in data if t["mode"] == "markers"]
    assert len(lines) == 2 and all(len(t["x"]) == figures.MAX_POINTS for t in lines)
    assert sum(len(t["x"]) for t in marks) == ranks_html.TOP
    assert max(max(t["y"]) for t in marks) == st["spread_ms"].max()
    assert max(lines[0]["y"]) == st["spread_ms"].max()  # the max per bucket reaches the largest spread
    small = ranks_html.straggler_figure(st.head(100)).data
    assert all(t["mode"] == "markers" for t in small) and sum(len(t["x"]) for t in small) == 100


@pytest.mark.parametrize("rows", [0, 12])
def test_the_last_rank_suggests_a_report_only_when_one_could_be_made(tmp_path, capsys, rows):
    """The merge after the last rank: a folder with no rows says so without a command that would fail
    the same way; a merge that fails for another reason points to `trtprof report DIR`."""
    from synthetic import timeline, write_capture
    from trtprof.cli import ranks as cli_ranks

    frame = timeline(rows, seed=3) if rows else timeline(4, seed=3).iloc[:0]
    write_capture(frame, tmp_path / "rank0", {"rank": 0, "world_size": 1})
    if rows:  # readable rows, then an unreadable timeline: a failed merge that a later report can name
        (tmp_path / "rank0" / "timeline.parquet").write_bytes(b"not parquet")
    cli_ranks.after_capture(tmp_path, {"rank": 0, "world_size": 1}, quiet=False, no_report=True)
    err = capsys.readouterr().err
    assert "merged report not written" in err and "Traceback" not in err
    assert ("try trtprof report" in err) == bool(rows), err


def test_terminal_summary_of_ranks_explains_every_column():
    """The per-rank tables print once with one legend below: with kernel columns, theirs too (the
    committed two-rank capture recorded kernels)."""
    from trtprof.cli.ranks import load_and_analyse
    from trtprof.render import ranks_text, summary_text

    ranks, res = load_and_analyse(ROOT / "reports" / "ranks")
    text = ranks_text.render(ranks, res)
    assert "busy us" in text and text.count(summary_text.KERNEL_LEGEND) == 1
    assert text.count(summary_text.LEGEND) == 1 and "bracket us" in text
