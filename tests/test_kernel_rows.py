"""Kernel activity in a capture folder: records spilled while recording, attributed at close, read
back; and the analyses that use them (GPU busy from kernels, per-subgraph busy/span, the verdict).
The records are hand-built in the layout KernelActivity.flush() returns (its CUPTI side runs on the
GPU machine: tests/gpu/test_gpu_capture.py::test_kernels_on_every_timed_row)."""
import json

import numpy as np
import pandas as pd
import pytest

import trtprof
from synthetic import frame
from trtprof.analysis import overlap, subgraphs
from trtprof.capture import records as R
from trtprof.timeline.store import CaptureWriter


def _rec(seq, event, kind, sub, t0, t1, g0=None, g1=None, inference=0, stream=0x10):
    r = R.blank()
    vals = dict(seq=seq, pid=1, thread=1, model="model0", inference=inference, subgraph=sub, subgraph_kind=kind,
                runtime="cpp" if kind == "engine" else "torch", event=event, call=inference, host_start_ns=t0,
                host_end_ns=t1, gpu_start_ns=g0, gpu_end_ns=g1, stream=stream if g0 is not None else None)
    for k, v in vals.items():
        r[R.INDEX[k]] = v
    return r


def _kernels(spans, stream=7, kind="kernel"):
    n = len(spans)
    return {"kind": np.array([kind] * n, dtype=object), "name": np.array([f"k{i}" for i in range(n)], dtype=object),
            "start_ns": np.array([s for s, _ in spans], dtype=np.int64),
            "end_ns": np.array([e for _, e in spans], dtype=np.int64),
            "stream": np.full(n, stream, dtype=np.int64), "correlation": np.arange(n, dtype=np.int64),
            "device": np.zeros(n, dtype=np.int64)}


def _capture(tmp_path, records, kernels_batches, version_meta=None):
    w = CaptureWriter(tmp_path / "c", {"command": ["x"]})
    w.write(records)
    for k in kernels_batches:
        w.write_kernels(k)
    w.close(status="complete")
    return trtprof.load_capture(tmp_path / "c")


ROWS = [_rec(0, "call", "engine", "_run_on_acc_0", 0, 100),
        _rec(1, "exec", "engine", "_run_on_acc_0", 0, 100, 10, 300),
        _rec(2, "fallback", "fallback", "_run_on_gpu_1", 100, 150, 300, 400),
        _rec(3, "inference", "model", "model0", 0, 160, 10, 400)]


def test_kernels_are_attributed_at_close(tmp_path):
    # two batches: kernels of the engine (on its pool stream 7), one crossing the bracket's end,
    # one of the fallback, one outside every window
    cap = _capture(tmp_path, ROWS, [_kernels([(50, 80), (60, 90), (200, 320)]),
                                    _kernels([(310, 330), (1000, 1010)], stream=9)])
    df = cap.timeline.set_index("seq")
    assert df.loc[1, "kernel_count"] == 3 and df.loc[1, "kernel_first_ns"] == 50
    assert df.loc[1, "kernel_last_ns"] == 320  # a late tail lengthens the row, never vanishes
    assert df.loc[1, "kernel_busy_ns"] == 40 + 120
    assert df.loc[2, "kernel_count"] == 1 and df.loc[2, "kernel_busy_ns"] == 20
    assert df.loc[3, "kernel_count"] == 4  # the inference sees every kernel in its window
    assert pd.isna(df.loc[0, "kernel_count"])  # a call row has no GPU window of its own
    k = cap.kernels
    assert len(k) == 5 and k.seq.tolist()[:4] == [1, 1, 1, 2] and pd.isna(k.seq.iloc[4])
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["kernels"]["records"] == 5 and meta["kernels"]["attributed"]["subgraph"]["outside"] == 1
    assert not (tmp_path / "c" / "kernels.arrows").exists()


def test_kernels_with_launch_times_go_to_the_row_that_launched_them(tmp_path):
    """Through the capture folder: a kernel queued during the fallback's host window (100-150) belongs to
    it though it runs inside the engine's event window; launch times are kept in kernels.parquet."""
    k = _kernels([(50, 80), (200, 220)])
    k["queued_ns"] = np.array([20, 120], dtype=np.int64)
    cap = _capture(tmp_path, ROWS, [k])
    df = cap.timeline.set_index("seq")
    assert df.loc[1, "kernel_count"] == 1 and df.loc[2, "kernel_count"] == 1 and df.loc[2, "kernel_first_ns"] == 200
    assert cap.kernels.seq.tolist() == [1, 2] and cap.kernels.queued_ns.tolist() == [20, 120]
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["kernels"]["attributed"]["subgraph"]["by_launch"] == 2


