"""`torch_tensorrt.runtime._cudagraphs`, following v2.11.0 `py/torch_tensorrt/runtime/_cudagraphs.py`.

Same names, same module global and the same decisions: `_PY_RT_CUDAGRAPHS` holds the mode (0
STANDARD, 1 SUBGRAPH_CUDAGRAPHS, 2 WHOLE_GRAPH_CUDAGRAPHS); `set_cudagraphs_mode(bool)` sets it (and,
with the C++ runtime, `torch.ops.tensorrt.set_cudagraphs_mode`, which the stand-in's C++ engine reads
from here instead); `enable_cudagraphs(module)` wraps a module with `_run_on_gpu` children in
`CudaGraphsTorchTensorRTModule` (whole-graph mode, warmed up at construction) and otherwise switches
the engines to per-engine mode, raising for engines that need the output allocator; leaving the
context manager restores the old mode (v2.11.0 calls `set_cudagraphs_mode(self.old_mode)`).
"""
from typing import Any, Optional

import torch

from torch_tensorrt.dynamo.runtime._CudaGraphsTorchTensorRTModule import CudaGraphsTorchTensorRTModule


class CudaGraphsMode:
    STANDARD = 0
    SUBGRAPH_CUDAGRAPHS = 1
    WHOLE_GRAPH_CUDAGRAPHS = 2


_PY_RT_CUDAGRAPHS = CudaGraphsMode.STANDARD


def set_cudagraphs_mode(mode: bool) -> None:
    global _PY_RT_CUDAGRAPHS
    _PY_RT_CUDAGRAPHS = CudaGraphsMode.SUBGRAPH_CUDAGRAPHS if mode else CudaGraphsMode.STANDARD


def get_whole_cudagraphs_mode() -> bool:
    return _PY_RT_CUDAGRAPHS == CudaGraphsMode.WHOLE_GRAPH_CUDAGRAPHS


def get_cudagraphs_mode() -> bool:
    return _PY_RT_CUDAGRAPHS == CudaGraphsMode.SUBGRAPH_CUDAGRAPHS


class _CudagraphsContextManager:
    def __init__(self, compiled_module: torch.nn.Module) -> None:
        self.old_mode = _PY_RT_CUDAGRAPHS
        self.compiled_module = compiled_module
        self.cudagraphs_module: Optional[CudaGraphsTorchTensorRTModule] = None

    def __enter__(self) -> torch.nn.Module:
        return get_cuda_graph_module(self.compiled_module)

    def __exit__(self, *args: Any) -> None:
        set_cudagraphs_mode(self.old_mode)  # v2.11.0: a bool, so 2 comes back as 1 (fixed in 2.13)
        if self.cudagraphs_module:
            self.cudagraphs_module._reset_captured_graph()


def get_cuda_graph_module(compiled_module: torch.fx.GraphModule) -> torch.nn.Module:
    global _PY_RT_CUDAGRAPHS
    num_torch_module = 0
    for name, module in compiled_module.named_children():
        if getattr(module, "requires_output_allocator", False):
            raise RuntimeError("The model contains submodules that require a dynamic output allocator at "
                               "runtime, which is incompatible with CUDA Graphs. Please disable CUDA Graphs.")
        if "_run_on_gpu" in name:
            num_torch_module += 1
    if num_torch_module > 0:
        _PY_RT_CUDAGRAPHS = CudaGraphsMode.WHOLE_GRAPH_CUDAGRAPHS
        return CudaGraphsTorchTensorRTModule(compiled_module)
    set_cudagraphs_mode(True)
    return compiled_module


def enable_cudagraphs(compiled_module: torch.nn.Module) -> _CudagraphsContextManager:
    return _CudagraphsContextManager(compiled_module)
