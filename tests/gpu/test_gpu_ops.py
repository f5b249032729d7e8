"""On the GPU machine: a saved and loaded program is captured with the rows of the live module.

`torch_tensorrt.save` (dynamic batch) then `torch_tensorrt.load(...).module()` gives a graph that calls
`tensorrt::execute_engine` from its nodes (no runtime module); trtprof captures it at the op. The same
schedule (support/gpu/two_engines.py: batch changes, pre-allocation flips) runs on the live module and on
the loaded graph, each under `trtprof capture`, and the engine, allocation and fallback rows must match.
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
SAME = ["inference", "subgraph", "subgraph_kind", "event", "call", "input_shapes", "prealloc", "alloc_phase",
        "outputs", "shape_changed", "reallocated"]


def _capture(tmp_path, mode):
    sched = tmp_path / f"{mode}.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "trtprof", "capture", "-o", str(tmp_path / mode),
                           str(ROOT / "support/gpu/two_engines.py"), "cpp", str(sched), mode],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return trtprof.load_capture(tmp_path / mode), json.loads(sched.read_text())


def _rows(df):
    d = df[df.event.isin(["call", "exec", "alloc", "fallback"])][SAME].astype(str)
    return sorted(map(tuple, d.values.tolist()))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    return _capture(tmp, "live"), _capture(tmp, "loaded")


def test_loaded_program_has_the_live_module_rows(both):
    """Same rows, but for one thing the runtime really does differently: the compiler marks the final
    engine's outputs unowned (new buffers after every enqueue), the saved engine does not keep that
    flag, so the loaded graph's final engine reuses its one pre-allocated buffer and allocates nothing
    in a steady pre-allocated call (v2.11.0 `execute_engine.cpp`; measured on the H200). Those
    after-enqueue rows are live only, and the loaded capture says why."""
    (live, ls), (loaded, ds) = both
    assert ls["schedule"] == ds["schedule"] and ds["mode"] == "loaded"
    assert "op" in loaded.meta["capture_path"], loaded.meta["capture_path"]
    a, b = _rows(live.timeline), _rows(loaded.timeline)
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    assert not extra, f"loaded only: {extra[:8]}"
    df = live.timeline
    calls = df[(df.event == "call") & (df.subgraph == "_run_on_acc_2")].sort_values("call")
    prev_pre = calls.prealloc.shift(fill_value=False).astype(bool)
    steady = calls[calls.prealloc.astype(bool) & prev_pre & ~calls.shape_changed.astype(bool)].call
    want = sorted(r for r in a if r[1] == "_run_on_acc_2" and r[3] == "alloc" and r[7] == "after_enqueue"
                  and int(r[4]) in set(steady))
    assert len(steady) >= 2 and missing == want, f"live only: {missing[:8]}\nexpected: {want[:8]}"
    assert any(n.startswith("_run_on_acc_2: a loaded graph returns") for n in loaded.meta["notes"]), \
        loaded.meta["notes"]
    assert not any("owns its output buffers" in n for n in live.meta["notes"])


def test_loaded_program_has_an_inference_row_per_call_with_gpu_times(both):
    _, (loaded, sched) = both
    df = loaded.timeline
    inf = df[df.event == "inference"]
    assert sorted(inf.inference) == list(range(len(sched["schedule"])))
    timed = df[df.event.isin(["exec", "fallback"])]
    assert timed.gpu_start_ns.notna().all() and (timed.gpu_start_ns < timed.gpu_end_ns).all()
    assert set(df[df.event == "fallback"].subgraph) == {"_run_on_gpu_1"}


def test_loaded_program_pre_allocation_follows_the_engine_attribute(both):
    """The mode is read from the TorchBind engine every call: the schedule's flips show in the rows,
    and a shape change with pre-allocation on is two allocation passes (before exec, after enqueue)."""
    from test_gpu_capture import _check_prealloc

    _, (loaded, sched) = both
    _check_prealloc(loaded.timeline, sched["schedule"])
