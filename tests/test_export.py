"""`trtprof export`: the trace JSON and the CSV checked against the timeline they come from.

Synthetic timelines (support/synthetic's `concurrent`: GPU times, several threads sharing a stream,
nanosecond-edge durations, rounding jitter, and which allocation feeds which call as ground truth)
exercise the GPU lanes and flows that a CPU capture cannot have; a CPU capture checks the whole path end
to end.
"""
import collections
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trtprof
from trtprof.errors import ExitCode
from trtprof.capture.records import FIELDS
from trtprof.cli import main
from trtprof.timeline import schema
from trtprof.timeline.store import CaptureWriter
from trtprof.render import perfetto as tr
from trtprof.render.tabular import write_csv
from trtprof.cli.common import write as _write
from synthetic import concurrent

# -- reading the trace back the way a viewer does --------------------------------------------------
def slices(trace):
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


def gpu_pid(trace):
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "process_name"}
    return next((p for p, n in names.items() if n == "GPU"), None)


def ns(us):
    return round(us * 1000)


def bound_slice(trace, ev):
    """The slice a flow end binds to: the innermost slice open at its time on its track."""
    t = ns(ev["ts"])
    open_ = [(ns(s["ts"]), -ns(s["ts"] + s["dur"]), i, s) for i, s in enumerate(slices(trace))
             if (s["pid"], s["tid"]) == (ev["pid"], ev["tid"]) and ns(s["ts"]) <= t < ns(s["ts"]) + ns(s["dur"])]
    return max(open_, key=lambda x: x[:3])[3] if open_ else None


def covered(trace, sl):
    """True when slices nested in `sl` on its track leave no ns free inside it (a flow cannot bind to it)."""
    s0, s1 = ns(sl["ts"]), ns(sl["ts"]) + ns(sl["dur"])
    kids = sorted((ns(o["ts"]), ns(o["ts"]) + ns(o["dur"])) for o in slices(trace) if o is not sl and
                  (o["pid"], o["tid"]) == (sl["pid"], sl["tid"]) and s0 <= ns(o["ts"]) and ns(o["ts"] + o["dur"]) <= s1)
    cur = s0
    for a, b in kids:
        if a - cur >= 2:
            return False
        cur = max(cur, b)
    return s1 - cur < 2


def check_against_timeline(df, trace):
    """Every range once per lane with its exact start and duration; flows and marks where they belong."""
    t0 = trace["otherData"]["time_origin_ns"]
    gp = gpu_pid(trace)
    xs = slices(trace)
    host = {e["args"]["seq"]: e for e in xs if e["pid"] != gp}
    gpu = {e["args"]["seq"]: e for e in xs if e["pid"] == gp}
    assert len(host) + len(gpu) == len(xs), "a range appears twice in one lane"
    assert sorted(host) == sorted(df["seq"])
    timed = df[df["gpu_start_ns"].notna()]
    assert sorted(gpu) == sorted(timed["seq"])
    for r in df.itertuples():
        h = host[r.seq]
        assert h["name"] == f"{r.subgraph} {r.event}"
        assert abs(h["ts"] * 1000 + t0 - r.host_start_ns) < 1e-3 * 1000 / 2
        assert abs(h["dur"] - (r.host_end_ns - r.host_start_ns) / 1000) <= 0.001
        assert h["pid"] == r.pid
        if r.seq in gpu:
            g = gpu[r.seq]
            assert abs(g["ts"] * 1000 + t0 - r.gpu_start_ns) < 0.5
            if r.gpu_end_ns >= r.gpu_start_ns:
                assert abs(g["dur"] - (r.gpu_end_ns - r.gpu_start_ns) / 1000) <= 0.001
            else:  # a jittered end before a start the loader clamped to the enqueue: shown, flagged
                assert g["dur"] == 0 and g["args"]["negative_duration_ns"] == r.gpu_end_ns - r.gpu_start_ns
    # one host track per thread (no sub-tracks needed there), tracks of one thread never shared
    tracks = {}
    for r in df.itertuples():
        tracks.setdefault((host[r.seq]["pid"], host[r.seq]["tid"]), set()).add(r.thread)
    assert all(len(v) == 1 for v in tracks.values())
    assert tr.check_nesting(trace) == []
    assert tr.check_flows(trace) == []
    flows = [e for e in trace["traceEvents"] if e["ph"] in "sf"]
    by_id = {}
    for f in flows:
        by_id.setdefault(f["id"], {})[f["ph"]] = f
    enq = {}
    for pair in by_id.values():
        src, dst = bound_slice(trace, pair["s"]), bound_slice(trace, pair["f"])
        if pair["s"]["name"].startswith("enqueue"):
            assert src is host[src["args"]["seq"]] and src["args"]["seq"] in gpu
            assert dst is gpu[src["args"]["seq"]] or covered(trace, gpu[src["args"]["seq"]])
            enq[src["args"]["seq"]] = 1
    # every timed enqueue has its arrow, but for those that would go backwards (a GPU slice that ends
    # before its enqueue's host slice is entered, as jittered or unclamped times can have): left out, counted
    texec = timed[timed["event"] == "exec"]
    assert set(enq) <= set(texec["seq"])
    left_out = texec[~texec["seq"].isin(list(enq))]
    assert len(left_out) == trace["otherData"]["flows_left_out_backwards"].get("enqueue -> GPU", 0)
    assert (left_out["gpu_start_ns"] < left_out["host_start_ns"] + 2).all()
    assert all(f["ts"] >= pair["s"]["ts"] for pair in by_id.values() for f in [pair["f"]])
    marks = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    changed = df[df["event"].isin(["call", "fallback"]) & df["shape_changed"].fillna(False).astype(bool)]
    assert sorted((m["pid"], m["tid"], m["ts"]) for m in marks) == sorted(
        (host[s]["pid"], host[s]["tid"], host[s]["ts"]) for s in changed["seq"])
    assert all(m["s"] == "t" for m in marks)
    return by_id