def test_without_kernels_the_columns_are_null_and_no_file(tmp_path):
    cap = _capture(tmp_path, ROWS, [])
    assert cap.timeline.kernel_count.isna().all() and cap.kernels is None


def test_a_schema_1_capture_loads_with_null_kernel_columns(tmp_path):
    cap = _capture(tmp_path, ROWS, [_kernels([(50, 80)])])
    import pyarrow.parquet as pq
    folder = tmp_path / "c"
    t = pq.read_table(folder / "timeline.parquet")
    pq.write_table(t.drop([c for c in t.column_names if c.startswith(("kernel_", "copy_"))]), folder / "timeline.parquet")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "schema_version": 1}))
    old = trtprof.load_capture(folder)
    assert list(old.timeline.columns) == list(cap.timeline.columns) and old.timeline.kernel_count.isna().all()


def test_overlapping_windows_on_one_stream_leave_shared_kernels_unattributed(tmp_path):
    rows = [_rec(0, "exec", "engine", "_run_on_acc_0", 0, 100, 10, 300),
            _rec(1, "exec", "engine", "_run_on_acc_0", 0, 100, 200, 500, inference=1)]  # two threads, one stream
    cap = _capture(tmp_path, rows, [_kernels([(50, 60), (250, 260), (450, 460)])])
    df = cap.timeline.set_index("seq")
    assert df.loc[0, "kernel_count"] == 1 and df.loc[1, "kernel_count"] == 1  # 250 lies in both: ambiguous


def test_hidden_and_exposed_from_kernels_not_from_the_bracket():
    """The C++ runtime's allocation inside the bracket: the bracket says all hidden; kernels say how much."""
    rows = [dict(event="call", host=(0, 1000), prealloc=True),
            dict(event="alloc", host=(100, 300), alloc_phase="after_enqueue", bytes=10),
            dict(event="exec", host=(0, 1000), gpu=(0, 1000), stream=0x100)]
    df = frame(rows)
    assert overlap.alloc_overlap(df)["exposed_ns"].iloc[0] == 0  # event bracket: "hidden"
    k = pd.DataFrame({"start_ns": [50, 250], "end_ns": [150, 260], "seq": pd.array([2, 2], dtype="Int64")})
    a = overlap.alloc_overlap(df, k)
    assert a["hidden_ns"].iloc[0] == 50 + 10 and a["exposed_ns"].iloc[0] == 200 - 60
    assert overlap.busy_source(df, k) == "kernels" and overlap.busy_source(df) == "event brackets"


def test_subgraph_table_kernel_columns_and_verdict():
    rows = []
    for i in range(4):
        b = i * 1000
        rows += [dict(event="call", host=(b, b + 900), inference=i),
                 dict(event="exec", host=(b, b + 900), gpu=(b + 10, b + 910), stream=0x100, inference=i),
                 dict(event="inference", subgraph="m", subgraph_kind="model", host=(b, b + 950), inference=i)]
    df = frame(rows)
    ex = df.event == "exec"
    df.loc[ex, "kernel_count"] = 5
    df.loc[ex, "kernel_first_ns"] = df.loc[ex, "gpu_start_ns"] + 100
    df.loc[ex, "kernel_last_ns"] = df.loc[ex, "gpu_start_ns"] + 600
    df.loc[ex, "kernel_busy_ns"] = 200
    t = subgraphs.table(df).set_index("subgraph")
    r = t.loc["_run_on_acc_0"]
    assert r.kernels_median == 5 and r.kernel_busy_us_median == pytest.approx(0.2)
    assert r.kernel_span_us_median == pytest.approx(0.5) and r.gpu_idle_us_median == pytest.approx(0.7)
    assert r.bound == "launch-bound"  # busy 22 % of the window (call start to last kernel), host 100 % of it
    df.loc[ex, "kernel_busy_ns"] = 450  # 90 % of the span, back to back, but the host took the whole window
    assert subgraphs.table(df).set_index("subgraph").loc["_run_on_acc_0", "bound"] == "mixed"


