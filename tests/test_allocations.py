"""Attribution of the allocator log to C++ runtime calls (pure functions, hand-built entries)."""
from types import SimpleNamespace

import pytest
import torch

from trtprof.capture.allocations import Entry, group_call, split_by_calls


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


def test_split_by_calls():
    calls = [SimpleNamespace(t0=0, t1=10), SimpleNamespace(t0=20, t1=30)]
    es = [Entry(t, "alloc", t, 8, 0) for t in (-5, 0, 5, 10, 15, 25, 31)]
    got = {i: [e.host_ns for e in v] for i, v in split_by_calls(es, calls).items()}
    assert got == {0: [0, 5, 10], 1: [25]}


def test_uncovered_exported_graph_is_reported():
    from trtprof.capture import graph
    from trtprof.capture.state import Instrumentation
    from trtprof.capture.recorder import Recorder
    from trtprof.capture.marks import Marks

    def execute_engine(x):  # stands for torch.ops.tensorrt.execute_engine in an exported graph
        return x

    ins = Instrumentation(Recorder(lambda r: None, None, Marks(False)), {})
    before = graph.uncovered_graphs(ins)
    g = torch.fx.Graph()
    x = g.placeholder("x")
    g.output(g.call_function(execute_engine, (x,)))
    gm = torch.fx.GraphModule(torch.nn.Module(), g)
    assert graph.uncovered_graphs(ins) == before + 1
    ins.models[gm] = None  # a hooked model is covered
    assert graph.uncovered_graphs(ins) == before


class _Memory:
    """torch.cuda.memory's history API as a double: a ring buffer of trace entries, cleared on request."""

    def __init__(self, clear_supported=True):
        self.trace, self.max, self.clear_supported, self.starts = [], 0, clear_supported, 0

    def _record_memory_history(self, enabled="all", context=None, stacks="python", max_entries=0, **kw):
        if "clear_history" in kw and not self.clear_supported:
            raise TypeError("unexpected keyword argument 'clear_history'")
        self.max, self.starts = max_entries, self.starts + 1
        if kw.get("clear_history"):
            self.trace = []

    def alloc(self, t_us, size):
        self.trace = (self.trace + [{"action": "alloc", "addr": t_us, "size": size, "time_us": t_us}])[-self.max:]

    def _snapshot(self):
        return {"device_traces": [list(self.trace)]}


def _torch_double(memory):
    import types
    return types.SimpleNamespace(cuda=types.SimpleNamespace(memory=memory, current_device=lambda: 0))


@pytest.mark.parametrize("clear", [True, False])
def test_allocator_log_harvests_each_entry_once(clear):
    from trtprof.capture.allocations import AllocatorLog
    mem = _Memory(clear_supported=clear)
    log = AllocatorLog(_torch_double(mem), max_entries=100)
    log.start()
    for t in range(1, 31):
        mem.alloc(t, 512)
    first = log.harvest()
    # cleared after the harvest (where this torch can): the next snapshot holds only new entries
    assert len(mem.trace) == (0 if clear else 30) and log.clears == clear
    for t in range(31, 41):
        mem.alloc(t, 1024)
    second = log.harvest()
    assert [e.size for e in first] == [512] * 30 and [e.size for e in second] == [1024] * 10
    assert second[0].host_ns > first[-1].host_ns and not log.dropped