def prealloc_pairs(trace, by_id):
    out = []
    for pair in by_id.values():
        if pair["s"]["name"].startswith("prealloc"):
            out.append((bound_slice(trace, pair["s"])["args"]["seq"], bound_slice(trace, pair["f"])["args"]["seq"]))
    return sorted(out)


# -- the trace against synthetic timelines ---------------------------------------------------------
@pytest.mark.parametrize("runtime", ["python", "cpp"])
@pytest.mark.parametrize("seed", range(4))
def test_trace_matches_timeline(seed, runtime):
    run = concurrent(seed, threads=3, runtime=runtime, jitter=3)
    df = run.frame
    trace = json.loads(tr.to_json(tr.build_trace(df, {"command": ["x"]})))
    by_id = check_against_timeline(df, trace)
    assert prealloc_pairs(trace, by_id) == sorted(run.prealloc_links)
    if runtime == "python":
        assert run.prealloc_links, "the scenario should reuse pre-allocated outputs at least once"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**9), st.integers(1, 3), st.sampled_from(["python", "cpp"]), st.integers(0, 4000),
       st.booleans())
def test_trace_matches_timeline_property(seed, threads, runtime, jitter, shared):
    run = concurrent(seed, threads=threads, runtime=runtime, jitter=jitter, shared_caller=shared)
    df = run.frame.sample(frac=1, random_state=seed % 1000)  # row order must not matter
    trace = json.loads(tr.to_json(tr.build_trace(df)))
    by_id = check_against_timeline(df, trace)
    assert prealloc_pairs(trace, by_id) == sorted(run.prealloc_links)


def test_shared_stream_gets_sub_tracks_and_names():
    run = concurrent(1, threads=3, jitter=0, shared_caller=True)
    df = run.frame
    trace = tr.build_trace(df)
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    gp = gpu_pid(trace)
    gpu_tracks = {n for (p, _), n in names.items() if p == gp}
    assert "stream 0x0 (legacy default)" in gpu_tracks
    assert any(n.startswith("stream 0x0 (legacy default) #") for n in gpu_tracks), \
        "three threads' inferences on one stream cross: they need sub-tracks"
    for s in df["stream"].dropna().unique():
        assert any(n.startswith(f"stream {int(s):#x}") for n in gpu_tracks)
    host_pids = {e["pid"] for e in trace["traceEvents"] if e["name"] == "process_name" and e["pid"] != gp}
    assert host_pids == {4242}
    all_ids = {e["tid"] for e in slices(trace)}
    assert not all_ids & (host_pids | {gp}), "tids must not reuse a pid"


def test_checker_catches_crossing_slices(monkeypatch):
    df = concurrent(1, threads=3, shared_caller=True).frame
    monkeypatch.setattr(tr, "_tracks", lambda spans: ([0] * len(spans), [-1] * len(spans)))
    problems = tr.check_nesting(tr.build_trace(df))
    assert problems and "crosses" in problems[0]


