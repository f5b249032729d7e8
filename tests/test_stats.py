"""Latency statistics, the bootstrap comparison and its verdict, the per-subgraph table, recommendations."""
import re

import numpy as np
import pandas as pd
import pytest

from synthetic import frame, timeline
from trtprof.analysis import bootstrap, latency, prealloc, report as analysis_report


def lat_frame(off, on, shape_off="(8,128)", shape_on="(8,128)", model="m"):
    n_off, n_on = len(off), len(on)
    return pd.DataFrame({
        "pid": 1, "model": model, "inference": np.arange(n_off + n_on),
        "mode": ["off"] * n_off + ["on"] * n_on, "excluded": False,
        "input_shapes": [shape_off] * n_off + ([shape_on] * n_on if isinstance(shape_on, str) else list(shape_on)),
        "host_ns": np.r_[off, on], "gpu_ns": np.nan, "latency_ns": np.r_[off, on].astype(float)})


def rng_ms(rng, median_ms, n, spread=0.05):
    return rng.normal(median_ms, spread * median_ms, n) * 1e6


# -- bootstrap ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [9, 10, 51])
def test_order_statistic_bootstrap_matches_resampling(n):
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 0.5, n)
    fast = bootstrap.bootstrap_median(x, 40_000, np.random.default_rng(2))
    idx = np.random.default_rng(3).integers(0, n, (40_000, n))
    slow = np.median(x[idx], axis=1)
    for q in (0.025, 0.25, 0.5, 0.75, 0.975):
        assert np.quantile(fast, q) == pytest.approx(np.quantile(slow, q), rel=0.03)
    assert fast.mean() == pytest.approx(slow.mean(), rel=0.01)


def test_bootstrap_is_deterministic_and_fast_for_large_n():
    import time
    x = np.random.default_rng(0).normal(1, 0.1, 500_000)
    t = time.perf_counter()
    a = bootstrap.bootstrap_median(x, 4000, np.random.default_rng(7))
    assert time.perf_counter() - t < 1.0
    assert np.array_equal(a, bootstrap.bootstrap_median(x, 4000, np.random.default_rng(7)))
    assert bootstrap.bootstrap_median([], 10).shape == (10,)


# -- comparison and verdict ---------------------------------------------------------------------------------
def test_saving_detected_with_ci_around_truth():
    rng = np.random.default_rng(5)
    c, = prealloc.compare_modes(lat_frame(rng_ms(rng, 1.2, 400), rng_ms(rng, 1.09, 400)))
    assert c.significant and c.saved_ms == pytest.approx(0.11, abs=0.02)
    assert c.ci_ms[0] < c.saved_ms < c.ci_ms[1] and c.ci_pct[0] < c.saved_pct < c.ci_pct[1]
    assert re.fullmatch(r"pre-allocated outputs saved 0\.\d+ ms per inference at the median \(\d %, CI \d+\u2013\d+ %\)", c.verdict), c.verdict


def test_no_difference():
    x = rng_ms(np.random.default_rng(6), 1.0, 301)
    c, = prealloc.compare_modes(lat_frame(x, np.random.default_rng(1).permutation(x)))
    assert c.saved_ms == 0 and not c.significant and c.verdict.startswith("no significant difference")
    assert c.ci_pct[0] < 0 < c.ci_pct[1]


def test_ci_is_calibrated():
    """Over many simulated runs the 95 % CI holds the true difference about 95 % of the time, and a
    zero difference is called significant about 5 % of the time."""
    covered = false_pos = 0
    reps = 150
    for s in range(reps):
        rng = np.random.default_rng(100 + s)
        c, = prealloc.compare_modes(lat_frame(rng_ms(rng, 1.2, 150), rng_ms(rng, 1.09, 150)), n_boot=1000, seed=s)
        covered += c.ci_ms[0] < 0.11 < c.ci_ms[1]
        c, = prealloc.compare_modes(lat_frame(rng_ms(rng, 1.2, 150), rng_ms(rng, 1.2, 150)), n_boot=1000, seed=s)
        false_pos += c.significant
    assert 0.88 <= covered / reps <= 0.99
    assert false_pos / reps <= 0.10


def test_slower_with_prealloc():
    rng = np.random.default_rng(7)
    c, = prealloc.compare_modes(lat_frame(rng_ms(rng, 1.0, 300), rng_ms(rng, 1.3, 300)))
    assert c.significant and c.saved_ms < 0
    assert re.fullmatch(r"pre-allocated outputs cost 0\.\d\d ms more per inference at the median \(\d+ %, CI \d+\u2013\d+ %\)", c.verdict)


def test_same_seed_same_verdict():
    rng = np.random.default_rng(8)
    lat = lat_frame(rng_ms(rng, 1.0, 50), rng_ms(rng, 0.97, 50))
    assert prealloc.compare_modes(lat)[0] == prealloc.compare_modes(lat)[0]


