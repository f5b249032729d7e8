"""The instrumentation logic on CPU, against the stand-in runtime classes (same code paths as on GPU)."""
import threading

import pytest
import torch

import trtprof
from trtprof.capture import state

pytestmark = pytest.mark.fake_trt


@pytest.fixture
def trt():
    import torch_tensorrt
    return torch_tensorrt


def _model(runtime="python"):
    from cpu_models import partitioned
    return partitioned(runtime)


def _rows(df, **eq):
    mask = True
    for k, v in eq.items():
        mask = mask & (df[k] == v).fillna(False).astype(bool)
    return df[mask]


def test_python_runtime_rows(tmp_path, trt):
    m = _model()
    x, x3 = torch.randn(2, 8), torch.randn(3, 8)
    with trtprof.profile(out=tmp_path / "c") as cap:
        m(x)
        m(x)
        with trt.runtime.enable_pre_allocated_outputs(m):
            m(x)   # 2: mode just turned on: no buffers yet, allocates before and after
            m(x)   # 3: uses the pre-allocated buffers
            m(x3)  # 4: shape change: buffers thrown away, fresh allocation before exec
            m(x3)  # 5: pre-allocated again
    df = cap.timeline
    assert cap.meta["status"] == "complete"
    inf = _rows(df, event="inference")
    assert sorted(inf.inference) == [1, 2, 3, 4, 5]  # call 0 found the model from its first engine
    calls = _rows(df, subgraph="_run_on_acc_0", event="call").set_index("inference")
    assert list(calls.index) == [0, 1, 2, 3, 4, 5]
    assert list(calls.prealloc) == [False, False, True, True, True, True]
    assert list(calls.outputs) == ["new", "new", "new", "preallocated", "new", "preallocated"]
    assert list(calls.shape_changed) == [False, False, False, False, True, False]
    assert list(calls.reallocated) == [False, False, True, False, True, False]
    assert list(calls.input_shapes) == ["(2,8)"] * 4 + ["(3,8)"] * 2
    alloc = _rows(df, subgraph="_run_on_acc_0", event="alloc")
    phases = alloc.groupby("inference").alloc_phase.apply(list).to_dict()
    assert phases == {0: ["before_exec"], 1: ["before_exec"], 2: ["before_exec", "after_enqueue"],
                      4: ["before_exec", "after_enqueue"]}
    assert set(_rows(alloc, inference=4).bytes) == {3 * 8 * 4}
    # the last engine's outputs leave the graph ("unowned"): re-created after every enqueue
    post2 = _rows(df, subgraph="_run_on_acc_2", event="alloc", alloc_phase="after_enqueue")
    assert sorted(post2.inference) == [2, 3, 4, 5]
    # every engine call has exactly one exec row, inside its call row
    ex = _rows(df, event="exec")
    assert len(ex) == 12
    both = ex.merge(_rows(df, event="call"), on=["subgraph", "call"], suffixes=("", "_c"))
    assert ((both.host_start_ns >= both.host_start_ns_c) & (both.host_end_ns <= both.host_end_ns_c)).all()
    fb = _rows(df, event="fallback")
    assert len(fb) == 6 and set(fb.subgraph_kind) == {"fallback"} and fb.shape_changed.sum() == 1
    assert df.gpu_start_ns.isna().all()  # no CUDA here
    assert (df.host_start_ns <= df.host_end_ns).all()
    assert df.seq.is_unique


def test_cpp_runtime_rows(tmp_path, trt):
    m = _model("cpp")
    x = torch.randn(2, 8)
    with trtprof.profile(out=tmp_path / "c") as cap:
        m(x)
        with trt.runtime.enable_pre_allocated_outputs(m):
            m(x)
        m(torch.randn(4, 8))
    df = cap.timeline
    calls = _rows(df, subgraph="_run_on_acc_2", event="call")
    assert list(calls.prealloc) == [False, True, False]
    assert list(calls.shape_changed) == [False, False, True]
    assert set(df.runtime[df.subgraph_kind == "engine"]) == {"cpp"}
    assert len(_rows(df, event="exec")) == 6