def test_checkers_on_hand_made_traces():
    def x(name, ts, dur, tid=1):
        return {"name": name, "ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur}
    ok = {"traceEvents": [x("a", 0, 10), x("b", 0, 10), x("c", 2, 3), x("d", 5, 5), x("e", 10, 0), x("f", 3, 9, 2)]}
    assert tr.check_nesting(ok) == []
    bad = {"traceEvents": [x("a", 0, 10), x("b", 9.999, 0.002)]}
    assert len(tr.check_nesting(bad)) == 1
    assert len(tr.check_nesting({"traceEvents": [x("short", 0, 5), x("long", 0, 10)]})) == 1  # file order
    assert tr.check_nesting({"traceEvents": [x("a", -1, 1)]})
    inst = {"traceEvents": [x("a", 0, 10), {"name": "i", "ph": "i", "s": "t", "pid": 1, "tid": 1, "ts": 10.5}]}
    assert tr.check_nesting(inst) == []
    s = {"name": "n", "cat": "flow", "ph": "s", "id": 7, "pid": 1, "tid": 1, "ts": 1}
    f = dict(s, ph="f", bp="e", ts=4)
    assert tr.check_flows({"traceEvents": [x("a", 0, 10), s, f]}) == []
    assert tr.check_flows({"traceEvents": [x("a", 0, 10), s]})
    assert tr.check_flows({"traceEvents": [x("a", 0, 10), s, f, dict(f)]})
    assert tr.check_flows({"traceEvents": [x("a", 0, 10), s, dict(f, bp=None)]})
    assert tr.check_flows({"traceEvents": [x("a", 0, 10), s, dict(f, ts=20)]})


def test_negative_gpu_duration_kept_visible():
    df = concurrent(2, threads=1).frame
    i = df.index[df["gpu_start_ns"].notna()][0]
    df.loc[i, "gpu_end_ns"] = df.loc[i, "gpu_start_ns"] - 5
    trace = tr.build_trace(df)
    g = [e for e in slices(trace) if e["pid"] == gpu_pid(trace) and e["args"]["seq"] == df.at[i, "seq"]]
    assert len(g) == 1 and g[0]["dur"] == 0 and g[0]["args"]["negative_duration_ns"] == -5
    assert tr.check_nesting(trace) == []


HOSTILE = ['q"uo\\te', "</script><script>alert(1)</script>", "ünï 名前 🚀", "new\nline\ttab", "\x00\x1f", "\u2028"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_give_valid_json(name, tmp_path):
    df = concurrent(3, threads=1).frame
    df["subgraph"] = (name + df["subgraph"]).astype("string")
    df["model"] = df["note"] = pd.Series(name, index=df.index, dtype="string")
    path = _write(tmp_path / "t.json", lambda f: tr.write_trace(df, f, {"command": [name]}))
    raw = path.read_bytes()
    trace = json.loads(raw.decode("utf-8"))  # strict UTF-8 and strict JSON
    assert b"\\ud83d" not in raw  # no surrogate-pair escapes: Perfetto's parser rejects them
    assert all(e["name"].startswith(name) for e in slices(trace))
    assert trace["otherData"]["trtprof"]["command"] == [name]
    check_against_timeline(df, trace)


def test_lone_surrogate_is_replaced_not_fatal(tmp_path):
    """A frame built by hand (object column) can hold what UTF-8 cannot encode; the export survives it."""
    df = concurrent(3, threads=1).frame
    df["subgraph"] = pd.Series([s + "\ud800" for s in df["subgraph"]], dtype=object)
    text = _write(tmp_path / "t.json", lambda f: tr.write_trace(df, f)).read_text(encoding="utf-8")
    assert all("\ud800" not in e["name"] for e in slices(json.loads(text)))


def test_empty_timeline_gives_empty_trace():
    trace = tr.build_trace(schema.empty_frame())
    assert slices(trace) == [] and tr.check_nesting(trace) == [] and tr.check_flows(trace) == []


# -- CSV ------------------------------------------------------------------------------------------
def test_csv_round_trip(tmp_path):
    df = concurrent(5, threads=2).frame
    df.at[0, "note"] = 'comma, "quote"\nnewline'
    back = pd.read_csv(_write(tmp_path / "t.csv", lambda f: write_csv(df, f)), keep_default_na=False, na_values=[""])
    assert list(back.columns) == list(schema.COLUMNS)
    assert len(back) == len(df)
    assert back["note"][0] == 'comma, "quote"\nnewline'
    for col in ("seq", "thread", "host_start_ns", "host_end_ns"):
        assert back[col].tolist() == df[col].tolist()
    assert back["gpu_start_ns"].astype("Int64").tolist() == df["gpu_start_ns"].tolist()


# -- CLI ------------------------------------------------------------------------------------------
def write_capture(folder, df):
    w = CaptureWriter(folder, {"command": ["test"]})
    w.write([[r[f] if not pd.isna(r[f]) else None for f in FIELDS] for r in df.to_dict("records")])
    w.close()
    return folder


def invoke(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)])