def test_one_mode_or_too_few_gives_no_comparison():
    rng = np.random.default_rng(9)
    c, = prealloc.compare_modes(lat_frame(rng_ms(rng, 1.0, 50), []))
    assert not c.significant and "were off in all 50" in c.verdict
    c, = prealloc.compare_modes(lat_frame(rng_ms(rng, 1.0, 50), rng_ms(rng, 0.5, 3)))
    assert not c.significant and "too few" in c.verdict
    assert prealloc.compare_modes(lat_frame([], [])[:0]) == []


def test_excluded_inferences_are_left_out():
    rng = np.random.default_rng(10)
    lat = lat_frame(rng_ms(rng, 1.0, 100), np.r_[rng_ms(rng, 1.0, 100), [50e6] * 80])
    lat.loc[lat["latency_ns"] > 10e6, "excluded"] = True
    c, = prealloc.compare_modes(lat)
    assert c.n_on == 100 and not c.significant


def test_compared_on_a_shape_both_modes_ran():
    rng = np.random.default_rng(11)
    on_shapes = ["(8,128)"] * 100 + ["(64,128)"] * 100
    lat = lat_frame(rng_ms(rng, 1.0, 100), np.r_[rng_ms(rng, 0.9, 100), rng_ms(rng, 5.0, 100)], shape_on=on_shapes)
    c, = prealloc.compare_modes(lat)
    assert c.shapes == ["(8,128)"] and c.n_on == 100 and c.saved_ms == pytest.approx(0.1, abs=0.03)
    assert c.verdict.endswith("on inputs (8,128)")


def test_latency_waits_for_the_gpu():
    df = frame([
        dict(event="inference", subgraph="m", subgraph_kind="model", inference=0, host=(0, 100), gpu=(10, 250)),
        dict(event="inference", subgraph="m", subgraph_kind="model", inference=1, host=(1000, 1300), gpu=(1010, 1200)),
        dict(event="inference", subgraph="m", subgraph_kind="model", inference=2, host=(2000, 2050)),
        dict(event="call", inference=0, prealloc=True, host=(1, 2)),
    ])
    lat = latency.inference_latency(df)
    assert lat["latency_ns"].tolist() == [250, 300, 50]
    assert lat["mode"].tolist() == ["on", "none", "none"]
    s = latency.latency_summary(lat, ("model",))
    assert s["n"].tolist() == [3] and s["median_ms"].tolist() == [250 / 1e6]


# -- per subgraph --------------------------------------------------------------------------------------------
def test_subgraph_table_and_break_cost_by_hand():
    B = 0x200
    rows = [
        dict(event="call", host=(0, 60), prealloc=False),
        dict(event="alloc", host=(5, 25), alloc_phase="before_exec", bytes=1000),
        dict(event="exec", host=(25, 40), gpu=(30, 130), stream=0x100),
        dict(event="fallback", subgraph="_run_on_gpu_1", subgraph_kind="fallback", runtime="torch",
             host=(60, 90), gpu=(150, 170), stream=B),
        dict(event="call", subgraph="_run_on_acc_2", host=(90, 200), prealloc=False),
        dict(event="alloc", subgraph="_run_on_acc_2", host=(100, 160), alloc_phase="before_exec", bytes=500),
        dict(event="exec", subgraph="_run_on_acc_2", host=(160, 170), gpu=(180, 200), stream=0x100),
        dict(event="inference", subgraph="m", subgraph_kind="model", host=(0, 210), gpu=(0, 200)),
    ]
    r = analysis_report.analyse(frame(rows), n_boot=100)
    t = r.subgraphs.set_index("subgraph")
    assert t.loc["_run_on_acc_0", "calls"] == 1 and t.loc["_run_on_acc_0", "gpu_us_median"] == pytest.approx(0.1)
    assert t.loc["_run_on_acc_0", "exposed_ms_total"] == pytest.approx(20e-6)
    # acc_2's allocation 100..160: GPU busy 100..130 and 150..160 -> hidden 40 ns, exposed 20 ns
    assert t.loc["_run_on_acc_2", "hidden_ms_total"] == pytest.approx(40e-6)
    assert t.loc["_run_on_acc_2", "exposed_ms_total"] == pytest.approx(20e-6)
    assert t.loc["_run_on_acc_2", "bytes_total"] == 500
    # break = fallback GPU 20 + gap before (130..150) 20 + gap after (170..180) 10
    assert t.loc["_run_on_gpu_1", "break_cost_us_per_inference"] == pytest.approx(0.050)
    assert t.loc["_run_on_gpu_1", "kind"] == "fallback" and np.isnan(t.loc["_run_on_acc_0", "break_cost_us_per_inference"])
    assert list(t.index) == ["_run_on_acc_0", "_run_on_gpu_1", "_run_on_acc_2"]


# -- recommendations -----------------------------------------------------------------------------------------
def _actions(r):
    return " | ".join(r.recommendations["action"])


def test_recommends_prealloc_when_allocations_are_exposed():
    r = analysis_report.analyse(timeline(200, prealloc=False, seed=1))
    rec = r.recommendations[r.recommendations["action"].str.startswith("Turn on pre-allocated outputs")]
    assert len(rec) == 1
    exposed = r.exposure.loc[r.exposure["mode"] == "off", "exposed_ns_per_inference"].sum() / 1e6
    assert rec["gain_ms"].iloc[0] == pytest.approx(exposed)
    assert rec["basis"].iloc[0].startswith("estimated")


