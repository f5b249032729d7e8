"""The op path on CPU, for every version the stand-in plays (support/fake_trt: 2.11-2.14, each modelled
on its tag's source): live modules, a Python TRTEngine (2.13+ PYTHON_ONLY), exported and saved/loaded
programs with their fallback regions, output-allocator rows, and that everything is put back.
The same capture code runs against the real 2.11 on the GPU machine (tests/gpu/test_gpu_ops.py)."""
import pytest
import torch

import trtprof
from trtprof.capture import state

pytestmark = pytest.mark.fake_trt

# (version, runtime): "python" is the Python runtime module on 2.11/2.12, the PYTHON_ONLY engine after
PLAYED = [(v, rt) for v in ("2.11", "2.12", "2.13", "2.14") for rt in ("cpp", "python")]
KEY = ["event", "subgraph", "inference", "call", "prealloc", "shape_changed", "outputs", "reallocated",
       "input_shapes", "shapes", "alloc_phase", "bytes"]


@pytest.fixture(params=PLAYED, ids=[f"{v}-{rt}" for v, rt in PLAYED])
def played(request):
    import torch_tensorrt
    version, runtime = request.param
    with torch_tensorrt._fake.playing(version, python_only=runtime == "python" and version >= "2.13"):
        yield version, runtime


def _model(runtime):
    from cpu_models import partitioned
    return partitioned(runtime)


def _engines(model):
    """The engines of a live model or a loaded graph (loaded graphs ignore enable_pre_allocated_outputs,
    so a schedule sets the TorchBind-like attribute directly, as a user of a loaded program must)."""
    from torch_tensorrt._ops import EngineBase
    found = []
    for n in model.graph.nodes:
        if n.op == "call_module" and hasattr(model.get_submodule(n.target), "set_pre_allocated_outputs"):
            found.append(model.get_submodule(n.target))
        elif n.op == "get_attr":
            obj = model
            for part in n.target.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, EngineBase):
                found.append(obj)
    return found


def _set_prealloc(model, on):
    for e in _engines(model):
        if isinstance(e, torch.nn.Module):
            e.set_pre_allocated_outputs(on)
        else:
            e.use_pre_allocated_outputs = on


SCHEDULE = [(2, False), (2, False), (2, True), (2, True), (3, True), (3, True), (3, False)]


def _run(model, cap=None):
    if cap is not None:
        cap.instrument(model)
    for batch, on in SCHEDULE:
        _set_prealloc(model, on)
        model(torch.randn(batch, 8))


def _key_rows(df):
    df = df.assign(subgraph=df.subgraph.where(df.event != "inference", "model"))  # labels count models
    rows = df[df.event != "alloc"][KEY[:-2]].copy()
    return rows.sort_values(KEY[1:4] + ["event"]).astype(str).reset_index(drop=True)


def test_live_module_rows(tmp_path, played):
    version, runtime = played
    m = _model(runtime)
    with trtprof.profile(out=tmp_path / "c") as cap:
        _run(m, cap)
    df, meta = cap.timeline, cap.meta
    assert meta["torch_tensorrt"].startswith(version)
    module_path = runtime == "python" and version in ("2.11", "2.12")
    assert meta["capture_path"] == ("module-classes" if module_path else "op")
    assert not [n for n in meta["notes"] if "not tested" in n or "engine calls are not recorded" in n or "no torch.ops" in n], meta["notes"]
    assert set(df.runtime[df.subgraph_kind == "engine"]) == {runtime}
    calls = df[(df.subgraph == "_run_on_acc_0") & (df.event == "call")].sort_values("call")
    assert list(calls.inference) == list(range(7))
    assert list(calls.prealloc) == [on for _, on in SCHEDULE]
    assert list(calls.shape_changed) == [False, False, False, False, True, False, False]
    assert (df.event == "exec").sum() == 14 and (df.event == "fallback").sum() == 7
    assert sorted(df[df.event == "inference"].inference) == list(range(7))
    if runtime == "python":  # allocations seen in Python: phases of every pass
        assert list(calls.outputs) == ["new", "new", "new", "preallocated", "new", "preallocated", "new"]
        alloc = df[(df.subgraph == "_run_on_acc_0") & (df.event == "alloc")]
        phases = alloc.groupby("inference").alloc_phase.apply(list).to_dict()
        assert phases == {0: ["before_exec"], 1: ["before_exec"], 2: ["before_exec", "after_enqueue"],
                          4: ["before_exec", "after_enqueue"], 6: ["before_exec"]}
        post2 = df[(df.subgraph == "_run_on_acc_2") & (df.alloc_phase == "after_enqueue")]
        assert sorted(post2.inference) == [2, 3, 4, 5]  # unowned outputs: after every enqueue
    else:  # no allocator log on CPU: the C++ runtime's allocations are not seen here
        assert (df.event == "alloc").sum() == 0