def test_cli_perfetto_default_path(tmp_path):
    df = concurrent(6).frame
    cap = write_capture(tmp_path / "cap", df)
    res = invoke(cap)
    assert res.exit_code == 0, res.output
    out = cap / "trace.json"
    assert f"trace written: {out} — open it at ui.perfetto.dev (Open trace file) or chrome://tracing" in res.stderr
    trace = json.loads(out.read_text(encoding="utf-8"))
    check_against_timeline(trtprof.load(cap), trace)
    assert not list(cap.glob("*.tmp"))


def test_cli_csv_to_file_and_dir(tmp_path):
    cap = write_capture(tmp_path / "cap", concurrent(7).frame)
    res = invoke(cap / "timeline.parquet", "--format", "csv", "-o", tmp_path / "x.csv")
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "x.csv")) == len(trtprof.load(cap))
    assert f"timeline written: {tmp_path / 'x.csv'}" in res.stderr
    (tmp_path / "d").mkdir()
    assert invoke(cap, "-f", "csv", "-o", tmp_path / "d").exit_code == 0
    assert (tmp_path / "d" / "timeline.csv").is_file()


def test_cli_incomplete_capture_exports_with_a_note(tmp_path):
    df = concurrent(10).frame
    w = CaptureWriter(tmp_path / "cap", {"command": ["test"]})  # never closed: as if the process died
    w.write([[r[f] if not pd.isna(r[f]) else None for f in FIELDS] for r in df.to_dict("records")])
    res = invoke(tmp_path / "cap")
    assert res.exit_code == 0, res.output
    assert "note: the capture is incomplete" in res.stderr
    check_against_timeline(df, json.loads((tmp_path / "cap" / "trace.json").read_text(encoding="utf-8")))


def test_cli_quiet(tmp_path):
    cap = write_capture(tmp_path / "cap", concurrent(8).frame)
    res = invoke(cap, "-q")
    assert res.exit_code == 0 and res.output == ""
    assert (cap / "trace.json").is_file()


def _one_line_error(res, code):
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trtprof: ")
    return lines[0]


def test_cli_errors(tmp_path):
    assert "no capture" in _one_line_error(invoke(tmp_path / "missing"), ExitCode.BAD_CAPTURE)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_text("{not json")
    _one_line_error(invoke(tmp_path / "bad"), ExitCode.BAD_CAPTURE)
    empty = write_capture(tmp_path / "empty", schema.empty_frame())
    assert "no rows" in _one_line_error(invoke(empty), ExitCode.EMPTY_CAPTURE)
    cap = write_capture(tmp_path / "cap", concurrent(9).frame)
    (tmp_path / "afile").write_text("")
    msg = _one_line_error(invoke(cap, "-o", tmp_path / "afile" / "t.json"), ExitCode.BAD_OUTPUT)
    assert "cannot write" in msg and "is a file, not a folder" in msg
    assert CliRunner().invoke(main, ["export", str(cap), "--format", "svg"]).exit_code == 2


def test_cli_help_has_example():
    res = CliRunner().invoke(main, ["export", "--help"])
    assert res.exit_code == 0 and "Example" in res.output and "--format" in res.output
    assert "export" in CliRunner().invoke(main, ["--help"]).output


# -- end to end on a CPU capture --------------------------------------------------------------------
@pytest.mark.fake_trt
def test_cpu_capture_end_to_end(tmp_path):
    from cpu_models import partitioned, prealloc_scenario

    m = partitioned("python")
    with trtprof.profile(out=tmp_path / "cap"):
        prealloc_scenario(m)
    res = invoke(tmp_path / "cap")
    assert res.exit_code == 0, res.output
    df = trtprof.load(tmp_path / "cap")
    trace = json.loads((tmp_path / "cap" / "trace.json").read_text(encoding="utf-8"))
    assert gpu_pid(trace) is None and df["gpu_start_ns"].isna().all()  # CPU: host lanes only
    by_id = check_against_timeline(df, trace)
    pairs = prealloc_pairs(trace, by_id)
    seq = df.set_index("seq")
    assert pairs and all(seq.at[a, "alloc_phase"] == "after_enqueue" and seq.at[c, "outputs"] == "preallocated"
                         and seq.at[a, "subgraph"] == seq.at[c, "subgraph"] for a, c in pairs)
    reused = df[(df["event"] == "call") & (df["outputs"] == "preallocated")]
    assert sorted(c for _, c in pairs) == sorted(reused["seq"])
    assert any(e["ph"] == "i" for e in trace["traceEvents"])  # the (3, 8) batch changed shapes