def test_classes_restored_and_proxies_removed(tmp_path, trt):
    from torch_tensorrt.dynamo.runtime import PythonTorchTensorRTModule as P
    before = (P.forward, P.create_output_tensors, trt.compile if hasattr(trt, "compile") else None)
    m = _model()
    with trtprof.profile(out=tmp_path / "c"):
        m(torch.randn(2, 8))
        assert P.forward is not before[0]
        assert type(m._run_on_acc_0.__dict__["context"]).__name__ == "ContextProxy"
    assert (P.forward, P.create_output_tensors) == before[:2]
    assert type(m._run_on_acc_0.__dict__["context"]).__name__ == "Context"
    assert state.ACTIVE is None
    assert not m._forward_hooks and not m._forward_pre_hooks
    m(torch.randn(2, 8))  # still works uninstrumented


def test_standalone_engine_and_tracing(tmp_path, trt):
    from torch_tensorrt.dynamo.runtime import PythonTorchTensorRTModule as P
    eng = P(torch.nn.Linear(8, 8), "solo")
    with trtprof.profile(out=tmp_path / "c") as cap:
        eng(torch.randn(2, 8))
        from torch._subclasses.fake_tensor import FakeTensorMode
        with FakeTensorMode() as mode:  # what torch.export traces with: must not be recorded
            fake = mode.from_tensor(torch.randn(2, 8))
            assert state.is_tracing((fake,))
    df = cap.timeline
    assert set(df.event) == {"call", "exec", "alloc"}
    assert set(df.subgraph) == {"solo"} and set(df.model) == {""} and set(df.inference) == {-1}


def test_threads_attributed(tmp_path):
    m1, m2 = _model(), _model()
    with trtprof.profile(out=tmp_path / "c") as cap:
        ids = {}

        def work(mod, key):
            ids[key] = threading.get_ident()
            for _ in range(5):
                mod(torch.randn(2, 8))
        ts = [threading.Thread(target=work, args=(mm, k)) for k, mm in (("a", m1), ("b", m2))]
        [t.start() for t in ts]
        [t.join() for t in ts]
    df = cap.timeline
    inf = _rows(df, event="inference")
    assert inf.groupby("model").thread.nunique().max() == 1
    assert set(inf.thread) == set(ids.values())
    for model, g in df[df.model != ""].groupby("model"):
        assert g.thread.nunique() == 1  # every row of a model's calls on that model's thread


def test_exception_keeps_rows(tmp_path):
    m = _model()
    with pytest.raises(ValueError):
        with trtprof.profile(out=tmp_path / "c"):
            m(torch.randn(2, 8))
            raise ValueError("boom")
    cap = trtprof.load_capture(tmp_path / "c")
    assert cap.meta["status"] == "incomplete" and "ValueError" in cap.meta["incomplete_reason"]
    assert len(cap.timeline) > 0


def test_nested_profile_refused(tmp_path):
    with trtprof.profile(out=tmp_path / "a"):
        with pytest.raises(RuntimeError, match="already active"):
            with trtprof.profile(out=tmp_path / "b"):
                pass


def test_small_batches_spill(tmp_path):
    """Rows reach the writer in batches and none is lost or duplicated."""
    from trtprof.record.session import Session
    m = _model()
    s = Session(tmp_path / "c")
    s.instrumenter.batch = 7
    s.start()
    writes = []
    orig = s.writer.write
    s.writer.write = lambda recs: (writes.append(len(recs)), orig(recs))
    s.instrumenter.ins.rec.batch = 7
    for _ in range(20):
        m(torch.randn(2, 8))
    cap = s.stop()
    assert len(writes) > 3 and sum(writes) == len(cap.timeline)
    assert sorted(cap.timeline.seq) == list(range(len(cap.timeline)))


