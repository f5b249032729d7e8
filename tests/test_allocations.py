"""Attribution of the allocator log to C++ runtime calls (pure functions, hand-built entries)."""
import time
from types import SimpleNamespace

import pytest
import torch

from trtprof.capture.allocations import Entry, group_call


def _out_fp16(t, addr, size):
    """What 2.11's at::empty(fp32).to(fp16) leaves in the log for one output."""
    return [Entry(t, "alloc", addr, size * 2, 0), Entry(t + 2, "alloc", addr + 1, size, 0),
            Entry(t + 4, "free_requested", addr, size * 2, 0)]


def test_normal_call_one_group_with_cast_staging():
    e = _out_fp16(100, 10, 1536) + _out_fp16(110, 20, 196608)
    [g] = group_call(e, prealloc=False, expect_after=False)
    assert g.phase == "before_exec" and g.bytes == 1536 + 196608 and g.count == 4
    assert g.temp_count == 2 and g.temp_bytes == 2 * (1536 + 196608)
    assert (g.start_ns, g.end_ns) == (100, 114)


def test_prealloc_first_call_two_groups_and_new_segment():
    before = _out_fp16(100, 10, 512)
    after = [Entry(900, "segment_alloc", 0, 2 << 20, 0)] + _out_fp16(901, 50, 512)
    after_sig = [Entry(900, "alloc", 60, 1024, 0)] + after[2:]  # keep signatures comparable below
    gs = group_call(before + before, prealloc=True, expect_after=False)
    assert [g.phase for g in gs] == ["before_exec", "after_enqueue"]
    [g] = group_call(after, prealloc=True, expect_after=False)
    assert g.new_segments == 1 and g.phase == "before_exec"
    [g] = group_call(after_sig, prealloc=True, expect_after=True)
    assert g.phase == "after_enqueue"


def test_nothing_allocated():
    assert group_call([], prealloc=True, expect_after=True) == []
    assert group_call([Entry(1, "free_completed", 1, 8, 0)], prealloc=False, expect_after=False) == []


def test_uncovered_exported_graph_is_reported():
    from trtprof.capture import op_graphs
    from trtprof.capture.state import Instrumentation
    from trtprof.capture.recorder import Recorder
    from trtprof.capture.marks import Marks

    def execute_engine(x):  # stands for torch.ops.tensorrt.execute_engine in an exported graph
        return x
    execute_engine._name = "tensorrt::execute_engine"  # as on the op's OpOverload

    ins = Instrumentation(Recorder(lambda r: None, None, Marks(False)), {})
    before = len(op_graphs.uncovered(ins))
    g = torch.fx.Graph()
    x = g.placeholder("x")
    g.output(g.call_function(execute_engine, (x,)))
    gm = torch.fx.GraphModule(torch.nn.Module(), g)
    assert len(op_graphs.uncovered(ins)) == before + 1
    ins.models[gm] = None  # a hooked model is covered
    assert len(op_graphs.uncovered(ins)) == before


class _Memory:
    """torch.cuda.memory's history API as a double: a ring buffer of trace entries in time order,
    cleared on request; `clear_supported` / `skip_supported` play older torch versions."""

    def __init__(self, clear_supported=True, skip_supported=True):
        self.trace, self.max, self.starts, self.stops, self.kept = [], 0, 0, 0, 0
        self.clear_supported, self.skip_supported = clear_supported, skip_supported
        self.skip, self.enabled = (), False

    def _record_memory_history(self, enabled="all", context=None, stacks="python", max_entries=0, **kw):
        if enabled is None:  # off: the allocator empties its history (CUDACachingAllocator recordHistory)
            self.enabled, self.trace, self.stops = False, [], self.stops + 1
            return
        if "clear_history" in kw and not self.clear_supported or "skip_actions" in kw and not self.skip_supported:
            raise TypeError("unexpected keyword argument")
        self.max, self.starts, self.skip = max_entries, self.starts + 1, tuple(kw.get("skip_actions") or ())
        self.enabled = True
        if kw.get("clear_history"):
            self.trace = []

    def record(self, t_us, action="alloc", size=512):
        if self.enabled and action not in self.skip:
            self.kept += 1
            self.trace = (self.trace + [{"action": action, "addr": t_us, "size": size, "time_us": t_us}])[-self.max:]

    def _snapshot(self):
        return {"device_traces": [list(self.trace)]}