# -- flows never go backwards -----------------------------------------------------------------------
def _early(df, rnd, move_end=True):
    """GPU starts moved before their host start on some exec rows (by up to the whole host range and more),
    as schema-1 captures hold them: a frame the loader has not clamped. `move_end`: some GPU ends move
    back too, even before the host start (no arrow can go forward there, clamped or not)."""
    df = df.copy()
    ex = df.index[(df["event"] == "exec") & df["gpu_start_ns"].notna()]
    for i in ex:
        if rnd.random() < 0.6:
            back = rnd.randint(1, 3 * max(int(df.at[i, "host_end_ns"] - df.at[i, "host_start_ns"]), 1) + 20_000)
            df.at[i, "gpu_start_ns"] = df.at[i, "host_start_ns"] - back
            df.at[i, "gpu_end_ns"] = max(int(df.at[i, "gpu_end_ns"]) - (rnd.choice([0, back]) if move_end else 0),
                                        int(df.at[i, "gpu_start_ns"]))
    return df


def forward(trace):
    """(start ts, finish ts) of every flow, each paired by id."""
    ends = {}
    for ev in trace["traceEvents"]:
        if ev["ph"] in "sf":
            ends.setdefault(ev["id"], {})[ev["ph"]] = ev["ts"]
    return [(e["s"], e["f"]) for e in ends.values()]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**9), st.integers(1, 3), st.sampled_from(["python", "cpp"]))
def test_every_flow_goes_forward_on_unclamped_times(seed, threads, runtime):
    df = _early(concurrent(seed, threads=threads, runtime=runtime).frame, random.Random(seed))
    trace = json.loads(tr.to_json(tr.build_trace(df)))
    pairs = forward(trace)
    assert all(f >= s for s, f in pairs), [p for p in pairs if p[1] < p[0]][:3]
    assert tr.check_flows(trace) == [] and tr.check_nesting(trace) == []
    timed_exec = int(((df["event"] == "exec") & df["gpu_start_ns"].notna()).sum())
    dropped = trace["otherData"]["flows_left_out_backwards"]
    enq = [e for e in trace["traceEvents"] if e["ph"] == "s" and e["name"] == "enqueue -> GPU"]
    assert len(enq) + dropped.get("enqueue -> GPU", 0) == timed_exec
    # a GPU slice over before its enqueue began has no forward arrow at all
    hopeless = (df["event"] == "exec") & (df["gpu_end_ns"] <= df["host_start_ns"]).fillna(False)
    assert dropped.get("enqueue -> GPU", 0) >= int(hopeless.sum())


