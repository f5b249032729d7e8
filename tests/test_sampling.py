"""Sampling (`--sample N`): 1 inference in N is recorded, plus every input-shape change and the one
after it; the others pass through every hook. Runs the real capture path on the CPU stand-in
runtime modules; tests/test_gpu_capture.py runs it on real engines."""
import subprocess
import sys

import pandas as pd
import pytest
import torch

import trtprof
from trtprof.analysis import shapes
from trtprof.capture import state

pytestmark = pytest.mark.fake_trt


def _run(tmp_path, runtime, xs, sample=4, level="full", **kw):
    from cpu_models import partitioned
    m = partitioned(runtime)
    with trtprof.profile(out=tmp_path / "c", sample=sample, level=level, cpp_allocs=False, **kw) as cap:
        cap.instrument(m)
        for x in xs:
            m(x)
        assert state.ACTIVE.stacks.muted == 0  # every skipped inference was left again
    return cap


@pytest.mark.parametrize("runtime", ["cpp", "python"])
@pytest.mark.parametrize("level", ["full", "minimal"])
def test_one_in_n_with_true_indices(tmp_path, runtime, level):
    x = torch.randn(2, 8)
    cap = _run(tmp_path, runtime, [x] * 20, level=level)
    df = cap.timeline
    assert sorted(df[df.event == "inference"].inference) == [0, 4, 8, 12, 16]
    assert set(df.inference) == {0, 4, 8, 12, 16}
    for sub in ("_run_on_acc_0", "_run_on_acc_2"):
        calls = df[(df.subgraph == sub) & (df.event == "call")]
        # the subgraphs' call indices count the skipped inferences too
        assert calls.call.tolist() == calls.inference.tolist() == [0, 4, 8, 12, 16]
    fb = df[df.event == "fallback"]
    assert fb.call.tolist() == [0, 4, 8, 12, 16]
    assert cap.meta["sample"] == 4 and cap.meta["options"]["sample"] == 4
    assert not df.shape_changed.fillna(False).astype(bool).any()


def test_shape_changes_are_always_recorded(tmp_path):
    a, b = torch.randn(2, 8), torch.randn(3, 8)
    xs = [a] * 6 + [b] * 6 + [a] * 3  # changes at inference 6 and 12
    cap = _run(tmp_path, "cpp", xs, sample=5)
    df = cap.timeline
    # every 5th (0, 5, 10), each change (6, 12) and the inference after it (7, 13)
    assert sorted(df[df.event == "inference"].inference) == [0, 5, 6, 7, 10, 12, 13]
    changed = df[(df.event == "call") & df.shape_changed.fillna(False).astype(bool)]
    assert sorted(set(changed.inference)) == [6, 12]
    found = shapes.shape_changes(df)
    assert sorted(set(found.inference)) == [6, 12]
    assert set(found[found.inference == 6].new_shapes) == {"(3,8)"}


def test_sample_one_records_everything(tmp_path):
    x = torch.randn(2, 8)
    df = _run(tmp_path, "python", [x] * 7, sample=1).timeline
    assert sorted(df[df.event == "inference"].inference) == list(range(7))


def test_bad_sample_values(tmp_path):
    for bad in (0, -3, 2.5, True, "4"):
        with pytest.raises(ValueError, match="sample must be"):
            trtprof.Session(tmp_path / "d", sample=bad)
    with pytest.raises(ValueError, match="cannot be combined with --sample"):
        trtprof.Session(tmp_path / "d", sample=3, prealloc="alternate:10")


