"""Captures under Torch-TensorRT's CUDA-graph modes, on CPU.

The stand-in (`support/fake_trt`: `runtime/_cudagraphs.py`, `_CudaGraphsTorchTensorRTModule.py`, the
Python runtime's per-engine path) follows v2.11.0's source; the real GpuClock runs against
pure-Python events and `torch.cuda.CUDAGraph` is the tests' double (support/gpu_doubles.py), so the
capture counter, the wrapper hooks and the replay hook are trtprof's own code. The same paths run for
real in tests/gpu/test_gpu_cudagraphs.py.
"""
import pytest
import torch
import torch.fx

import trtprof
from gpu_doubles import Event, fake_torch, use_fake_gpu
from trtprof.capture import events, install
from trtprof.capture.events import GpuClock
from trtprof.capture.recorder import CAPTURING_NOTE
from trtprof.capture.state import COLD_NOTE

pytestmark = pytest.mark.fake_trt


@pytest.fixture
def gpu(monkeypatch):
    import torch_tensorrt
    use_fake_gpu(monkeypatch)
    yield Event
    assert events.Captures.depth == 0
    torch_tensorrt.runtime.set_cudagraphs_mode(False)


def _single(runtime):
    """One engine, no fallback: enable_cudagraphs puts it in per-engine mode."""
    import torch_tensorrt.dynamo.runtime as rt
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 8)
    if runtime == "python":
        eng = rt.PythonTorchTensorRTModule(lin, "_run_on_acc_0")
    else:
        eng = rt.TorchTensorRTModule(lin, "_run_on_acc_0")
    g = torch.fx.Graph()
    g.output(g.call_module("_run_on_acc_0", (g.placeholder("x"),)))
    return torch.fx.GraphModule({"_run_on_acc_0": eng}, g)


def _h200_scenario(tmp_path, model, **options):
    """The issue's run: 10 plain inferences, 30 under enable_cudagraphs, 5 plain."""
    import torch_tensorrt
    x = torch.randn(2, 8)
    with torch.no_grad(), trtprof.profile(tmp_path / "c", cpp_allocs=False, **options) as cap:
        cap.instrument(model)
        for _ in range(10):
            model(x)
        with torch_tensorrt.runtime.enable_cudagraphs(model) as cg:
            for _ in range(30):
                cg(x)
        for _ in range(5):
            model(x)
    return cap


@pytest.mark.parametrize("runtime", ["python", "cpp"])
def test_whole_graph_mode_keeps_every_row(tmp_path, gpu, runtime):
    from cpu_models import partitioned
    cap = _h200_scenario(tmp_path, partitioned(runtime))
    df = cap.timeline
    inf = df[df.event == "inference"].sort_values("inference")
    # 10 plain, 3 warm-ups at construction, 30 wrapper calls, 5 plain: one counter, no gap
    assert list(inf.inference) == list(range(48)) and cap.meta["status"] == "complete"
    cg = inf.cudagraph.astype(object).where(inf.cudagraph.notna(), None).tolist()
    assert cg == [None] * 10 + ["warmup"] * 3 + ["capture"] + ["replay"] * 29 + [None] * 5
    # the first inference is the cold start, then the wrapper's warm-ups and capture
    assert inf.exclude.fillna(False).tolist() == [True] + [False] * 9 + [True] * 4 + [False] * 34
    assert inf.gpu_start_ns.notna().all() and inf.gpu_end_ns.notna().all()  # replays too: caller-stream events
    # the inner rows of the capturing call: host times only, marked, no event recorded on the capturing stream
    inner = df[(df.inference == 13) & (df.event != "inference")]
    assert len(inner) and (inner.cudagraph == "capture").all() and inner.gpu_start_ns.isna().all()
    assert inner.note.fillna("").str.contains("CUDA graph").all() and inner.exclude.all()
    assert (inner.event.isin(["call", "exec", "fallback"])).any()
    # replays run no inner forward: nothing but the inference row
    assert set(df[df.inference.between(14, 42)].event) == {"inference"}
    warm = df[df.inference.between(10, 12) & (df.event == "exec")]
    assert len(warm) == 6 and (warm.cudagraph == "warmup").all() and warm.gpu_end_ns.notna().all()
    assert any("ran while a CUDA graph was being captured" in n for n in cap.meta["notes"])
    # said plainly: a replay's time and kernels cannot be split by engine or fallback
    said = [n for n in cap.meta["notes"] if "whole-graph CUDA-graph replay" in n]
    assert len(said) == 1 and said[0].startswith("29 whole-graph") and "no per-subgraph rows" in said[0]


