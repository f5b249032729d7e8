"""The lean path (engines.run_lean, graph.run_fallback: one function per engine and fallback call, its
frame filled at the safe point) gives the rows the layered path gives (engines._begin/run_cpp,
graph._fallback_pre/_post), column for column but the times: the same script is captured twice in
one process, the lean path switched off for the second, on the C++ runtime through the op (on the
GPU machine run_lean serves every level; run_cpp where a pre-allocation policy is forced)."""
import threading

import pytest
import torch

import trtprof
from cpu_models import partitioned

pytestmark = pytest.mark.fake_trt
TIMES = ["seq", "host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns"]


def _scenario(m):
    """Shape changes, pre-allocation switched by the setter and by assigning the engine's attribute,
    per-engine CUDA-graph mode on and off, a call that raises, and a model called again after it."""
    import torch_tensorrt

    for i in range(6):
        m(torch.randn(2 + (i % 2), 8))
    m._run_on_acc_0.set_pre_allocated_outputs(True)
    m(torch.randn(2, 8))
    m(torch.randn(2, 8))
    m._run_on_acc_2.engine.use_pre_allocated_outputs = True  # seen at the next re-read (64 calls)
    for _ in range(66):
        m(torch.randn(2, 8))
    torch_tensorrt.runtime.set_cudagraphs_mode(True)
    try:
        m(torch.randn(2, 8))
        m(torch.randn(3, 8))
    finally:
        torch_tensorrt.runtime.set_cudagraphs_mode(False)
    with pytest.raises(RuntimeError):
        m(torch.randn(2, 5))  # the first engine's Linear refuses it
    m(torch.randn(2, 8))
    m._run_on_acc_0(torch.randn(4, 8))  # an engine called on its own


class _Entries:
    """An allocator log with entries inside every call: one allocation, two when pre-allocated outputs
    are on except in the subgraph's even calls (one pass: before execution or, where the runtime could
    reuse buffers, after the enqueue; the first call after the switch is one), so the groups read the
    filled frames' mode, `expect_after` and outputs. Never `active`: a real one is only on with CUDA, and the capture's end would synchronize."""
    active, dropped = False, 0

    def __init__(self):
        self.k = 0

    def start_safely(self):
        return True

    def stop(self):
        pass

    def harvest(self, calls):
        from trtprof.capture.allocations import Entry
        out = {}
        for i, c in enumerate(calls):
            assert c.lean is None  # filled before the log reads them
            self.k += 1
            two = c.prealloc and c.call % 2 == 1
            out[i] = [Entry(c.t0 + 1, "alloc", 2 * self.k, 64, 0)] + ([Entry(c.t0 + 2, "alloc", 2 * self.k + 1, 64, 0)]
                                                                      if two else [])
        return out


def _capture(tmp_path, lean: bool, alloc_log=False, discover=False, **options):
    m = partitioned("cpp")
    s = trtprof.Session(tmp_path, **options).start()
    ins = s.instrumenter.ins
    ins.lean = lean and ins.lean
    assert ins.lean is lean
    if alloc_log:
        ins.alloc_log = _Entries()
    try:
        if not discover:  # else found from its first engine call, mid-inference
            s.instrument(m)
        _scenario(m)
        t = threading.Thread(target=lambda: [m(torch.randn(2, 8)) for _ in range(3)])
        t.start()
        t.join()
    finally:
        cap = s.stop()
    return cap.timeline


@pytest.fixture(params=["no CUDA", "events"])
def clock(request, monkeypatch):
    """Without CUDA (host times only), or with the event double of test_levels_events (brackets shared
    at subgraph boundaries, as on the GPU at the full level)."""
    if request.param == "no CUDA":
        return None
    from test_levels_events import FakeClock

    from trtprof.capture import install
    made = []
    monkeypatch.setattr(install, "GpuClock", lambda torch_module: made.append(FakeClock()) or made[-1])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return made


@pytest.mark.parametrize("options", [{}, {"sample": 3}, {"level": "minimal"}, {"alloc_log": True},
                                     {"discover": True}, {"discover": True, "sample": 3}])
def test_the_lean_path_gives_the_layered_paths_rows(tmp_path, options, clock):
    lean = _capture(tmp_path / "lean", True, **options)
    layered = _capture(tmp_path / "layered", False, **options)
    if clock is not None:  # the same events recorded, shared at the same boundaries
        assert clock[0].recorded == clock[1].recorded > 0
        from cpu_models import assert_boundaries_shared
        if options.get("level") != "minimal":
            for i, inf in lean[lean.cudagraph.isna() & (lean.inference >= 0)].groupby("inference"):
                if (inf.event == "exec").sum() == 2 and (inf.event == "inference").any():
                    assert_boundaries_shared(inf)
    assert len(lean) > 150 and set(lean.event) >= {"inference", "call", "exec", "fallback"}
    assert lean["note"].astype("string").str.contains("raised").any()
    assert lean["cudagraph"].notna().any() and lean["shape_changed"].fillna(False).astype(bool).any()
    main = threading.get_ident()  # the worker threads of the two runs have their own idents
    a, b = (t.drop(columns=TIMES).assign(thread=t.thread == main) for t in (lean, layered))
    assert not a.thread.all() and a.thread.any()
    pd = pytest.importorskip("pandas")
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    for t in (lean, layered):
        assert (t.host_end_ns >= t.host_start_ns).all()
    if options.get("alloc_log"):  # the log's groups reached the rows, both phases among them
        assert lean.loc[lean.event == "call", "outputs"].notna().all()
        assert set(lean.alloc_phase.dropna()) == {"before_exec", "after_enqueue"}
    if options.get("discover"):  # its first inference has no row of its own; its engine rows say 0
        assert (lean[lean.event == "inference"].inference > 0).all() and (lean.inference == 0).any()