def test_cli_sample_errors_are_one_line(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    for extra in (["--sample", "0"], ["--sample", "3", "--prealloc", "alternate"]):
        p = subprocess.run([sys.executable, "-m", "trtprof", "capture", "-o", str(tmp_path / "o"), *extra,
                            str(script)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and "ran" not in p.stdout
        assert "sample" in p.stderr.lower()


def test_report_says_what_was_sampled(tmp_path):
    from trtprof.timeline.store import load_capture
    from report_helpers import write_report
    x = torch.randn(2, 8)
    cap = _run(tmp_path, "cpp", [x] * 9, sample=3, level="minimal")
    html = write_report(load_capture(cap.path)).read_text()
    assert "level minimal; sampled: 1 inference in 3" in html


@pytest.mark.parametrize("runtime", ["cpp", "python"])
def test_mode_changes_inside_skipped_inferences(tmp_path, runtime):
    """Pre-allocation switched on during a skipped inference: the next recorded call is compared
    with the skipped one (buffers it could reuse), not with the last recorded call."""
    import torch_tensorrt
    from cpu_models import partitioned
    m = partitioned(runtime)
    x = torch.randn(2, 8)
    with trtprof.profile(out=tmp_path / "c", sample=3, cpp_allocs=False) as cap:
        cap.instrument(m)
        m(x)
        m(x)
        with torch_tensorrt.runtime.enable_pre_allocated_outputs(m):
            for _ in range(5):  # inferences 2..6: pre-allocation on from 2 (skipped)
                m(x)
    calls = cap.timeline[(cap.timeline.event == "call") & (cap.timeline.subgraph == "_run_on_acc_0")]
    row = calls.set_index("inference").loc[3]
    excluded = False if pd.isna(row.exclude) else bool(row.exclude)
    assert bool(row.prealloc) and not excluded  # not a flip: call 2 (skipped) had it on already
    if runtime == "python":
        assert row.outputs == "preallocated"


@pytest.mark.parametrize("runtime", ["cpp", "python"])
def test_mode_changed_right_before_a_recorded_inference(tmp_path, runtime):
    """Switched on after skipped inferences 1-2 and right before the recorded 3: call 3 is the
    first with it on (a flip, no buffers to reuse), though the engine's mode is already on."""
    import torch_tensorrt
    from cpu_models import partitioned
    m = partitioned(runtime)
    x = torch.randn(2, 8)
    with trtprof.profile(out=tmp_path / "c", sample=3, cpp_allocs=False) as cap:
        cap.instrument(m)
        for _ in range(3):
            m(x)
        with torch_tensorrt.runtime.enable_pre_allocated_outputs(m):
            m(x)
            m(x)
    calls = cap.timeline[(cap.timeline.event == "call") & (cap.timeline.subgraph == "_run_on_acc_0")]
    row = calls.set_index("inference").loc[3]
    assert bool(row.prealloc) and bool(row.exclude)  # the first call after a flip: left out of statistics
    if runtime == "python":
        assert row.outputs == "new"


@pytest.mark.fake_trt
def test_recording_paused_inside_an_inference_leaves_nothing_open(tmp_path, monkeypatch):
    """Session.pause() while an inference is inside its model (another thread's controller, here the
    engine call itself): that inference is dropped, and after resume() the model's inferences on that
    thread are recorded again and sampling still switches kernel activity off between them."""
    import trtprof
    from cpu_models import partitioned
    from trtprof.capture import ops

    class Kernels:  # CUPTI's switch, as Instrumentation drives it
        enabled = False

        def resume(self):
            self.enabled = True
            return True

        def pause(self):
            self.enabled = False
            return True

        def due(self, t):
            return False

    m = partitioned("cpp")
    s = trtprof.Session(tmp_path / "cap", sample=2).start()
    ins = s.instrumenter.ins
    k = ins.kernels = Kernels()
    real, pause_now = ops._REAL, [False]

    def op(inputs, engine):
        if pause_now[0]:
            pause_now[0] = False
            s.pause()
        return real(inputs, engine)
    monkeypatch.setattr(ops, "_REAL", op)
    try:
        s.instrument(m)
        for _ in range(4):
            m(torch.randn(2, 8))
        pause_now[0] = True
        m(torch.randn(2, 8))  # inference 4, recorded: paused inside its first engine call
        s.resume()
        assert not ins.stacks.inferences and not ins.in_flight
        for _ in range(5):  # 5..9: 6 and 8 recorded
            m(torch.randn(2, 8))
        assert not k.enabled and not ins.in_flight
    finally:
        df = s.stop().timeline
    assert sorted(set(df[df.event == "inference"].inference)) == [0, 2, 6, 8]
