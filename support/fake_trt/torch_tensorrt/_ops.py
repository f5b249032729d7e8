"""`tensorrt::execute_engine` as a real torch op, as both runtimes register it.

C++ runtime (`core/runtime/register_jit_hooks.cpp`, every version): `execute_engine(Tensor[]
input_tensors, __torch__.torch.classes.tensorrt.Engine engine) -> Tensor[]` with a TorchBind
engine. PYTHON_ONLY (`dynamo/runtime/_TRTEngine.py`, v2.13.0 and main): `torch.library.custom_op`
with the Python `TRTEngine` registered as an opaque reference type, calling `engine.execute`.
Here one op serves both: a TorchBind class cannot be made without C++, so the C++ engine's
stand-in is an opaque Python object too (`dynamo/runtime/__init__.py: _CppEngine`), and the op
calls the engine's `execute` either way. What trtprof sees is the same: an OpOverloadPacket on
`torch.ops.tensorrt`, its `.default` OpOverload in graphs, an opaque engine as the second argument.
"""
from typing import List

import torch
from torch._library.opaque_object import register_opaque_type
from torch._opaque_base import OpaqueBase


class EngineBase(OpaqueBase):
    """Base of both engine stand-ins (the op's declared engine type)."""


register_opaque_type(EngineBase, typ="reference")


@torch.library.custom_op("tensorrt::execute_engine", mutates_args=())
def execute_engine(input_tensors: List[torch.Tensor], engine: EngineBase) -> List[torch.Tensor]:
    outputs = engine.execute(input_tensors)
    return [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)


@execute_engine.register_fake
def _execute_engine_fake(input_tensors: List[torch.Tensor], engine: EngineBase) -> List[torch.Tensor]:
    """What FakeTensor propagation and torch.export see (v2.13.0 `_TRTEngine.py` registers one
    from `engine.infer_outputs`); the stand-in's engines keep their first input's shape."""
    return [torch.empty_like(input_tensors[0])]