def _verdict(host_us, first_us, last_us, busy_us, brackets=True, kernels=5):
    """The verdict of an engine whose 4 calls start every 10 ms: host time, first/last kernel (from
    the call's start) and busy, in microseconds; with or without event brackets."""
    rows = []
    for i in range(4):
        b = i * 10_000_000
        rows += [dict(event="call", host=(b, b + host_us * 1000), inference=i),
                 dict(event="exec", host=(b, b + host_us * 1000), inference=i, stream=0x100,
                      **({"gpu": (b, b + max(host_us, last_us) * 1000)} if brackets else {}))]
    df = frame(rows)
    ex = (df.event == "exec").to_numpy()
    df.loc[ex, "kernel_count"] = kernels
    df.loc[ex, "kernel_first_ns"] = df.loc[ex, "host_start_ns"] + first_us * 1000
    df.loc[ex, "kernel_last_ns"] = df.loc[ex, "host_start_ns"] + last_us * 1000
    df.loc[ex, "kernel_busy_ns"] = busy_us * 1000
    return subgraphs.table(df).set_index("subgraph").loc["_run_on_acc_0", "bound"]


@pytest.mark.parametrize("brackets", [True, False])
def test_the_verdict_reads_kernels_and_host_times_not_the_bracket(brackets):
    # launch-bound: host 300 us, kernels from 10 to 310 us, busy 40 us (the H200 BERT engines' shape)
    assert _verdict(300, 10, 310, 40, brackets) == "launch-bound"
    # the same kernels behind a backlog: launched in 50 us, run 2 ms later back to back -> GPU-bound
    assert _verdict(50, 2000, 2300, 280, brackets) == "GPU-bound"
    # a 1-kernel fallback (busy = span) launched over 20 us: launch-bound, whatever its span says
    assert _verdict(20, 15, 17, 2, brackets) == "launch-bound"
    # neither: the GPU ran behind the host with gaps between its kernels
    assert _verdict(50, 2000, 2300, 100, brackets) == "mixed"
    # neither: back-to-back kernels, but the host took 79 % of the window and the GPU waited 55 us first
    assert _verdict(79, 55, 100, 45, brackets) == "mixed"
    # a call that ran no kernel (a view): nothing on the GPU to be bound by
    assert _verdict(20, 0, 0, 0, brackets, kernels=0) is None


def test_graph_break_cost_counts_the_gpu_wait_once():
    """acc_0 -> gpu_1 -> acc_2, kernels recorded: the fallback's event bracket (the GPU waiting for its
    Python) overlaps the idle gaps measured between kernel spans, so the break's cost is its kernel
    span plus those gaps: the time from acc_0's last kernel to acc_2's first, not more."""
    rows = []
    for i in range(3):
        b = i * 10_000
        rows += [dict(event="exec", subgraph="_run_on_acc_0", host=(b, b + 100), gpu=(b, b + 1000), inference=i),
                 dict(event="fallback", subgraph="_run_on_gpu_1", subgraph_kind="fallback", runtime="torch",
                      host=(b + 1000, b + 2000), gpu=(b + 1000, b + 2000), inference=i),
                 dict(event="exec", subgraph="_run_on_acc_2", host=(b + 2000, b + 2100), gpu=(b + 2000, b + 3000),
                      inference=i),
                 dict(event="inference", subgraph="m", subgraph_kind="model", host=(b, b + 3000), inference=i)]
    df = frame(rows)
    first = {"_run_on_acc_0": (100, 900), "_run_on_gpu_1": (1800, 1850), "_run_on_acc_2": (2100, 2900)}
    for sub, (k0, k1) in first.items():
        m = df.subgraph == sub
        base = df.loc[m, "gpu_start_ns"] - df.loc[m, "gpu_start_ns"] % 10_000
        df.loc[m, "kernel_count"] = 1
        df.loc[m, "kernel_first_ns"], df.loc[m, "kernel_last_ns"] = base + k0, base + k1
        df.loc[m, "kernel_busy_ns"] = k1 - k0
    infs = overlap.inferences(df)
    infs["excluded"] = False
    b = subgraphs.break_costs(df, overlap.gpu_gaps(df, infs), infs).set_index("subgraph").loc["_run_on_gpu_1"]
    assert b.fallback_us == pytest.approx(0.05)  # its kernel span, not its 1 us bracket
    assert b.gaps_us == pytest.approx((1800 - 900 + 2100 - 1850) / 1e3)
    assert b.break_cost_us_per_inference == pytest.approx((2100 - 900) / 1e3)


