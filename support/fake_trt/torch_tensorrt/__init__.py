"""A CPU stand-in for torch_tensorrt, for CI only (no GPU, no TensorRT there).

It plays Torch-TensorRT 2.11, 2.12, 2.13 and 2.14 (`_fake.py` says what differs and which source
each follows): the runtime classes with the interface and call structure of each version,
`tensorrt::execute_engine` registered as a real torch custom op (`_ops.py`), the Python
`TRTEngine` of 2.13+ PYTHON_ONLY builds, and `save` / `load` through `torch.export` (`_compile.py`;
not torch_tensorrt's own `inline_trt_modules` exporter, which the GPU test runs), computing with
plain torch ops. The same trtprof code paths run against
the real runtime on the GPU machine (tests marked gpu).
"""
from types import SimpleNamespace

__version__ = "2.11.0+fake"
ENABLED_FEATURES = SimpleNamespace(torch_tensorrt_runtime=True, tensorrt_rtx=False)

from torch_tensorrt import _ops, runtime  # noqa: E402,F401
from torch_tensorrt import dynamo  # noqa: E402,F401
from torch_tensorrt.dynamo import runtime as _rt  # noqa: E402,F401
from torch_tensorrt import _fake  # noqa: E402
from torch_tensorrt._compile import load, save  # noqa: E402,F401

_fake.from_environment()