def _log(memory, max_entries=100, start=True):
    import types
    from trtprof.capture.allocations import AllocatorLog
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(memory=memory, current_device=lambda: 0))
    log = AllocatorLog(fake_torch, max_entries=max_entries)
    if start:
        log.start()
    return log


def _us_to_host(log_offset_us):
    """A call window on the host clock around trace times given in us (the log converts with
    time.time_ns() - time.perf_counter_ns(), stable to well under a microsecond here)."""
    import time
    return log_offset_us * 1000 - (time.time_ns() - time.perf_counter_ns())


@pytest.mark.parametrize("clear,skip", [(True, True), (False, False)])
def test_allocator_log_gives_each_call_its_window(clear, skip):
    mem = _Memory(clear_supported=clear, skip_supported=skip)
    log = _log(mem)
    base = (__import__("time").time_ns() // 1000) + 10_000  # trace times in us, in the near future
    for t in range(0, 40):
        mem.record(base + 10 * t)
        mem.record(base + 10 * t + 1, "free_completed")
    # calls covering [100, 150] and [300, 320] us after base (5 and 2 allocations inside)
    calls = [SimpleNamespace(t0=_us_to_host(base + 100) - 4000, t1=_us_to_host(base + 140) + 4000),
             SimpleNamespace(t0=_us_to_host(base + 300) - 4000, t1=_us_to_host(base + 310) + 4000)]
    got = log.harvest(calls)
    allocs = {i: [e for e in v if e.action == "alloc"] for i, v in got.items()}
    assert [len(allocs[0]), len(allocs[1])] == [5, 2]
    assert all(calls[i].t0 <= e.host_ns <= calls[i].t1 for i, v in got.items() for e in v)
    # what the allocator was asked to skip never shows up; without skip_actions it is filtered later
    assert any(e.action == "free_completed" for v in got.values() for e in v) == (not skip)
    assert log.skips == skip and log.clears == clear
    assert len(mem.trace) == (0 if clear else 80)  # cleared after the harvest where torch can
    assert not log.dropped


def test_allocator_log_says_when_the_ring_buffer_wrapped():
    mem = _Memory()
    log = _log(mem, max_entries=10)
    base = (__import__("time").time_ns() // 1000) + 10_000
    for t in range(30):
        mem.record(base + t)
    log.harvest([SimpleNamespace(t0=_us_to_host(base) - 500, t1=_us_to_host(base + 29) + 500)])
    assert log.dropped


def test_allocator_log_overlapping_calls_share_no_entry():
    """Two threads' calls overlapping in time: each entry goes to one call (the earlier-starting)."""
    mem = _Memory()
    log = _log(mem)
    base = (__import__("time").time_ns() // 1000) + 10_000
    for t in range(0, 100, 10):
        mem.record(base + t)
    calls = [SimpleNamespace(t0=_us_to_host(base) - 4000, t1=_us_to_host(base + 50) + 4000),
             SimpleNamespace(t0=_us_to_host(base + 30) - 4000, t1=_us_to_host(base + 90) + 4000)]
    got = log.harvest(calls)
    assert [len(got[0]), len(got[1])] == [6, 4]


def _pass_2_11(t, addr, sizes, old=()):
    """One output-creation pass of 2.11's execute_engine.cpp (`create_output_tensors`): per output
    alloc(fp32) alloc(fp16) free(fp32); the pass after the enqueue then drops the previous call's
    buffers (`pre_allocated_outputs = ...`), freeing blocks allocated before this call (`old`)."""
    out = []
    for i, size in enumerate(sizes):
        out += _out_fp16(t + 10 * i, addr + 10 * i, size)
    out += [Entry(t + 10 * len(sizes) + j, "free_requested", a, 0, 0) for j, a in enumerate(old)]
    return out


@pytest.mark.parametrize("outputs", [1, 2])
def test_shape_change_with_prealloc_is_two_passes(outputs):
    """Issue 17 item 3: pre-allocation on and the input shapes changed: fresh outputs before
    execution, new buffers after the enqueue (freeing the old ones, so the passes differ): two rows."""
    sizes = [4 * 256 * 2] * outputs
    before = _pass_2_11(100, 1000, sizes)
    after = [Entry(500, "segment_alloc", 0, 2 << 20, 0)] + _pass_2_11(501, 2000, sizes, old=(7, 8)[:outputs])
    gs = group_call(before + after, prealloc=True, expect_after=False, outputs=outputs)
    assert [g.phase for g in gs] == ["before_exec", "after_enqueue"]
    assert [g.bytes for g in gs] == [sum(sizes)] * 2 and [g.count for g in gs] == [2 * outputs] * 2
    assert gs[0].end_ns < gs[1].start_ns and gs[1].new_segments == 1 and gs[0].new_segments == 0
    # the halves heuristic (no output count) cannot split them: the old fault, kept as a fallback
    assert len(group_call(before + after, prealloc=True, expect_after=False)) == 1


def test_one_pass_phases_with_output_count():
    sizes = [2048]
    one = _pass_2_11(100, 1000, sizes)
    [g] = group_call(one, prealloc=True, expect_after=True, outputs=1)  # buffers reused: only the next ones
    assert g.phase == "after_enqueue"
    [g] = group_call(one, prealloc=False, expect_after=False, outputs=1)
    assert g.phase == "before_exec" and g.bytes == 2048 and g.temp_count == 1
    # a dynamic workspace allocated and freed inside the call is no output: still one pass
    ws = [Entry(90, "alloc", 5, 1 << 20, 0)] + one + [Entry(300, "free_requested", 5, 1 << 20, 0)]
    [g] = group_call(ws, prealloc=False, expect_after=False, outputs=1)
    assert g.bytes == 2048 and g.temp_bytes == (1 << 20) + 4096


def test_output_allocator_one_group():
    """Output-allocator mode: reallocateOutputAsync inside the enqueue, then a clone per output."""
    e = [Entry(100, "alloc", 1, 4096, 0), Entry(200, "alloc", 2, 4096, 0)]
    [g] = group_call(e, prealloc=False, expect_after=False, outputs=1, output_allocator=True)
    assert g.phase == "output_allocator" and g.count == 2 and g.bytes == 8192


def test_an_allocator_history_that_fails_costs_the_allocations_not_the_call():
    """A torch whose history refuses to start, or whose snapshot raises at a safe point: the C++
    calls keep their rows (ready, no allocation groups), the log is dropped, the reason is kept."""
    import types

    from trtprof.capture import engines
    from trtprof.capture.allocations import AllocatorLog

    class Refusing(_Memory):
        def _record_memory_history(self, *a, **kw):
            raise RuntimeError("record_context_cpp is not supported on this platform")

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(memory=Refusing(), current_device=lambda: 0))
    log = AllocatorLog(fake)
    assert log.start_safely() is False and not log.active and log.failed.startswith("RuntimeError: record_context")

    class Broken(_Memory):
        def _snapshot(self):
            raise RuntimeError("CUDA error: an illegal memory access")

    log = _log(Broken())
    frames = [SimpleNamespace(t0=1, t1=2, prealloc=False, expect_after=False, out_shapes=[(2, 8)],
                              output_allocator=False, ready=False, groups=None, lean=None)]
    from trtprof.capture.recorder import Recorder
    from trtprof.capture.state import Instrumentation
    ins = Instrumentation(Recorder(lambda rows: None), {})
    ins.cpp_pending, ins.alloc_log = list(frames), log
    engines.harvest_cpp(ins)
    assert frames[0].ready and frames[0].groups == [] and ins.alloc_log is None
    assert "illegal memory access" in ins.alloc_failed


def _wait_us(us: int) -> None:
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


@pytest.mark.fake_trt
@pytest.mark.parametrize("sample", [1, 4])
def test_sampling_stops_the_allocator_log_while_inferences_are_skipped(tmp_path, monkeypatch, sample):
    """Every engine call allocates (one entry in the allocator's history, if it records); with
    `sample` > 1 the log runs only around recorded inferences: entries of skipped ones are never
    kept (a harvest would turn each into a Python object), every recorded call still gets its own."""
    import trtprof
    from cpu_models import partitioned
    from trtprof.capture import ops

    mem = _Memory()
    m = partitioned("cpp")
    s = trtprof.Session(tmp_path / "cap", sample=sample).start()
    ins = s.instrumenter.ins
    ins.alloc_log = _log(mem, max_entries=10_000, start=False)  # started at the first engine call
    real = ops._REAL

    def allocating(inputs, engine):  # the allocation well inside the call's host interval
        _wait_us(20)
        mem.record(-(-time.time_ns() // 1000))
        _wait_us(20)
        return real(inputs, engine)
    monkeypatch.setattr(ops, "_REAL", allocating)
    active = []
    try:
        s.instrument(m)
        for _ in range(21):
            m(torch.randn(2, 8))
            active.append(mem.enabled)
    finally:
        df = s.stop().timeline
    calls = df[(df.event == "call") & (df.subgraph_kind == "engine")]
    allocs = df[df.event == "alloc"]
    recorded = sorted(set(df[df.event == "inference"].inference))
    assert recorded == (list(range(21)) if sample == 1 else [0, 4, 8, 12, 16, 20])
    assert len(calls) == 2 * len(recorded) and len(allocs) == len(calls)  # one pass per recorded call
    assert set(zip(allocs.subgraph, allocs.inference)) == set(zip(calls.subgraph, calls.inference))
    assert mem.kept == len(calls)  # nothing from a skipped inference reached the history
    if sample == 1:
        assert all(active) and mem.stops == 1  # on from the first call to the end of the capture
    else:
        assert not any(active) and mem.stops == len(recorded)


def test_the_log_stops_after_the_last_recorded_inference_in_flight_on_any_thread():
    """Two threads inside recorded inferences: the first to finish leaves the log running."""
    from trtprof.capture import sampling
    from trtprof.capture.recorder import Recorder
    from trtprof.capture.state import Instrumentation, ModelInfo

    mem = _Memory()
    ins = Instrumentation(Recorder(lambda rows: None), {}, sample=4)
    ins.alloc_log = _log(mem, start=False)
    info = ModelInfo("m", "GraphModule", calls=2)  # its next inference (2) is not due to be recorded
    sampling.resume(ins)
    assert not mem.enabled  # never started: the first C++ engine call starts it
    ins.alloc_log.start()
    sampling.resume(ins)
    assert mem.enabled and mem.starts == 1
    sampling.pause(ins, info)
    assert mem.enabled
    sampling.pause(ins, info)
    assert not mem.enabled and mem.stops == 1
    sampling.resume(ins)
    info.calls = 4  # due: the log stays on for it
    sampling.pause(ins, info)
    assert mem.enabled and mem.stops == 1


def test_a_recorded_inference_beginning_while_the_log_stops_keeps_it_running():
    """Thread A closes a recorded inference (its model's next one is not due) and stops the log; thread
    B opens a recorded inference while A harvests: B waits for A, then starts the log again."""
    import threading

    from trtprof.capture import sampling
    from trtprof.capture.recorder import Recorder
    from trtprof.capture.state import Instrumentation, ModelInfo

    mem = _Memory()
    ins = Instrumentation(Recorder(lambda rows: None), {}, sample=4)  # no kernel activity
    ins.alloc_log = _log(mem)  # running: started by an earlier C++ engine call
    info = ModelInfo("m", "GraphModule", calls=2)
    sampling.resume(ins)  # A's recorded inference
    ins.cpp_pending.append(object())  # A's C++ call, to be harvested before the log stops
    b = threading.Thread(target=sampling.resume, args=(ins,))  # B's _model_pre

    def harvest(i):  # inside A's pause, after its look at the recorded inferences in flight
        i.cpp_pending = []
        b.start()
        b.join(0.2)
    ins.harvest = harvest
    sampling.pause(ins, info)
    b.join()
    assert len(ins.in_flight) == 1 and mem.enabled and mem.stops == 1 and mem.starts == 2


@pytest.mark.fake_trt
def test_a_log_that_cannot_stop_never_raises_into_the_model_call(tmp_path):
    import trtprof
    from cpu_models import partitioned

    class Broken(_Memory):
        def _record_memory_history(self, enabled="all", **kw):
            if enabled is None:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return super()._record_memory_history(enabled, **kw)
    m = partitioned("cpp")
    s = trtprof.Session(tmp_path / "cap", sample=4).start()
    ins = s.instrumenter.ins
    ins.alloc_log = _log(Broken(), start=False)
    try:
        s.instrument(m)
        for _ in range(8):
            m(torch.randn(2, 8))
        assert ins.alloc_log is None and "illegal memory access" in ins.alloc_failed
    finally:
        cap = s.stop()
    assert cap.meta["status"] == "complete"
    assert any("allocator's history failed" in n for n in cap.meta["notes"])
