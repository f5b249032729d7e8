"""--prealloc on|off|alternate:K on CPU, through the stand-in runtimes (the same code drives the real ones)."""
import pytest
import torch

import trtprof
from trtprof.capture.prealloc import Policy

pytestmark = pytest.mark.fake_trt


def _model(rt):
    from cpu_models import partitioned
    return partitioned(rt)


@pytest.mark.parametrize("rt", ["python", "cpp"])
def test_alternate_interleaves_and_excludes_flips(tmp_path, rt):
    m = _model(rt)
    with trtprof.profile(out=tmp_path / "c", prealloc="alternate:2") as cap:
        for _ in range(8):
            m(torch.randn(2, 8))
    df = cap.timeline
    inf = df[df.event == "inference"].set_index("inference").sort_index()
    calls = df[(df.event == "call") & (df.subgraph == "_run_on_acc_0")].set_index("inference").sort_index()
    assert list(calls.prealloc) == [False, False, True, True, False, False, True, True]
    # call 0: the cold start; then the first call after each flip
    assert list(calls.exclude.fillna(False)) == [True, False, True, False, True, False, True, False]
    # the inference rows of the flip calls are excluded too (call 0 was discovered mid-call: no row)
    assert list(inf.exclude.fillna(False)) == [False, True, False, True, False, True, False]
    if rt == "python":
        assert list(calls.outputs) == ["new", "new", "new", "preallocated", "new", "new", "new", "preallocated"]


@pytest.mark.parametrize("mode,expect", [("on", True), ("off", False)])
def test_forced_mode_ignores_the_script(tmp_path, mode, expect):
    import torch_tensorrt
    m = _model("python")
    with trtprof.profile(out=tmp_path / "c", prealloc=mode) as cap:
        ctx = torch_tensorrt.runtime.enable_pre_allocated_outputs(m)
        for i in range(4):
            ctx.set_pre_allocated_output(i % 2 == 0)  # the script flips; the policy wins
            m(torch.randn(2, 8))
    df = cap.timeline
    engines = df[df.subgraph_kind == "engine"]
    assert set(engines.prealloc) == {expect}
    assert any("ignored" in n for n in cap.meta["notes"])
    # the runtime's own setter is back afterwards
    ctx.set_pre_allocated_output(True)
    assert m._run_on_acc_0.use_pre_allocated_outputs is True


def test_standalone_engine_alternates_per_call(tmp_path):
    from torch_tensorrt.dynamo.runtime import PythonTorchTensorRTModule as P
    eng = P(torch.nn.Linear(8, 8), "solo")
    with trtprof.profile(out=tmp_path / "c", prealloc="alternate:3") as cap:
        for _ in range(6):
            eng(torch.randn(2, 8))
    calls = cap.timeline[cap.timeline.event == "call"].sort_values("call")
    assert list(calls.prealloc) == [False] * 3 + [True] * 3


@pytest.mark.parametrize("bad", ["sometimes", "alternate:0", "alternate:x", "on:3"])
def test_bad_specs(bad):
    with pytest.raises(ValueError):
        Policy.parse(bad)


def test_cli_rejects_bad_spec(tmp_path, fake_env):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "trtprof", "capture", "--prealloc", "alternate:0", "x.py"],
                       cwd=tmp_path, env=fake_env, capture_output=True, text=True)
    assert r.returncode == 2 and "positive whole number" in r.stderr and "Traceback" not in r.stderr
