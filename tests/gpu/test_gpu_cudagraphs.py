"""On the GPU machine: captures under both CUDA-graph modes of real Torch-TensorRT 2.11.

The issue's run (10 plain inferences, 30 under `enable_cudagraphs`, 5 plain) through `trtprof
capture`, on a two-engine model with a graph break (whole-graph mode: `CudaGraphsTorchTensorRTModule`,
3 warm-ups, one capture, 29 replays) and on a single-engine one (per-engine mode), both runtimes.
Every row must be there, complete, with the CUDA-graph phase marked; a replay's kernels (CUPTI,
where cupti-python is installed) are attributed to its inference row. Also: a capture begun below
torch.cuda.CUDAGraph's Python methods, which the counter cannot see, is found by asking CUDA.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import trtprof

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=[(rt, kind) for kind in ("two", "single") for rt in ("python", "cpp")],
                ids=lambda p: f"{p[1]}-{p[0]}")
def captured(request, tmp_path_factory):
    runtime, kind = request.param
    tmp = tmp_path_factory.mktemp(f"{kind}-{runtime}")
    res = tmp / "result.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "trtprof", "capture", "-o", str(tmp / "cap"),
                           str(ROOT / "support/gpu/cudagraphs_workload.py"), runtime, kind, str(res)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return runtime, kind, trtprof.load_capture(tmp / "cap"), json.loads(res.read_text())


def _values(s):
    return s.astype(object).where(s.notna(), None).tolist()


def test_every_row_is_there(captured):
    runtime, kind, cap, ran = captured
    df = cap.timeline
    assert cap.meta["status"] == "complete", cap.meta.get("incomplete_reason")
    inf = df[df.event == "inference"].sort_values("inference")
    if kind == "two":
        assert ran["wrapper"] == "CudaGraphsTorchTensorRTModule" and ran["mode"] == 2
        assert list(inf.inference) == list(range(48))  # 10 + 3 warm-ups + 30 + 5
        assert _values(inf.cudagraph) == [None] * 10 + ["warmup"] * 3 + ["capture"] + ["replay"] * 29 + [None] * 5
        inner = df[(df.inference == 13) & (df.event != "inference")]
        assert len(inner) and (inner.cudagraph == "capture").all() and inner.gpu_start_ns.isna().all()
        assert set(df[df.inference.between(14, 42)].event) == {"inference"}
        said = [n for n in cap.meta["notes"] if "whole-graph CUDA-graph replay" in n]
        assert len(said) == 1 and said[0].startswith("29 ") and "no per-subgraph rows" in said[0]
    else:
        assert ran["wrapper"] != "CudaGraphsTorchTensorRTModule" and ran["mode"] == 1
        assert list(inf.inference) == list(range(45))
        calls = df[df.event == "call"].sort_values("call")
        assert _values(calls.cudagraph) == [None] * 10 + ["per-engine"] * 30 + [None] * 5
        assert calls.exclude.fillna(False).tolist() == [False] * 10 + [True] + [False] * 34
        ex = df[df.event == "exec"]
        assert len(ex) == 45 and ex.gpu_end_ns.notna().all()  # Python runtime: the replay is the exec
    timed = inf[inf.cudagraph.fillna("") != "capture"]
    assert timed.gpu_start_ns.notna().all() and (timed.gpu_start_ns < timed.gpu_end_ns).all()


def test_replay_kernels_are_attributed(captured):
    runtime, kind, cap, _ = captured
    if not cap.meta.get("kernels", {}).get("recorded"):
        pytest.skip("no kernel activity in this capture (cupti-python missing or CUPTI taken)")
    df = cap.timeline
    rows = df[df.event == "inference"]
    rows = rows[rows.cudagraph.fillna("") == ("replay" if kind == "two" else "per-engine")]
    print(kind, runtime, "kernels:", {k: cap.meta["kernels"].get(k) for k in ("launch_times", "attributed")})
    assert len(rows) >= 29 and (rows.kernel_count >= 1).all() and (rows.kernel_busy_ns > 0).all()


def test_a_capture_the_counter_cannot_see():
    """Begun through torch._C._CUDAGraph.capture_begin (below the wrapped Python method): no anchor,
    no event on the capturing stream, nothing raised; recording works again once it ended."""
    import inspect

    import torch
    from trtprof.capture.events import NOT_RECORDED, Captures, GpuClock

    clock = GpuClock(torch)
    g, s = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    x = torch.ones(16, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        # the C++ binding takes the Python method's arguments without its defaults (torch 2.11: pool,
        # capture_error_mode): pass the wrapper's own defaults, whatever this torch's set is
        params = inspect.signature(torch.cuda.CUDAGraph.capture_begin).parameters
        torch._C._CUDAGraph.capture_begin(g, **{n: p.default for n, p in params.items() if n != "self"})
        try:
            assert Captures.depth == 0 and clock.capturing
            assert clock.record() is NOT_RECORDED and not clock.anchored
            x.mul_(2)
        finally:
            torch._C._CUDAGraph.capture_end(g)
    ev = clock.record()
    assert ev is not NOT_RECORDED and clock.anchored
    g.replay()
    torch.cuda.synchronize()
    assert clock.host_ns(ev) > 0 and x[0].item() == 2.0
