"""Shape changes: from a real CPU capture (the stand-in runtime) and from synthetic timelines."""
import pytest

from synthetic import frame, timeline
from trtprof.analysis import shapes

pytestmark = pytest.mark.fake_trt


@pytest.fixture(scope="module")
def cpu_capture(tmp_path_factory):

    import trtprof
    from cpu_models import partitioned, prealloc_scenario

    m = partitioned("python")
    with trtprof.profile(out=tmp_path_factory.mktemp("cap") / "c") as cap:
        prealloc_scenario(m)
    return cap.timeline


def test_cpu_capture_shape_change(cpu_capture):
    ch = shapes.shape_changes(cpu_capture).set_index("subgraph")
    assert set(ch.index) == {"_run_on_acc_0", "_run_on_gpu_1", "_run_on_acc_2"}
    assert (ch["old_shapes"] == "(2,8)").all() and (ch["new_shapes"] == "(3,8)").all()
    assert ch.loc["_run_on_acc_0", "outputs_discarded"] and ch.loc["_run_on_acc_2", "outputs_discarded"]
    assert not ch.loc["_run_on_gpu_1", "outputs_discarded"]
    assert ch.loc["_run_on_acc_0", "realloc_bytes"] == 3 * 8 * 4  # float32 (3,8)
    assert ch.loc["_run_on_acc_0", "realloc_ns"] > 0
    # _run_on_acc_2 (outputs leave the graph) re-allocated after its previous enqueue: that buffer is wasted
    assert ch.loc["_run_on_acc_2", "discarded_bytes"] == 2 * 8 * 4
    assert ch.loc["_run_on_acc_0", "discarded_bytes"] == 0  # the intermediate engine kept its buffer
    assert len(set(ch["inference"])) == 1


def test_cpu_capture_frequency(cpu_capture):
    f = shapes.change_frequency(cpu_capture).set_index("subgraph")
    assert f.loc["_run_on_acc_0", "calls"] == 5 and f.loc["_run_on_acc_0", "changes"] == 1
    assert f.loc["_run_on_acc_0", "share"] == pytest.approx(1 / 4)
    assert f.loc["_run_on_acc_0", "prealloc_calls"] == 3 and f.loc["_run_on_acc_0", "prealloc_changes"] == 1
    assert f.loc["_run_on_gpu_1", "kind"] == "fallback"


def test_no_change_no_advice():
    df = timeline(30)
    assert shapes.shape_changes(df).empty
    assert shapes.advice(shapes.change_frequency(df)) is None


def test_frequent_changes_give_the_tutorial_advice():
    df = timeline(40, shapes=["(8,128)", "(4,128)"] * 20, prealloc=True)
    ch = shapes.shape_changes(df)
    eng = ch[ch["kind"] == "engine"]
    assert len(eng) == 2 * 39 and eng["outputs_discarded"].all()
    text = shapes.advice(shapes.change_frequency(df))
    assert text and shapes.TUTORIAL_QUOTE in text and "100%" in text
    assert "pre-allocated buffer away" in text


def test_rare_changes_no_advice_and_off_mode_wording():
    rare = timeline(100, shapes=["(8,128)"] * 95 + ["(4,128)"] * 5)
    assert shapes.advice(shapes.change_frequency(rare)) is None
    often = timeline(20, shapes=["(8,128)", "(4,128)"] * 10, prealloc=False)
    text = shapes.advice(shapes.change_frequency(often))
    assert "were off here" in text
    assert not shapes.shape_changes(often)["outputs_discarded"].any()


def test_missing_flag_is_derived_from_shapes():
    rows = [dict(event="call", call=i, inference=i, input_shapes=s, shape_changed=None, prealloc=False)
            for i, s in enumerate(["(1,2)", "(1,2)", "(3,2)", "(3,2)"])]
    ch = shapes.shape_changes(frame(rows))
    assert ch[["call", "old_shapes", "new_shapes"]].values.tolist() == [[2, "(1,2)", "(3,2)"]]


def test_empty():
    assert shapes.shape_changes(frame([])).empty
    assert shapes.change_frequency(frame([])).empty
    assert shapes.advice(shapes.change_frequency(frame([]))) is None


def test_a_fallbacks_reallocation_is_unknown_not_zero():
    """A fallback's allocations are PyTorch's and are not recorded: its shape changes' allocation
    figures are null (drawn as —), an engine's measured ones stay (the committed H200 capture)."""
    from pathlib import Path

    import trtprof
    df = trtprof.load(Path(__file__).resolve().parent.parent / "reports" / "cases" / "shapes-cpp")
    ch = shapes.shape_changes(df)
    fb, eng = ch[ch["kind"] == "fallback"], ch[ch["kind"] == "engine"]
    assert len(fb) and len(eng)
    assert fb[["realloc_ns", "realloc_exposed_ns", "realloc_bytes"]].isna().all().all()
    assert eng["realloc_ns"].notna().all() and (eng["realloc_ns"] > 0).any()
    t = shapes.transitions(ch)
    assert t.loc[t["subgraph"] == "_run_on_gpu_1", "realloc_us_median"].isna().all()
