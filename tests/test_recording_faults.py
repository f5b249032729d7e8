"""Recording under faults: an event CUDA cannot resolve, a stream capture in progress, a disk that
refuses the spill. None of them may cost the other rows or raise into the user's model call.

The real GpuClock runs on CPU against pure-Python events (support/gpu_doubles.py); the stream-capture
door (torch.cuda.CUDAGraph) is replaced by a double, so the check itself is what is tested.
"""
import pytest
import torch

import trtprof
from gpu_doubles import Event, Graph, use_fake_gpu
from trtprof.capture import events
from trtprof.capture import records as R
from trtprof.capture.recorder import CAPTURING_NOTE, Recorder

pytestmark = pytest.mark.fake_trt


@pytest.fixture
def gpu(monkeypatch):
    use_fake_gpu(monkeypatch)
    monkeypatch.setattr(events, "REANCHOR_NS", 10**18)  # these tests number the events recorded
    yield Event
    assert events.Captures.depth == 0


def _run(tmp_path, calls=6, during=None):
    from cpu_models import partitioned
    m = partitioned("python")
    with trtprof.profile(tmp_path / "c", cpp_allocs=False) as cap:
        cap.instrument(m)
        for i in range(calls):
            if during is not None and i in during:
                g = torch.cuda.CUDAGraph()
                g.capture_begin()
                m(torch.randn(2, 8))
                g.capture_end()
            else:
                m(torch.randn(2, 8))
    return cap


# -- one unresolvable event ---------------------------------------------------------------------------
class _Bad:
    """An event whose query or elapsed time raises, as CUDA does for one recorded during a capture."""


class RaisingClock:
    """GpuClock's interface; events listed in `bad` raise in `done` (query) or `host_ns` (elapsed)."""

    def __init__(self, where):
        self.where, self.recycled = where, []

    def done(self, ev):
        if isinstance(ev, _Bad) and self.where == "query":
            raise RuntimeError("CUDA error: invalid argument")
        return True

    def host_ns(self, ev):
        if isinstance(ev, _Bad) and self.where == "elapsed":
            raise RuntimeError("AcceleratorError: CUDA error: invalid argument")
        return None if ev is None else ev.t

    def recycle(self, ev):
        self.recycled.append(ev)

    def synchronize(self):
        pass


class _Good:
    def __init__(self, t):
        self.t = t


@pytest.mark.parametrize("where", ["query", "elapsed"])
def test_an_unresolvable_event_keeps_every_row(where):
    got = []
    clock = RaisingClock(where)
    rec = Recorder(got.extend, clock, batch=4)
    for i in range(10):
        r = Recorder.new("exec", host_start_ns=100 * i, host_end_ns=100 * i + 50)
        bad = i in (3, 7)
        rec.add(r, _Bad() if bad else _Good(100 * i + 1), _Good(100 * i + 40))
        rec.safe_point()
    rec.drain(wait=True)
    assert [row[R.INDEX["host_start_ns"]] for row in got] == [100 * i for i in range(10)]  # none lost, in order
    gs = [row[R.INDEX["gpu_start_ns"]] for row in got]
    assert [i for i, g in enumerate(gs) if g is None] == [3, 7]
    notes = [row[R.INDEX["note"]] for row in got]
    assert "could not be resolved" in notes[3] and "invalid argument" in notes[3] and notes[4] is None
    assert rec.lost == 2 and rec.error is None
    assert not any(isinstance(e, _Bad) for e in clock.recycled)  # a failed event is never reused


def test_the_loss_is_said_in_one_note_line(tmp_path, gpu):
    gpu.reset(fail={8, 9, 20}, mode="elapsed")  # a few events of the 2nd and 4th inferences
    cap = _run(tmp_path)
    df = cap.timeline
    assert (df.event == "inference").sum() == 6 and (df.event == "exec").sum() == 12  # every row
    lost = df[df.note.fillna("").str.contains("could not be resolved")]
    assert 1 <= len(lost) and lost.gpu_end_ns.isna().any()
    line = [n for n in cap.meta["notes"] if "could not be resolved" in n]
    assert len(line) == 1 and line[0].startswith(f"{len(lost)} row(s) have host times only")
    assert "\n" not in line[0] and cap.meta["status"] == "complete"


def test_events_never_complete_at_the_end(tmp_path):
    class Never(RaisingClock):
        def done(self, ev):
            return False
    got = []
    rec = Recorder(got.extend, Never("none"))
    rec.add(Recorder.new("exec", host_start_ns=1, host_end_ns=2), _Good(1), _Good(2))
    rec.drain(wait=True)
    assert len(got) == 1 and got[0][R.INDEX["gpu_start_ns"]] is None and "not completed" in got[0][R.INDEX["note"]]


# -- a stream capture in progress -------------------------------------------------------------------------
def test_no_events_while_a_cuda_graph_is_captured(tmp_path, gpu):
    cap = _run(tmp_path, calls=6, during={2, 3})
    df = cap.timeline
    assert (df.event == "inference").sum() == 6  # the captured calls' rows are there, host times only
    inside = df[df.inference.isin([2, 3]) & df.event.isin(["exec", "fallback"])]
    outside = df[~df.inference.isin([2, 3]) & df.event.isin(["exec", "fallback"])]
    assert len(inside) == 6 and inside.gpu_start_ns.isna().all() and inside.gpu_end_ns.isna().all()
    assert (inside.note == CAPTURING_NOTE).all() and inside.host_end_ns.notna().all()
    assert outside.gpu_start_ns.notna().all() and outside[outside.inference > 0].note.isna().all()
    assert outside[outside.inference == 0].note.str.contains("cold start").all()
    assert gpu.recorded == 5 + 4 * 6  # the anchor's five tries, and six events per plain inference only
    line = [n for n in cap.meta["notes"] if "CUDA graph" in n]
    assert len(line) == 1 and line[0].startswith(f"{len(inside)} row(s) ran while a CUDA graph")
    assert torch.cuda.CUDAGraph.capture_begin is Graph.__dict__["capture_begin"]  # restored at the end


def test_a_failed_capture_begin_does_not_leave_the_flag_set(tmp_path, gpu, monkeypatch):
    def broken(self, *a, **k):
        raise RuntimeError("capture refused")
    monkeypatch.setattr(Graph, "capture_begin", broken)
    with trtprof.profile(tmp_path / "c", cpp_allocs=False):
        with pytest.raises(RuntimeError):
            torch.cuda.CUDAGraph().capture_begin()
        assert events.Captures.depth == 0
