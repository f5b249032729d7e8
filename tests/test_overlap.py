"""The overlap math on hand-built intervals: nested, touching, several streams, several processes, empty;
plus a property test of union/covered against a brute-force boolean grid."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic import frame, timeline
from trtprof.analysis import overlap as ov

A, B = 0x100, 0x200  # two stream handles


# -- union / covered ---------------------------------------------------------------------------------
@pytest.mark.parametrize("starts, ends, want", [
    ([0, 2], [10, 3], [(0, 10)]),                      # nested
    ([0, 5], [5, 8], [(0, 8)]),                        # touching
    ([5, 0], [8, 3], [(0, 3), (5, 8)]),                # disjoint, unsorted
    ([0, 1, 2, 20], [3, 4, 5, 21], [(0, 5), (20, 21)]),  # chain
    ([4, 4, 1], [4, 3, 2], [(1, 2)]),                  # empty and reversed intervals dropped
    ([], [], []),
])
def test_union(starts, ends, want):
    s, e = ov.union(starts, ends)
    assert list(zip(s.tolist(), e.tolist())) == want


def test_covered_partial_and_spanning_queries():
    us, ue = ov.union([0, 20, 40], [10, 30, 50])
    got = ov.covered(us, ue, [5, -5, 10, 25, 60, 0, 7], [25, 100, 20, 25, 70, 50, 3])
    assert got.tolist() == [10, 30, 0, 0, 0, 30, 0]  # last: a reversed query counts as empty


def test_covered_with_nothing():
    assert ov.covered(np.array([], np.int64), np.array([], np.int64), [0, 1], [5, 6]).tolist() == [0, 0]
    assert ov.covered(*ov.union([0], [5]), [], []).tolist() == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=12),
       st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=6))
def test_union_and_covered_match_a_grid(intervals, queries):
    grid = np.zeros(61, bool)
    for s, e in intervals:
        grid[s:e] = True
    us, ue = ov.union([s for s, _ in intervals], [e for _, e in intervals])
    assert int((ue - us).sum()) == int(grid.sum())
    assert (np.diff(us) > 0).all() and (us[1:] > ue[:-1]).all()  # disjoint, sorted, not touching
    got = ov.covered(us, ue, [q[0] for q in queries], [q[1] for q in queries])
    want = [int(grid[s:e].sum()) if e > s else 0 for s, e in queries]
    assert got.tolist() == want


def test_packed_groups_never_merge():
    codes = np.array([0, 1, 1])
    s, e = np.array([100, 100, 105]), np.array([200, 103, 110])
    pk = ov.Packed(codes, s, e)
    us, ue = ov.union(pk(codes, s), pk(codes, e))
    c, start = pk.unpack(us)
    assert sorted(zip(c.tolist(), start.tolist(), (ue - us).tolist())) == [(0, 100, 100), (1, 100, 3), (1, 105, 5)]


# -- hidden / exposed per allocation ------------------------------------------------------------------
def _alloc(host, **kw):
    return {**dict(event="alloc", host=host, alloc_phase="before_exec", bytes=64, prealloc=False), **kw}


def _exec(gpu, stream=A, **kw):
    return dict(event="exec", host=(gpu[0] - 5, gpu[0] - 1), gpu=gpu, stream=stream, **kw)


def _hidden(rows):
    a = ov.alloc_overlap(frame(rows))
    return a["hidden_ns"].tolist(), a["exposed_ns"].tolist()


def test_alloc_partly_hidden():
    assert _hidden([_alloc((10, 20)), _exec((15, 30))]) == ([5], [5])


def test_alloc_nested_gpu_intervals_on_two_streams():
    rows = [_alloc((10, 40)), _exec((0, 100)), dict(event="fallback", subgraph="_run_on_gpu_1",
                                                    subgraph_kind="fallback", host=(20, 25), gpu=(20, 30), stream=B)]
    assert _hidden(rows) == ([30], [0])


def test_alloc_touching_gpu_intervals():
    assert _hidden([_alloc((5, 15)), _exec((0, 10)), _exec((10, 20), stream=B)]) == ([10], [0])


def test_alloc_gpu_overlapping_across_streams_counted_once():
    assert _hidden([_alloc((0, 30)), _exec((0, 10)), _exec((8, 20), stream=B)]) == ([20], [10])


def test_other_process_and_inference_rows_do_not_hide():
    rows = [_alloc((0, 50)), _exec((40, 60)),
            _exec((0, 100), pid=2),  # another process's GPU work
            dict(event="inference", subgraph="m", subgraph_kind="model", host=(0, 100), gpu=(0, 100))]
    assert _hidden(rows) == ([10], [40])


def test_no_gpu_times_means_unknown_not_zero():
    h, x = _hidden([_alloc((0, 10)), dict(event="exec", host=(10, 20))])
    assert np.isnan(h[0]) and np.isnan(x[0])
    assert not ov.has_gpu_times(frame([_alloc((0, 10))]))


def test_empty_timeline():
    empty = frame([])
    assert ov.alloc_overlap(empty).empty
    assert ov.gpu_gaps(empty).empty
    assert ov.gpu_busy(empty).empty
    assert ov.inferences(empty).empty
    assert ov.exposed_per_inference(empty).empty


def test_alloc_in_a_process_without_gpu_rows_is_unknown():
    a = ov.alloc_overlap(frame([_alloc((0, 10), pid=7), _alloc((0, 10)), _exec((0, 5))]))
    assert np.isnan(a["hidden_ns"][0]) and a["hidden_ns"][1] == 5


# -- gaps --------------------------------------------------------------------------------------------------
def _gap_rows(inference=0, t=0):
    return [
        dict(event="call", inference=inference, host=(t + 90, t + 201), prealloc=False),
        _exec((t + 100, t + 200), inference=inference),
        dict(event="fallback", inference=inference, subgraph="_run_on_gpu_1", subgraph_kind="fallback",
             host=(t + 200, t + 260), gpu=(t + 250, t + 300), stream=B),
        dict(event="call", inference=inference, subgraph="_run_on_acc_2", host=(t + 300, t + 396), prealloc=False),
        _alloc((t + 310, t + 380), inference=inference, subgraph="_run_on_acc_2"),
        dict(event="exec", inference=inference, subgraph="_run_on_acc_2", host=(t + 380, t + 395),
             gpu=(t + 400, t + 500), stream=A),
        dict(event="inference", inference=inference, subgraph="m", subgraph_kind="model", host=(t + 80, t + 510)),
    ]


def test_gaps_and_what_the_host_did():
    g = ov.gpu_gaps(frame(_gap_rows()))
    assert g[["start_ns", "end_ns", "gap_ns"]].values.tolist() == [[200, 250, 50], [300, 400, 100]]
    assert g[["before", "after"]].values.tolist() == [["_run_on_acc_0", "_run_on_gpu_1"],
                                                      ["_run_on_gpu_1", "_run_on_acc_2"]]
    assert g[list(ov.GAP_CATEGORIES)].values.tolist() == [[0, 50, 0, 0], [70, 0, 15, 15]]
    assert (g[list(ov.GAP_CATEGORIES)].sum(axis=1) == g["gap_ns"]).all()


def test_gap_categories_have_priority_when_host_ranges_overlap():
    rows = [_exec((0, 10)), _exec((50, 60), subgraph="_run_on_acc_2"),
            _alloc((10, 40)), dict(event="fallback", subgraph="_run_on_gpu_1", subgraph_kind="fallback", host=(20, 45))]
    g = ov.gpu_gaps(frame(rows))
    # gap 10..50: alloc 10..40 first, then the fallback's uncovered 40..45, enqueue 45..49, Python 49..50
    assert g[list(ov.GAP_CATEGORIES)].values.tolist() == [[30, 5, 4, 1]]


def test_no_gap_when_streams_overlap_or_touch_and_none_between_inferences():
    rows = [_exec((0, 10)), _exec((5, 20), stream=B), _exec((20, 30), subgraph="_run_on_acc_2")]
    assert ov.gpu_gaps(frame(rows)).empty
    two = frame(_gap_rows(0, 0) + _gap_rows(1, 10_000))
    g = ov.gpu_gaps(two)
    assert len(g) == 4 and set(g["inference"]) == {0, 1}  # the idle time between inferences is no gap
    assert g.groupby("inference")["gap_ns"].sum().tolist() == [150, 150]


def test_gap_summary_means_over_all_inferences_of_a_mode():
    df = frame(_gap_rows(0, 0) + [r for r in _gap_rows(1, 10_000) if r.get("subgraph") != "_run_on_gpu_1"])
    infs = ov.inferences(df)
    s = ov.gap_summary(ov.gpu_gaps(df, infs), infs)
    row = s[(s["before"] == "_run_on_gpu_1")].iloc[0]
    assert row["inferences"] == 2 and row["occurrences"] == 1 and row["gap_ns_per_inference"] == 50


# -- per inference -------------------------------------------------------------------------------------
def test_inference_modes_and_exclusion():
    rows = []
    for i, (pre, excl) in enumerate([(False, None), (True, True), (True, None)]):
        rows += [dict(event="call", inference=i, prealloc=pre, exclude=excl),
                 dict(event="inference", inference=i, subgraph="m", subgraph_kind="model")]
    rows += [dict(event="call", inference=3, prealloc=True), dict(event="call", inference=3, prealloc=False,
                                                                 subgraph="_run_on_acc_2")]
    infs = ov.inferences(frame(rows)).set_index("inference")
    assert infs["mode"].tolist() == ["off", "on", "on", "mixed"]
    assert infs["excluded"].tolist() == [False, True, False, False]


def test_exposed_per_inference_counts_inferences_without_allocations():
    rows = []
    for i in range(4):
        pre = i >= 2
        rows += [dict(event="call", inference=i, prealloc=pre), _exec((i * 1000 + 50, i * 1000 + 60), inference=i)]
        if not pre or i == 3:
            rows.append(_alloc((i * 1000, i * 1000 + 20), inference=i, prealloc=pre))
    e = ov.exposed_per_inference(frame(rows)).set_index("mode")
    assert e.loc["off", "inferences"] == 2 and e.loc["off", "exposed_ns_per_inference"] == 20
    assert e.loc["on", "inferences"] == 2 and e.loc["on", "exposed_ns_per_inference"] == 10  # 20 over 2
    assert e.loc["on", "allocs_per_inference"] == 0.5


def test_synthetic_run_hides_allocations_after_enqueue():
    df = timeline(60, seed=3)
    a = ov.alloc_overlap(df)
    assert (a["hidden_ns"] + a["exposed_ns"] == a["alloc_ns"]).all()
    assert (a["hidden_ns"] >= 0).all() and (a["exposed_ns"] >= 0).all()
    after = a[a["alloc_phase"] == "after_enqueue"]
    before = a[(a["alloc_phase"] == "before_exec") & ~a["prealloc"].astype(bool)]
    assert after["hidden_ns"].sum() / after["alloc_ns"].sum() > 0.5
    assert before["exposed_ns"].sum() / before["alloc_ns"].sum() > 0.5


def test_scales_to_a_million_rows_quickly():
    import time
    n = 1_000_000
    rng = np.random.default_rng(0)
    s = np.sort(rng.integers(0, 10**12, n))
    e = s + rng.integers(1, 10**6, n)
    t = time.perf_counter()
    us, ue = ov.union(s, e)
    ov.covered(us, ue, s, e)
    assert time.perf_counter() - t < 2.0
    assert pd.Series(ue - us).sum() <= (e - s).sum()
