"""`CudaGraphsTorchTensorRTModule`, following v2.11.0
`py/torch_tensorrt/dynamo/runtime/_CudaGraphsTorchTensorRTModule.py`.

The call structure trtprof sees is the real one: `__init__` runs `warm_up()` (three calls of the
wrapped module on a side stream, with inputs made from `self.inputs`); `forward` in whole-graph mode
copies the inputs into static buffers, captures `compiled_module(*args)` into a new
`torch.cuda.CUDAGraph` on the first call and after an input-shape change (`validate_input_shapes`,
the same shape key), then replays it on every call, the inner `forward`s running only during the
capture; outside whole-graph mode it resets the graph and calls the module. `torch.cuda.graph(...)`
is written out as what it calls: `capture_begin()` / `capture_end()` on the graph.

What differs, because a CPU has no CUDA graph: `torch.cuda.CUDAGraph` is the tests' double
(support/gpu_doubles.py). Engine work is recorded by it during the capture and re-run by `replay()`
(the stand-in's TensorRT context enqueues into it); torch ops of fallback subgraphs run once, at the
capture, and are not replayed, so replayed outputs keep the fallbacks' values of the capture. No
trtprof test reads those values. Warm-up inputs are random tensors of `self.inputs`' shapes (the
real one builds them from `torch_tensorrt.Input` specs).
"""
from typing import List, Optional

import torch


class CudaGraphsTorchTensorRTModule(torch.nn.Module):
    def __init__(self, compiled_module: torch.nn.Module, warm_up_shape=(2, 8)):
        super().__init__()
        self.compiled_module = compiled_module
        self.inputs = [warm_up_shape]
        self.is_weight_streaming_set = False
        self._input_buffers: List[torch.Tensor] = []
        self._output_buffers = []
        self.cudagraph: Optional[object] = None
        self.shape_key: Optional[str] = None
        self.warm_up()

    def warm_up(self) -> None:
        args = [torch.randn(s) for s in self.inputs]
        for _ in range(3):
            self.compiled_module(*args)

    def validate_input_shapes(self, inputs) -> bool:
        new_shape_key = "".join(str(tuple(t.shape)).replace(" ", "") for t in inputs)
        if new_shape_key != self.shape_key:
            self.shape_key = new_shape_key
            return True
        return False

    def _reset_captured_graph(self) -> None:
        if self.cudagraph:
            self.cudagraph.reset()
            self.cudagraph = None

    def forward(self, *args):
        from torch_tensorrt.runtime import _cudagraphs

        inputs = list(args)
        if _cudagraphs.get_whole_cudagraphs_mode():
            need_cudagraphs_record = self.validate_input_shapes(inputs) or self.is_weight_streaming_set
            if need_cudagraphs_record:
                self._reset_captured_graph()
                self._input_buffers = [None] * len(inputs)
            self.is_weight_streaming_set = False
            for i, t in enumerate(inputs):
                if need_cudagraphs_record:
                    self._input_buffers[i] = t.contiguous().clone()
                else:
                    self._input_buffers[i].copy_(t)
            if need_cudagraphs_record:
                self.cudagraph = torch.cuda.CUDAGraph()
                self.cudagraph.capture_begin()  # torch.cuda.graph(self.cudagraph, stream=...)
                try:
                    self._output_buffers = self.compiled_module(*self._input_buffers)
                finally:
                    self.cudagraph.capture_end()
            self.cudagraph.replay()
            outs = self._output_buffers if isinstance(self._output_buffers, (list, tuple)) else [self._output_buffers]
            outputs = [o.clone() for o in outs]
            return outputs[0] if len(outputs) == 1 else outputs
        self._reset_captured_graph()
        return self.compiled_module(*args)
