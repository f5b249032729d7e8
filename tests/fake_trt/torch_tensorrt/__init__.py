"""A CPU stand-in for torch_tensorrt, for CI only (no GPU, no TensorRT there).

It has the two runtime classes with the interface and call structure of Torch-TensorRT 2.11's
(`forward` -> `create_output_tensors` / `context.execute_async_v3(engine_stream)`, pre-allocation
after the enqueue, `engine.use_pre_allocated_outputs` for the C++ runtime), computing with plain torch
ops. The same trtprof code paths run against the real runtime on the GPU machine (tests marked gpu).
"""
__version__ = "0.0.0+fake"
from torch_tensorrt import runtime  # noqa: E402,F401
