"""Which Torch-TensorRT version the CPU stand-in plays, switchable in one process.

Why one package with a switch rather than a package per version: the op `tensorrt::execute_engine`
can be registered once per process, and the CPU tests run every version in one pytest run. What
differs between versions, as far as capture is concerned (read at the tags of pytorch/TensorRT):

- 2.11 (v2.11.0) and 2.12 (v2.12.0): `dynamo/runtime/_PythonTorchTensorRTModule.py` exists (the
  Python runtime runs TensorRT from the module's `forward`); `_TorchTensorRTModule.py` `forward`
  calls `torch.ops.tensorrt.execute_engine(list(input_tensors), self.engine)`.
- 2.13 (v2.13.0): `PythonTorchTensorRTModule` removed (PR #4222); `forward` calls
  `torch.ops.tensorrt.execute_engine(input_tensors, self.engine)`; a PYTHON_ONLY build registers a
  Python `TRTEngine` (`dynamo/runtime/_TRTEngine.py`) under that op.
- 2.14 (main, version.txt 2.14.0a0): as 2.13; `forward` truncates side-effect outputs of aliased
  engines; `_TRTEngine._execute_standard` turns pre-allocation off for aliased engines.

`use(version, python_only)` sets `torch_tensorrt.__version__`, which runtime classes
`torch_tensorrt.dynamo.runtime` exports, and which engine a new `TorchTensorRTModule` gets.
The environment variable TRTPROF_FAKE_TRT (e.g. "2.13" or "2.13-python_only") picks the version
a child process starts with; the default is 2.11, the version the GPU machine runs for real.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

VERSIONS = {"2.11": "2.11.0", "2.12": "2.12.0", "2.13": "2.13.0", "2.14": "2.14.0a0"}  # main: no v2.14.0 tag was read


class State:
    version = "2.11"
    python_only = False

    @property
    def has_python_module(self) -> bool:
        return self.version in ("2.11", "2.12")


STATE = State()


def use(version: str, python_only: bool = False) -> None:
    """Play `version` ("2.11" ... "2.14"); PYTHON_ONLY exists from 2.13."""
    if version not in VERSIONS:
        raise ValueError(f"the stand-in plays {', '.join(VERSIONS)}, not {version}")
    if python_only and version in ("2.11", "2.12"):
        raise ValueError("PYTHON_ONLY with a Python TRTEngine under the op exists from 2.13")
    STATE.version, STATE.python_only = version, python_only
    trt = sys.modules["torch_tensorrt"]
    trt.__version__ = VERSIONS[version] + "+fake"
    trt.ENABLED_FEATURES.torch_tensorrt_runtime = not python_only
    rt = sys.modules["torch_tensorrt.dynamo.runtime"]
    if STATE.has_python_module:
        rt.PythonTorchTensorRTModule = rt._PythonTorchTensorRTModule
    elif hasattr(rt, "PythonTorchTensorRTModule"):
        del rt.PythonTorchTensorRTModule


@contextmanager
def playing(version: str, python_only: bool = False):
    old = (STATE.version, STATE.python_only)
    use(version, python_only)
    try:
        yield STATE
    finally:
        use(*old)


def from_environment() -> None:
    spec = os.environ.get("TRTPROF_FAKE_TRT", "2.11")
    version, _, flag = spec.partition("-")
    use(version, flag == "python_only")
