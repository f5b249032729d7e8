"""Torch-TensorRT's two CUDA-graph modes, as the rows name them (the `cudagraph` column).

Why rows need it: a call under CUDA graphs is a different thing to time. In whole-graph mode
(`torch_tensorrt.runtime.enable_cudagraphs` on a module with fallback subgraphs) the module is
wrapped in `CudaGraphsTorchTensorRTModule`: three warm-up calls of the inner module at construction,
then a call that captures the inner module into a `torch.cuda.CUDAGraph` (the inner `forward`s run
only then, on a capturing stream: host times only) and replays it, then replays alone, where no inner
`forward` runs at all. In per-engine mode (no fallbacks, or `set_cudagraphs_mode(True)`) each engine
captures its own enqueue the first time and after a shape change, and replays it through static
input and output buffers (copies on every call). Warm-up and capture calls are not steady-state
inferences: their rows are marked and left out of statistics.

How the mode is read, not assumed: v2.11-v2.14 keep it in the module global
`torch_tensorrt.runtime._cudagraphs._PY_RT_CUDAGRAPHS` (0 standard, 1 per-engine, 2 whole-graph),
which both runtimes follow (`set_cudagraphs_mode` sets the C++ runtime's copy too); one attribute
read per call. The phase of whole-graph calls is set by trtprof's hooks on the wrapper
(`cudagraph_hooks.py`) on the calling thread.
"""
from __future__ import annotations

import importlib

MODE_MODULE = "torch_tensorrt.runtime._cudagraphs"
WRAPPER_MODULE = "torch_tensorrt.dynamo.runtime._CudaGraphsTorchTensorRTModule"
WRAPPER_CLASS = "CudaGraphsTorchTensorRTModule"
PER_ENGINE_MODE, WHOLE_GRAPH_MODE = 1, 2  # CudaGraphsMode.SUBGRAPH_CUDAGRAPHS, WHOLE_GRAPH_CUDAGRAPHS

WARMUP, CAPTURE, REPLAY, PER_ENGINE = "warmup", "capture", "replay", "per-engine"
NOT_TIMED = (WARMUP, CAPTURE)  # left out of statistics
NOTES = {
    WARMUP: "whole-graph CUDA graphs: a warm-up call before the capture, left out of statistics",
    CAPTURE: "CUDA graphs: this call captured the graph (and replayed it once), left out of statistics",
}


def find_modes():
    """The module holding the runtime's CUDA-graph mode, or None when this Torch-TensorRT has none."""
    try:
        mod = importlib.import_module(MODE_MODULE)
    except Exception:  # noqa: BLE001 - no such module in this version, or a broken install
        return None
    return mod if hasattr(mod, "_PY_RT_CUDAGRAPHS") else None


def find_wrapper():
    """The whole-graph wrapper class, or None."""
    try:
        mod = importlib.import_module(WRAPPER_MODULE)
    except Exception:  # noqa: BLE001
        return None
    return getattr(mod, WRAPPER_CLASS, None)


class Phases:
    """How many threads are inside a whole-graph wrapper's call or warm-up (process-wide), so that
    outside them `current` costs no thread-local read (one class-attribute read instead)."""

    active = 0


def current(ins) -> str | None:
    """The `cudagraph` value for a range starting now on this thread: the whole-graph phase the
    wrapper hooks set, else per-engine when the runtime's mode says so, else None. Hot path: every
    engine call and range asks (bench/bench_cudagraph_mark.py times it)."""
    if Phases.active:
        phase = ins.stacks.cg_phase
        if phase is not None:
            return phase
    m = ins.cg_modes
    return PER_ENGINE if m is not None and m._PY_RT_CUDAGRAPHS == PER_ENGINE_MODE else None


def whole_graph(ins) -> bool:
    m = ins.cg_modes
    return m is not None and m._PY_RT_CUDAGRAPHS == WHOLE_GRAPH_MODE