def test_checker_catches_a_backward_flow():
    x = {"name": "a", "ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 10}
    s = {"name": "n", "cat": "flow", "ph": "s", "id": 1, "pid": 1, "tid": 1, "ts": 6}
    f = dict(s, ph="f", bp="e", ts=3)
    assert any("before it starts" in p for p in tr.check_flows({"traceEvents": [x, s, f]}))


def test_old_capture_exports_forward_flows_and_says_what_was_clamped(tmp_path):
    df = _early(concurrent(21, threads=2).frame, random.Random(21), move_end=False)
    early = int((df["gpu_start_ns"] < df["host_start_ns"]).fillna(False).sum())
    assert early
    cap = write_capture(tmp_path / "cap", df)
    meta = json.loads((cap / "meta.json").read_text())
    meta.pop("rules")
    (cap / "meta.json").write_text(json.dumps(dict(meta, schema_version=1)))
    res = invoke(cap)
    assert res.exit_code == 0, res.output
    assert f"note: {early} GPU start times clamped to the enqueue time" in res.stderr
    trace = json.loads((cap / "trace.json").read_text(encoding="utf-8"))
    assert all(f >= s for s, f in forward(trace)) and tr.check_flows(trace) == []
    assert trace["otherData"]["flows_left_out_backwards"] == {}  # clamped on load: every arrow kept
    assert trace["otherData"]["trtprof"]["repairs"]["gpu_start_not_before_host_start"]["rows"] == early


def test_cli_says_how_many_arrows_were_left_out(tmp_path, monkeypatch):
    from trtprof.timeline import schema as sch
    df = _early(concurrent(22, threads=1).frame, random.Random(1))
    monkeypatch.setattr(sch, "enforce_rules", lambda frame: {})  # a loader that did not clamp
    cap = write_capture(tmp_path / "cap", df)
    res = invoke(cap)
    trace = json.loads((cap / "trace.json").read_text(encoding="utf-8"))
    n = trace["otherData"]["flows_left_out_backwards"].get("enqueue -> GPU", 0)
    assert n and f"note: {n} 'enqueue -> GPU' arrow" in res.stderr and "would finish before starting" in res.stderr
    assert all(f >= s for s, f in forward(trace))


# -- the streamed trace (what `trtprof export` writes) against the whole-frame builder -------------------
def _normalised(trace) -> collections.Counter:
    """The trace's content with what is only bookkeeping taken out: event order, tid and flow id
    numbers (tracks are named by their process and thread names instead)."""
    evs = trace["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in evs if e.get("name") == "thread_name"}
    procs = {e["pid"]: e["args"]["name"] for e in evs if e.get("name") == "process_name"}
    flows, out = collections.defaultdict(dict), []
    for e in evs:
        if e["ph"] == "M":
            if e["name"] in ("thread_name", "process_name"):
                out.append(("M", e["name"], procs.get(e["pid"]), json.dumps(e["args"])))
            continue
        where = (procs.get(e["pid"]), names.get((e["pid"], e["tid"])))
        if e["ph"] in ("s", "f"):
            flows[e["id"]][e["ph"]] = (e["name"], where, e["ts"])
        else:
            out.append(("E", where, json.dumps({k: v for k, v in e.items() if k not in ("pid", "tid")}, sort_keys=True)))
    return collections.Counter(out + [("F", json.dumps(v, sort_keys=True)) for v in flows.values()])


def _streamed(folder) -> dict:
    import io

    from trtprof.render import perfetto_stream as ps
    from trtprof.timeline.scan import open_timeline

    tl = open_timeline(folder)
    f = io.StringIO()
    ps.write(f, ps.facts(tl.batches(ps.FACT_COLUMNS)), tl.in_time_order(ps.COLUMNS), tl.meta)
    return json.loads(f.getvalue())


def _small_groups(df, folder, rows=37):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(df.reset_index(drop=True), schema=schema.ARROW_SCHEMA, preserve_index=False),
                   folder / "timeline.parquet", row_group_size=rows)
    (folder / "meta.json").write_text(json.dumps({"schema_version": schema.SCHEMA_VERSION, "status": "complete",
                                                  "rules": list(schema.RULES)}))
    return folder


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_streamed_trace_is_the_built_trace(seed, shuffle, tmp_path):
    """Row groups of 37 rows (in recording order, or shuffled: then the sweep buffers more but must
    still give the same trace): every slice on the sub-track the builder gives it, the same flows."""
    run = concurrent(seed, threads=3, runtime=["python", "cpp"][seed % 2], jitter=2000 * seed, shared_caller=seed == 1)
    df = run.frame
    if shuffle:
        df = df.sample(frac=1, random_state=seed)
    cap = _small_groups(df, tmp_path / "c")
    full = trtprof.load(cap)
    built, streamed = tr.build_trace(full, full.attrs["trtprof"]), _streamed(cap)
    assert _normalised(streamed) == _normalised(built)
    assert streamed["otherData"] == json.loads(json.dumps(built["otherData"]))
    assert tr.check_nesting(streamed) == [] and tr.check_flows(streamed) == []
    by_id = check_against_timeline(full, streamed)
    assert prealloc_pairs(streamed, by_id) == sorted(run.prealloc_links)


@pytest.mark.parametrize("case", ["small-cpp", "shapes-cpp", "breaks-cpp"])
def test_streamed_trace_of_committed_captures(case):
    """Old captures (clamped GPU starts, arrows left out backwards): the same trace as the builder's."""
    folder = Path(__file__).parent.parent / "reports" / "cases" / case
    full = trtprof.load(folder)
    built, streamed = tr.build_trace(full, full.attrs["trtprof"]), _streamed(folder)
    assert _normalised(streamed) == _normalised(built)
    assert streamed["otherData"] == json.loads(json.dumps(built["otherData"]))