def _dynamic_batch():
    return {"x": {0: torch.export.Dim("batch", min=1, max=16)}}


def _exported(runtime):
    m = _model(runtime)
    return torch.export.export(m, (torch.randn(2, 8),), dynamic_shapes=_dynamic_batch(), strict=False)


@pytest.mark.parametrize("how", ["module", "saved", "scanned"])
def test_loaded_program_same_rows_as_live(tmp_path, played, how):
    """An exported program's graph calls the op itself: adopted (ExportedProgram.module during the
    capture, a torch_tensorrt.save/load round trip, or a scan of graphs made before it), it gives the
    live module's rows: engines named from their attribute, the fallback region between them as
    _run_on_gpu_1, an inference row per call."""
    import torch_tensorrt
    version, runtime = played
    if runtime == "python" and version in ("2.11", "2.12"):
        pytest.skip("the Python runtime module of 2.11/2.12 is not exported through the op")
    live = _model(runtime)
    with trtprof.profile(out=tmp_path / "live") as cap:
        _run(live, cap)
    want = cap.timeline
    ep = _exported(runtime)
    if how == "saved":
        torch_tensorrt.save(_model(runtime), str(tmp_path / "m.ep"), inputs=[torch.randn(2, 8)],
                            dynamic_shapes=_dynamic_batch())
    before = ep.module() if how == "scanned" else None
    with trtprof.profile(out=tmp_path / "loaded") as cap:
        if how == "module":
            gm = ep.module()
        elif how == "saved":
            gm = torch_tensorrt.load(str(tmp_path / "m.ep")).module()
        else:
            gm = before
        assert state.ACTIVE.models.get(gm) is not None  # adopted before its first call
        _run(gm)
    got = cap.timeline
    assert cap.meta["capture_path"] == "op"
    assert _key_rows(got.assign(shapes=None)).equals(_key_rows(want.assign(shapes=None)))
    a_want = want[want.event == "alloc"][KEY].sort_values(KEY[1:4]).astype(str).reset_index(drop=True)
    a_got = got[got.event == "alloc"][KEY].sort_values(KEY[1:4]).astype(str).reset_index(drop=True)
    assert a_got.equals(a_want)
    fb = got[got.event == "fallback"]
    assert set(fb.subgraph) == {"_run_on_gpu_1"} and list(fb.input_shapes[:1]) == ["(2,8)"]
    # put back: the graph calls the real op again, without markers
    targets = [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
    assert "tensorrt.execute_engine.default" in targets and not any("trtprof" in t for t in targets)
    assert gm(torch.randn(2, 8)).shape == (2, 8)


def test_namespace_restored_and_passthrough(tmp_path, played):
    from trtprof.capture import ops
    packet = torch.ops.tensorrt.execute_engine
    m = _model(played[1])
    with trtprof.profile(out=tmp_path / "c"):
        assert isinstance(torch.ops.tensorrt.execute_engine, ops.OpProxy)
        assert torch.ops.tensorrt.execute_engine.default is packet.default  # graph builders get the op
        m(torch.randn(2, 8))
    assert torch.ops.tensorrt.execute_engine is packet
    assert m(torch.randn(2, 8)).shape == (2, 8)


@pytest.mark.parametrize("version", ["2.11", "2.13"])
def test_output_allocator_rows(tmp_path, version):
    """Data-dependent shapes: buffers the output allocator makes inside the enqueue are alloc rows
    (phase output_allocator) of the Python engine's call; a buffer kept from before is none."""
    import torch_tensorrt
    with torch_tensorrt._fake.playing(version, python_only=version == "2.13"):
        m = _model("python")
        with trtprof.profile(out=tmp_path / "c") as cap:
            with torch_tensorrt.runtime.enable_output_allocator(m):
                for batch in (2, 2, 3):
                    m(torch.randn(batch, 8))
    a = cap.timeline[cap.timeline.event == "alloc"]
    assert set(a.alloc_phase) == {"output_allocator"}
    per = a[a.subgraph == "_run_on_acc_0"].set_index("inference")
    assert list(per.index) == [0, 2] and list(per.bytes) == [2 * 8 * 4, 3 * 8 * 4]


def test_policy_reaches_loaded_engines(tmp_path):
    """--prealloc on sets the mode of a loaded graph's engines (no runtime module, no setter)."""
    ep = _exported("cpp")
    with trtprof.profile(out=tmp_path / "c", prealloc="on") as cap:
        gm = ep.module()
        for _ in range(3):
            gm(torch.randn(2, 8))
    calls = cap.timeline[cap.timeline.event == "call"]
    assert calls.prealloc.all() and len(calls) == 6


def test_module_classes_path_still_selectable(tmp_path, monkeypatch):
    """TRTPROF_CAPTURE_PATH=module-classes: the C++ runtime module's forward is hooked as before
    2.13 support (what bench/bench_op_path.py compares the op path with); same rows."""
    monkeypatch.setenv("TRTPROF_CAPTURE_PATH", "module-classes")
    m = _model("cpp")
    with trtprof.profile(out=tmp_path / "c") as cap:
        _run(m, cap)
    assert cap.meta["capture_path"] == "module-classes"
    assert (cap.timeline.event == "exec").sum() == 14


@pytest.mark.parametrize("unowned", [False, True])
def test_loaded_graph_final_engine_owning_its_outputs(tmp_path, unowned):
    """A loaded graph's final engine that owns its output buffers (the saved engine does not keep
    the compiler's unowned flag) returns the same buffers every call with pre-allocation on: no
    allocation row after the first pre-allocated calls, and a note naming it (the final engine
    only); an unowned one allocates after every enqueue and gets no note. Python TRTEngine of
    2.13 PYTHON_ONLY, whose allocations the hooks see on the CPU."""
    import torch_tensorrt
    with torch_tensorrt._fake.playing("2.13", python_only=True):
        ep = _exported("python")
        with trtprof.profile(out=tmp_path / "c") as cap:
            gm = ep.module()
            for e in _engines(gm):
                e.set_output_tensors_as_unowned(unowned)
            _run(gm)
    notes = [n for n in cap.meta["notes"] if "owns its output buffers" in n]
    df = cap.timeline
    late = df[(df.event == "alloc") & (df.subgraph == "_run_on_acc_2") & (df.inference == 3)]
    if unowned:
        assert notes == [] and list(late.alloc_phase) == ["after_enqueue"]
    else:
        assert len(notes) == 1 and notes[0].startswith("_run_on_acc_2:") and "_run_on_acc_0" not in notes[0]
        assert late.empty


def test_graphs_left_by_export_of_a_recorded_module_not_reported(tmp_path):
    """torch_tensorrt's exporter puts the live module's own engine object in the graph it builds
    (v2.11.0 `_exporter.py` `inline_trt_modules`): such a graph, left alive by save and never run,
    is not reported as missed; the same graph with an engine the capture does not know is."""
    from trtprof.capture import op_graphs

    def graph_with(engine):
        root = torch.nn.Module()
        root._run_on_acc_0_engine = engine
        g = torch.fx.Graph()
        x = g.placeholder("x")
        e = g.get_attr("_run_on_acc_0_engine")
        g.output(g.call_function(torch.ops.tensorrt.execute_engine.default, ([x], e)))
        return torch.fx.GraphModule(root, g)

    live, other = _model("cpp"), _model("cpp")
    with trtprof.profile(out=tmp_path / "c") as cap:
        live(torch.randn(2, 8))
        before = len(op_graphs.uncovered(state.ACTIVE))
        left = graph_with(live._run_on_acc_0.engine)
        assert len(op_graphs.uncovered(state.ACTIVE)) == before
        stray = graph_with(other._run_on_acc_0.engine)
        assert len(op_graphs.uncovered(state.ACTIVE)) == before + 1
        assert any("_run_on_acc_0" in d for d in op_graphs.uncovered(state.ACTIVE))
        del stray  # a GraphModule is a reference cycle: dropped, it is still counted until a collection
        assert len(op_graphs.uncovered(state.ACTIVE)) == before
        g = torch.fx.Graph()  # an export's graph: the engine is an input (seen on the H200 after save)
        x, e = g.placeholder("x"), g.placeholder("engine")
        g.output(g.call_function(torch.ops.tensorrt.execute_engine.default, ([x], e)))
        lifted = torch.fx.GraphModule(torch.nn.Module(), g)
        assert len(op_graphs.uncovered(state.ACTIVE)) == before
    assert left is not None and lifted is not None
