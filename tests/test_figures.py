"""The report's figures: valid plotly, honest labels, and scales set by the steady state.

Figures are plain plotly.js data (render/figures.py says why); every one built here is passed through
plotly's own validation so a misspelt property fails a test instead of being dropped by plotly.js.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from synthetic import frame, timeline

from trtprof.analysis.report import analyse
from trtprof.render import figures, timeline_fig
from trtprof.timeline.store import load_capture

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "reports" / "cases"


def _all_figures(cap):
    r = analyse(cap.timeline, n_boot=50, kernels=cap.kernels)
    win, centre, why = timeline_fig.choose_window(cap.timeline, r.infs, r.changes, r.latency)
    out = {"timeline": timeline_fig.timeline_figure(cap.timeline, win, centre, why, r.allocs, r.gaps, r.streams),
           "histogram": figures.latency_histogram(r.latency), "over_run": figures.latency_over_run(r.latency),
           "exposure": figures.exposure_figure(r.exposure, r.busy_source)}
    if len(r.gap_summary):
        out["gaps"] = figures.gaps_figure(r.gap_summary, r.busy_source)
    return r, out


def _names(fig) -> list[str]:
    return [t.get("name", "") for t in fig.data]


@pytest.mark.parametrize("case", ["small-python", "breaks-cpp", "shapes-cpp"])
def test_every_figure_is_valid_plotly(case):
    _, figs = _all_figures(load_capture(CASES / case))
    for name, fig in figs.items():
        go.Figure(fig.to_dict())  # raises ValueError on any property plotly does not know


def test_legend_sits_above_the_plot_not_over_the_axis_labels():
    _, figs = _all_figures(load_capture(CASES / "breaks-cpp"))
    for fig in figs.values():
        leg = fig.layout["legend"]
        assert leg["yanchor"] == "bottom" and leg["y"] >= 1.0
        assert fig.layout["margin"]["b"] < fig.layout["margin"]["t"]


def test_reallocations_are_marked_by_cause_never_all_as_shape_changes():
    """small-python has no shape change: its re-allocations are first calls after switching on."""
    r, figs = _all_figures(load_capture(CASES / "small-python"))
    names = _names(figs["timeline"])
    causes = set(r.allocs["realloc_cause"].dropna())
    assert "shape" not in causes and causes  # the capture has re-allocations, none from a shape change
    assert not any("input shape changed (buffer" in n for n in names)
    for cause in causes:
        assert f"re-allocation: {figures_cause(cause)}" in names


def figures_cause(key):
    from trtprof.analysis.shapes import REALLOC_CAUSES

    return REALLOC_CAUSES[key]


def test_each_cause_has_its_own_colour_and_legend_entry():
    from trtprof.analysis.shapes import REALLOC_CAUSES

    colours = [figures.COLORS[k] for k in REALLOC_CAUSES]
    assert len(set(colours)) == len(colours)
    assert not set(colours) & {figures.COLORS["before_exec"], figures.COLORS["after_enqueue"]}


def test_gpu_bars_say_bracket_without_kernels_and_kernel_span_with_them():
    cap = load_capture(CASES / "small-cpp")  # as taken without CUPTI: no kernel columns
    ks = [c for c in cap.timeline.columns if c.startswith("kernel_")]
    cap.timeline = cap.timeline.assign(**{c: pd.array([pd.NA] * len(cap.timeline), dtype=cap.timeline[c].dtype)
                                          for c in ks})
    _, plain = _all_figures(cap)
    names = _names(plain["timeline"])
    assert any("CUDA-event bracket" in n for n in names) and not any("kernel span" in n for n in names)
    assert not any(n in ("engine (GPU)", "fallback kernels (GPU)") for n in names)
    _, kern = _all_figures(load_capture(ROOT / "reports" / "bert" / "cpp"))
    names = _names(kern["timeline"])
    assert "engine: kernel span (first kernel start to last end)" in names
    span = next(t for t in kern["timeline"].data if t.get("name", "").startswith("engine: kernel span"))
    assert "busy" in span["hovertext"][0] and "kernels" in span["hovertext"][0]


def test_gpu_lanes_are_named_by_role_not_by_handle():
    _, figs = _all_figures(load_capture(CASES / "small-python"))
    lanes = figs["timeline"].layout["yaxis"]["categoryarray"]
    gpu = [lane for lane in lanes if lane.startswith("GPU \u00b7")]
    assert gpu and not any("0x" in lane for lane in gpu)


def test_warm_up_stays_visible_but_out_of_the_scale():
    lat = pd.DataFrame({"model": "m", "pid": 1, "inference": np.arange(200), "mode": "off",
                        "excluded": [True] + [False] * 199,
                        "latency_ns": [200e6] + list(np.linspace(1.0e6, 1.2e6, 198)) + [1.1e6]})
    fig = figures.latency_over_run(lat)
    lo, hi = fig.layout["yaxis"]["range"]
    assert 1.2 <= hi < 1.5 and lo < 1.0  # ms: the steady state fills the axis
    warm = next(t for t in fig.data if t.get("name", "").startswith("excluded"))
    assert warm["y"][0] == hi and warm["marker"]["symbol"][0] == "triangle-up" and "200.000 ms" in warm["hovertext"][0]


def test_a_slow_included_inference_is_clipped_with_its_value_in_the_hover():
    v = np.full(5000, 1.0e6)
    v[2500] = 50e6
    lat = pd.DataFrame({"model": "m", "pid": 1, "inference": np.arange(5000), "mode": "on", "excluded": False,
                        "latency_ns": v})
    fig = figures.latency_over_run(lat)
    hi = fig.layout["yaxis"]["range"][1]
    assert hi < 2
    above = next(t for t in fig.data if t.get("name", "").startswith("above the axis"))
    assert list(above["x"]) == [2500] and "50.000 ms" in above["hovertext"][0]


def test_overlap_figures_name_what_gpu_busy_is_measured_from():
    """The overlap chart said 'hidden (GPU busy)' and the gap chart 'GPU idle' without saying whether
    busy came from kernels or from CUDA-event brackets (which count the GPU waiting as busy)."""
    cap = load_capture(CASES / "breaks-cpp")  # kernel columns (CUPTI), kernels.parquet left out
    r, figs = _all_figures(cap)
    assert r.busy_source == "kernel spans"
    assert "GPU busy measured from each call's kernel span" in figs["exposure"].layout["title"]["text"]
    assert "GPU work measured as its kernel span" in figs["gaps"].layout["title"]["text"]
    ks = [c for c in cap.timeline.columns if c.startswith("kernel_")]
    cap.timeline = cap.timeline.assign(**{c: pd.array([pd.NA] * len(cap.timeline), dtype=cap.timeline[c].dtype)
                                          for c in ks})
    r, figs = _all_figures(cap)
    assert r.busy_source == "event brackets"
    assert "CUDA-event brackets" in figs["exposure"].layout["title"]["text"]
    assert "its CUDA-event bracket" in figs["gaps"].layout["title"]["text"]
    assert "measured" not in figures.exposure_figure(r.exposure).layout["title"]["text"]  # no source, no claim


def test_unknown_allocation_split_is_drawn_as_unknown():
    ex = pd.DataFrame({"model": "m", "subgraph": ["_run_on_acc_0", "_run_on_acc_0"], "mode": ["off", "on"],
                       "alloc_ns_per_inference": [30e3, 10e3], "hidden_ns_per_inference": [np.nan, 4e3],
                       "exposed_ns_per_inference": [np.nan, 6e3]})
    fig = figures.exposure_figure(ex)
    by = {t["name"]: list(t["y"]) for t in fig.data}
    assert by["hidden (GPU busy)"] == [0, 4] and by["exposed (GPU idle)"] == [0, 6]
    assert by["unknown (no kernel data: see the note above)"] == [30, 0]


def _python_brute(rows: pd.DataFrame) -> list[list[int]]:
    out = []
    for key, g in rows.groupby(["model", "pid", "inference"], sort=False):
        inf = g[g["event"] == "inference"]
        span = inf if len(inf) else g
        lo, hi = int(span["host_start_ns"].min()), int(span["host_end_ns"].max())
        covered = np.zeros(hi - lo, bool)
        for s, e in zip(g.loc[g["event"].isin(["alloc", "exec", "fallback"]), "host_start_ns"],
                        g.loc[g["event"].isin(["alloc", "exec", "fallback"]), "host_end_ns"]):
            covered[max(s, lo) - lo:max(min(e, hi), lo) - lo] = True
        edges = np.flatnonzero(np.diff(np.r_[True, covered, True].astype(int)))
        out += [[key[2], lo + int(a), lo + int(b)] for a, b in zip(edges[::2], edges[1::2])]
    return out


@pytest.mark.parametrize("seed", range(6))
def test_python_intervals_equal_a_brute_force_cover(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(5):
        base = 1000 * i
        if i != 3:
            rows.append(dict(event="inference", subgraph="m", subgraph_kind="model", inference=i, host=(base, base + 300)))
        for _ in range(rng.integers(0, 6)):
            s = base + int(rng.integers(-20, 300))
            rows.append(dict(event=str(rng.choice(["alloc", "exec", "fallback", "call"])), inference=i,
                             host=(s, s + int(rng.integers(1, 80)))))
        if i == 3:
            rows.append(dict(event="call", inference=3, host=(base, base + 100)))
    df = frame(rows)
    got = timeline_fig.python_intervals(df)[["inference", "start_ns", "end_ns"]].values.tolist()
    assert got == _python_brute(df)


def test_timeline_of_a_synthetic_capture_is_valid(tmp_path):
    from synthetic import write_capture

    shapes = ["(1,8)" if i % 7 else "(2,8)" for i in range(120)]
    write_capture(timeline(120, prealloc=(np.arange(120) // 30) % 2 == 1, shapes=shapes), tmp_path / "c")
    _, figs = _all_figures(load_capture(tmp_path / "c"))
    for fig in figs.values():
        go.Figure(fig.to_dict())


def _compare_figures(a, b):
    from trtprof.analysis import compare
    from trtprof.render import compare_html

    res = compare.compare_timelines(a, b, n_boot=50)
    return res, {"latency": compare_html.latency_figure(res), "subgraphs": compare_html.subgraph_figure(res.subgraphs)}


@pytest.mark.parametrize("pair", [("small-python", "small-cpp"), ("breaks-cpp", "../cudagraphs/small-cpp"),
                                  ("shapes-cpp", "shapes-cpp")])
def test_every_compare_figure_is_valid_plotly(pair):
    a, b = (load_capture(CASES / c).timeline for c in pair)
    _, figs = _compare_figures(a, b)
    for fig in figs.values():
        assert fig.data
        go.Figure(fig.to_dict())


def test_compare_figures_of_a_synthetic_pair_are_valid_and_mark_zero():
    res, figs = _compare_figures(timeline(80, seed=1), timeline(80, seed=2, engines=("_run_on_acc_0", "_run_on_acc_3")))
    for fig in figs.values():
        go.Figure(fig.to_dict())
    sub = figs["subgraphs"]
    assert [t["name"] for t in sub.data] == ["GPU time per call (CUDA-event bracket)",
                                            "host time per call (the whole call)"]
    assert list(sub.data[0]["y"]) == ["_run_on_acc_0", "_run_on_gpu_1"]  # the subgraphs in both only
    (zero,) = sub.layout["shapes"]
    assert zero["x0"] == zero["x1"] == 0 and zero["yref"] == "y domain"
    lat = figs["latency"]
    assert [t["name"].split(" (")[0] for t in lat.data] == ["A", "B"]
    assert sum(lat.data[0]["y"]) == len(res.latency_a) and sum(lat.data[1]["y"]) == len(res.latency_b)


def test_each_kernel_is_drawn_in_a_lane_of_its_cupti_stream(tmp_path):
    """With kernels.parquet the timeline drew only each call's span; now each kernel is a bar of its
    own, in a lane per CUPTI stream, coloured by the row it belongs to, its name escaped."""
    from report_kinds import with_kernels

    cap = load_capture(with_kernels(tmp_path / "cap"))
    r, figs = _all_figures(cap)
    assert not any("CUPTI" in n for n in _names(figs["timeline"]))  # not passed: not drawn
    win, centre, why = timeline_fig.choose_window(cap.timeline, r.infs, r.changes, r.latency)
    k = cap.kernels.assign(name="<b>gemm</b>")
    fig = timeline_fig.timeline_figure(cap.timeline, win, centre, why, r.allocs, r.gaps, r.streams, kernels=k)
    traces = [t for t in fig.data if "(CUPTI)" in t.get("name", "")]
    assert {t["name"] for t in traces} >= {"kernel or copy of an engine (CUPTI)", "kernel or copy of a fallback (CUPTI)"}
    lanes = fig.layout["yaxis"]["categoryarray"]
    assert any(lane.startswith("kernels \u00b7 CUPTI stream") for lane in lanes)
    hover = [h for t in traces for h in t["hovertext"]]
    assert hover and all("&lt;b&gt;gemm" in h and "<b>gemm" not in h for h in hover)
    rows = cap.timeline.merge(win, on=["pid", "inference"])
    lo, hi = int(rows["host_start_ns"].min()), int(rows["gpu_end_ns"].dropna().max())
    inside = ((k["end_ns"] >= lo) & (k["start_ns"] <= hi)).sum()
    assert sum(len(t["base"]) for t in traces) == inside
    timeline_fig.MAX_KERNELS, keep = 5, timeline_fig.MAX_KERNELS
    try:
        few = timeline_fig.timeline_figure(cap.timeline, win, centre, why, r.allocs, r.gaps, r.streams, kernels=k)
    finally:
        timeline_fig.MAX_KERNELS = keep
    cut = [t for t in few.data if "(CUPTI)" in t.get("name", "")]
    assert sum(len(t["base"]) for t in cut) == 5 and all("shown first" in t["name"] for t in cut)


def test_the_window_model_is_the_one_run_most_ties_to_the_first_started_for_strings_and_categories():
    """The chunked report holds models as categories, the whole load as strings: the same window."""
    import numpy as np
    import pandas as pd

    from trtprof.render.timeline_fig import window_in

    starts = np.array([50, 10, 40, 20, 30, 60])
    order = pd.DataFrame({"pid": 1, "model": ["m0", "m1", "m0", "m1", "m0", "m1"], "inference": [0, 0, 1, 1, 2, 2],
                          "mode": "on", "host_start_ns": starts})
    empty = pd.DataFrame(columns=["model", "outputs_discarded"])
    lat = order[["pid", "model", "inference"]].assign(latency_ns=1.0)
    for models in (order["model"], order["model"].astype("category")):
        win, _, _ = window_in(order.assign(model=models), empty, lat.assign(model=models))
        assert set(win["model"].astype(str)) == {"m1"} and list(win["inference"]) == [0, 1, 2]
    third = order.assign(model=["m0", "m1", "m0", "m1", "m0", "m0"], inference=[0, 0, 1, 1, 2, 3])  # m0 run most
    third = third.assign(model=third["model"].astype("category"))
    win, _, _ = window_in(third, empty, third[["pid", "model", "inference"]].assign(latency_ns=1.0))
    assert set(win["model"].astype(str)) == {"m0"} and list(win["inference"]) == [2, 1, 0, 3]