def test_deferred_rows_keep_their_thread(tmp_path):
    """C++ rows wait for the allocator log and may be emitted by another thread: they keep the
    thread that made the call."""
    from trtprof.capture import engines, state as st
    m = _model("cpp")
    with trtprof.profile(out=tmp_path / "c") as cap:
        ins = st.ACTIVE
        ins.alloc_log = type("NoLog", (), {"active": True, "harvest": lambda self, calls: {}})()
        t = threading.Thread(target=lambda: [m(torch.randn(2, 8)) for _ in range(3)])
        t.start()
        t.join()
        worker = t.ident
        engines.harvest_cpp(ins)  # emitted from this (main) thread
        ins.alloc_log = None
    calls = cap.timeline[cap.timeline.event.isin(["call", "exec"])]
    assert len(calls) == 12 and set(calls.thread) == {worker}


def test_ready_rows_written_within_a_second(monkeypatch):
    """Below a full batch, rows still reach the writer about once a second (bounded loss on SIGKILL)."""
    from trtprof.capture import recorder as rm
    got = []
    r = rm.Recorder(got.append, batch=10_000)
    r.add(r.new("call", host_start_ns=0, host_end_ns=1))
    r.safe_point()
    assert got == []
    later = rm.now() + 2_000_000_000
    monkeypatch.setattr(rm, "now", lambda: later)
    r.safe_point()
    assert len(got) == 1 and len(got[0]) == 1


def test_untested_torch_tensorrt_version_is_said(tmp_path, trt, monkeypatch):
    """A version trtprof has not seen (neither run on a GPU nor followed from source) still
    captures, through the op, with a note saying so."""
    monkeypatch.setattr(trt, "__version__", "2.15.0+fake")
    m = _model("cpp")
    with trtprof.profile(out=tmp_path / "c") as cap:
        m(torch.randn(2, 8))
    notes = [n for n in cap.meta["notes"] if "was not tested" in n]
    assert len(notes) == 1 and "2.15.0+fake" in notes[0] and "through the op" in notes[0]
    assert (cap.timeline.event == "exec").sum() == 2
    assert cap.meta["capture_path"] == "op" and cap.meta["torch_tensorrt"] == "2.15.0+fake"


@pytest.mark.parametrize("runtime", ["python", "cpp"])
def test_first_recorded_call_is_a_cold_start(tmp_path, trt, runtime):
    """Each subgraph's first call and the model's first inference are marked, not dropped: they are
    counted as calls and left out of timing; the second of each is timed as usual."""
    from trtprof.analysis.latency import cold_starts, inference_latency
    from trtprof.capture.state import COLD_NOTE
    m = _model(runtime)
    x = torch.randn(2, 8)
    with trtprof.profile(out=tmp_path / "c") as cap:
        cap.instrument(m)
        for _ in range(3):
            m(x)
    df = cap.timeline
    ranges = df[df.event.isin(["inference", "call", "exec", "fallback"])]
    first = ranges[ranges.inference == 0]
    assert set(first.event) == {"inference", "call", "exec", "fallback"}
    assert first.exclude.all() and (first.note == COLD_NOTE).all()
    later = ranges[ranges.inference > 0]
    assert len(later) == 2 * len(first) and not later.exclude.fillna(False).any()
    # allocations of the cold call share its mark; counts still include the cold call
    assert _rows(df, event="alloc", inference=0).exclude.all()
    cold = cold_starts(inference_latency(df))
    assert len(cold) == 1 and bool(cold.excluded[0]) and cold.latency_ms[0] > 0
    assert cold.median_ms[0] > 0  # the median of inferences 1 and 2


def test_a_second_capture_in_the_process_sees_warm_calls(tmp_path, trt):
    """Cold is per process: the same model captured again starts warm, so nothing is left out."""
    m = _model("cpp")
    x = torch.randn(2, 8)
    for name in ("a", "b"):
        with trtprof.profile(out=tmp_path / name) as cap:
            cap.instrument(m)
            for _ in range(2):
                m(x)
        df = cap.timeline
        cold = df.note.fillna("").str.contains("cold start")
        assert cold.any() == (name == "a") and (df.exclude.fillna(False).astype(bool) == cold).all()