@pytest.mark.parametrize("runtime", ["python", "cpp"])
def test_per_engine_mode_rows_are_marked(tmp_path, gpu, runtime):
    cap = _h200_scenario(tmp_path, _single(runtime))
    df = cap.timeline
    inf = df[df.event == "inference"].sort_values("inference")
    assert list(inf.inference) == list(range(45))  # no wrapper, no warm-up: 10 + 30 + 5
    calls = df[df.event == "call"].sort_values("call")
    cg = calls.cudagraph.astype(object).where(calls.cudagraph.notna(), None).tolist()
    assert cg == [None] * 10 + ["per-engine"] * 30 + [None] * 5
    assert (inf.cudagraph.fillna("") == "per-engine").sum() == 30
    # the first call with the mode on captures its graph: left out, it and its inference
    # (the first call and inference are the cold start)
    assert calls.exclude.fillna(False).tolist() == [True] + [False] * 9 + [True] + [False] * 34
    assert inf.exclude.fillna(False).tolist() == [True] + [False] * 9 + [True] + [False] * 34
    ex = df[df.event == "exec"].sort_values("call")
    assert len(ex) == 45 and ex.gpu_end_ns.notna().all()  # Python runtime: its replays are timed too
    assert ex.iloc[10].exclude and "captured the graph" in ex.iloc[10].note
    assert ex.iloc[11:].note.isna().all() and not ex.iloc[11:].exclude.fillna(False).any()


@pytest.mark.parametrize("runtime", ["python", "cpp"])
@pytest.mark.parametrize("options", [{"level": "minimal"}, {"brackets": False}])
def test_per_engine_replays_keep_their_exec_rows_without_subgraph_events(tmp_path, gpu, monkeypatch, runtime,
                                                                         options):
    """Without events on subgraph ranges (minimal level, --no-brackets: forced here, the stand-in has
    no CUPTI) a Python engine's replay is still its call's exec row, on the host clock: its kernels
    are given to it by their launch times."""
    monkeypatch.setattr(install.Instrumenter, "_brackets", lambda self, clock: False)
    df = _h200_scenario(tmp_path, _single(runtime), **options).timeline
    ex = df[df.event == "exec"]
    assert len(ex) == 45 and ex.gpu_start_ns.isna().all() and (ex.host_end_ns >= ex.host_start_ns).all()
    assert (ex.cudagraph == "per-engine").sum() == 30


def test_a_capture_trtprof_did_not_see_begin_is_asked_of_cuda(tmp_path, gpu, monkeypatch):
    """A capture begun outside torch.cuda.CUDAGraph (C++): the counter is 0, but before its first
    synchronize trtprof asks CUDA whether the current stream is capturing."""
    from cpu_models import partitioned
    state = {"capturing": True}
    ft = fake_torch()
    ft.cuda.is_current_stream_capturing = lambda: state["capturing"]
    ft.cuda.synchronize = lambda: (_ for _ in ()).throw(AssertionError("synchronize during a capture"))
    monkeypatch.setattr(install, "GpuClock", lambda t: GpuClock(ft))
    m = partitioned("cpp")
    x = torch.randn(2, 8)
    with trtprof.profile(tmp_path / "c", cpp_allocs=False) as cap:
        cap.instrument(m)
        m(x)  # inside the unseen capture: no anchor (it would synchronize), no event
        state["capturing"] = False
        ft.cuda.synchronize = lambda: None
        m(x)
        m(x)
    df = cap.timeline
    first = df[(df.inference == 0) & (df.event != "inference")]
    # both facts on the rows that lost GPU times: the cold start's note, then the capture's (a call row
    # has no GPU times to lose)
    timed = first[first.event != "call"]
    assert len(timed) == 3 and timed.note.str.endswith(CAPTURING_NOTE).fillna(False).all()
    assert first.note.str.startswith(COLD_NOTE).fillna(False).all() and first.gpu_start_ns.isna().all()
    later = df[(df.inference > 0) & (df.event == "exec")]
    assert len(later) == 4 and later.gpu_start_ns.notna().all()
    assert (df.event == "inference").sum() == 3