def test_measured_saving_becomes_a_recommendation():
    r = analysis_report.analyse(timeline(300, seed=2))
    c = r.comparisons[0]
    assert c.significant and c.saved_ms > 0
    rec = r.recommendations[r.recommendations["action"] == "Keep pre-allocated outputs on"]
    assert rec["gain_ms"].iloc[0] == pytest.approx(c.saved_ms) and rec["basis"].iloc[0].startswith("measured")


def test_recommends_fixed_shapes_when_they_change_often_with_prealloc():
    r = analysis_report.analyse(timeline(200, prealloc=True, shapes=["(8,128)", "(4,128)"] * 100, seed=3))
    assert "Keep input shapes fixed" in _actions(r)
    rare = analysis_report.analyse(timeline(200, prealloc=True, shapes=["(8,128)"] * 199 + ["(4,128)"], seed=3))
    assert "Keep input shapes fixed" not in _actions(rare)


def test_graph_break_recommendation_and_its_absence():
    r = analysis_report.analyse(timeline(100, seed=4))
    assert "Remove the graph break at _run_on_gpu_1" in _actions(r)
    cheap = timeline(100, seed=4, alloc_us=0.05, noise=0.0)
    cheap = cheap[cheap["event"] != "fallback"]  # no graph break at all
    r2 = analysis_report.analyse(cheap)
    assert "graph break" not in _actions(r2)
    assert "Turn on" not in _actions(r2) and "Keep input shapes" not in _actions(r2)


def test_without_gpu_times_gains_are_upper_bounds():
    r = analysis_report.analyse(timeline(100, prealloc=False, gpu=False))
    assert not r.gpu_times and r.gaps.empty
    rec = r.recommendations[r.recommendations["action"].str.startswith("Turn on")]
    assert rec["basis"].iloc[0].startswith("upper bound")
    assert rec["gain_ms"].iloc[0] == pytest.approx(r.exposure["alloc_ns_per_inference"].sum() / 1e6)


def test_analyse_empty_and_outside_inference():
    r = analysis_report.analyse(frame([]))
    assert r.latency.empty and r.recommendations.empty and r.comparisons == []
    r = analysis_report.analyse(frame([dict(event="call", inference=-1, host=(0, 10)),
                             dict(event="exec", inference=-1, host=(2, 8))]))
    assert r.latency.empty and r.subgraphs["calls"].tolist() == [1]


# -- any timeline, however odd: no exception, and the invariants hold --------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EVENTS = ["inference", "call", "alloc", "exec", "fallback"]
KIND = {"inference": "model", "call": "engine", "alloc": "engine", "exec": "engine", "fallback": "fallback"}


@st.composite
def odd_rows(draw):
    n = draw(st.integers(0, 40))
    rows = []
    for _ in range(n):
        ev = draw(st.sampled_from(EVENTS))
        s = draw(st.integers(0, 10_000))
        e = s + draw(st.integers(-50, 2_000))  # sometimes reversed
        row = dict(event=ev, subgraph_kind=KIND[ev], host=(s, e), pid=draw(st.sampled_from([1, 2])),
                   inference=draw(st.integers(-1, 4)), call=draw(st.integers(0, 5)),
                   subgraph=draw(st.sampled_from(["_run_on_acc_0", "_run_on_gpu_1", "<b>x</b>"])),
                   prealloc=draw(st.sampled_from([True, False, None])),
                   input_shapes=draw(st.sampled_from(["(1,2)", "(3,2)", None])),
                   shape_changed=draw(st.sampled_from([True, False, None])),
                   reallocated=draw(st.sampled_from([True, False, None])),
                   exclude=draw(st.sampled_from([True, False, None])),
                   alloc_phase=draw(st.sampled_from(["before_exec", "after_enqueue", None])),
                   bytes=draw(st.sampled_from([None, 0, 64])))
        if draw(st.booleans()):
            g = draw(st.integers(0, 12_000))
            row["gpu"] = (g, g + draw(st.integers(-10, 3_000)))
            row["stream"] = draw(st.sampled_from([0, 7, None]))
        rows.append(row)
    return frame(rows)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_rows())
def test_analysis_of_any_timeline(df):
    r = analysis_report.analyse(df, n_boot=50)
    a = r.allocs
    known = a["hidden_ns"].notna()
    assert ((a["hidden_ns"] + a["exposed_ns"])[known] == a["alloc_ns"][known]).all()
    assert (a["hidden_ns"][known] >= 0).all() and (a["exposed_ns"][known] >= 0).all()
    if len(r.gaps):
        cats = r.gaps[["alloc_ns", "fallback_ns", "enqueue_ns", "python_ns"]]
        assert (cats >= 0).all().all() and (cats.sum(axis=1) == r.gaps["gap_ns"]).all()
        assert (r.gaps["gap_ns"] > 0).all()
    assert (r.latency["latency_ns"] >= r.latency["host_ns"]).all() or r.latency.empty
    assert r.recommendations["gain_ms"].notna().all()