def test_busy_and_span_medians_cover_the_same_calls():
    """Calls recorded with no kernels count 0 in busy and in span: 3 of 4 calls without kernels give
    medians of 0 for both, not a busy of 0 beside the span of the one call that had kernels."""
    rows = []
    for i in range(4):
        b = i * 1000
        rows += [dict(event="fallback", subgraph="_run_on_gpu_1", subgraph_kind="fallback", runtime="torch",
                      host=(b, b + 900), gpu=(b + 10, b + 910), stream=0x100, inference=i),
                 dict(event="inference", subgraph="m", subgraph_kind="model", host=(b, b + 950), inference=i)]
    df = frame(rows)
    fb = (df.event == "fallback").to_numpy()
    df.loc[fb, "kernel_count"] = [1, 0, 0, 0]
    df.loc[fb, "kernel_busy_ns"] = [500, 0, 0, 0]
    df.loc[fb, "kernel_first_ns"] = pd.array([110, None, None, None], dtype="Int64")
    df.loc[fb, "kernel_last_ns"] = pd.array([610, None, None, None], dtype="Int64")
    r = subgraphs.table(df).set_index("subgraph").loc["_run_on_gpu_1"]
    assert r.kernels_median == 0 and r.kernel_busy_us_median == 0 and r.kernel_span_us_median == 0


@pytest.mark.parametrize("kernels, noted", [
    ({"records": 5000, "recorded": True}, True),  # kernels without the handover log: may hold stalls
    ({"records": 5000, "recorded": True, "handover": {"path": "raw", "buffers": 2}}, False),
    ({"records": 0, "recorded": False}, False),
    (None, False),
])
def test_a_capture_without_the_handover_log_warns_of_profiler_stalls(kernels, noted):
    from trtprof.analysis import report
    notes = report.kernel_notes({"kernels": kernels} if kernels is not None else {})
    assert bool(notes) == noted and all("handed them over" in n for n in notes)


def _spans_as_kernels(df: pd.DataFrame, brackets: bool) -> pd.DataFrame:
    """exec/fallback rows whose kernel span is their bracket (busy a third of it); with `brackets`
    False their events are gone, as at the minimal level where kernels go by launch time."""
    df = df.copy()
    sub = df["event"].isin(["exec", "fallback"]).to_numpy()
    df["kernel_first_ns"] = df["gpu_start_ns"].where(sub).astype(df["kernel_first_ns"].dtype)
    df["kernel_last_ns"] = df["gpu_end_ns"].where(sub).astype(df["kernel_last_ns"].dtype)
    df["kernel_busy_ns"] = ((df["kernel_last_ns"] - df["kernel_first_ns"]) // 3).astype(df["kernel_busy_ns"].dtype)
    df["kernel_count"] = pd.Series(np.where(sub, 4, pd.NA), dtype=df["kernel_count"].dtype)
    if not brackets:
        for c in ("gpu_start_ns", "gpu_end_ns"):
            df[c] = df[c].mask(sub)
    return df


def test_kernel_spans_without_event_brackets_give_the_gpu_figures():
    """Rows with kernel spans and no events (minimal level with kernel activity): hidden/exposed
    allocation, GPU idle gaps and the break cost come from the spans, as where events exist."""
    from synthetic import timeline
    from trtprof.analysis import report

    base = timeline(120, seed=4)
    with_events = report.analyse(_spans_as_kernels(base, True))
    spans_only = report.analyse(_spans_as_kernels(base, False))
    assert spans_only.gpu_times and spans_only.busy_source == "kernel spans"
    assert len(spans_only.gaps) == len(with_events.gaps) > 0
    pd.testing.assert_frame_equal(spans_only.exposure, with_events.exposure)
    cost = "break_cost_us_per_inference"
    assert spans_only.subgraphs[cost].notna().any()
    pd.testing.assert_series_equal(spans_only.subgraphs[cost], with_events.subgraphs[cost])
