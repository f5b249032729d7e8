"""Stand-in for the Python `TRTEngine` of a 2.13+ PYTHON_ONLY build.

Follows v2.13.0 `py/torch_tensorrt/dynamo/runtime/_TRTEngine.py` (main's differs where noted):
the context is created lazily by the `context` property through `_create_execution_context()`;
`execute` -> `_execute_standard`: `validate_input_shapes`, `runtime_states.set_runtime_states`
(reuse pre-allocated outputs only if the previous call had the mode on and shapes did not change),
`create_output_tensors()` before the enqueue unless reused, `context.execute_async_v3(
self._engine_stream.cuda_stream)`, then new `pre_allocated_outputs` when the mode is on and the
outputs are unowned, none exist yet, or the shapes changed; `_execute_output_allocator` when
`requires_output_allocator` or `use_output_allocator_outputs`. main (2.14) turns pre-allocation
off for engines with aliased I/O (none here).
"""
from typing import List, Optional

import torch

from torch_tensorrt._ops import EngineBase
from torch_tensorrt.dynamo.runtime._io import Context, DynamicOutputAllocator, from_allocator


class TorchTRTRuntimeStates:
    def __init__(self):
        self.old_pre_allocated_outputs = False

    def set_runtime_states(self, new_pre_allocated_output, shape_changed):
        can_use = self.old_pre_allocated_outputs and new_pre_allocated_output and not shape_changed
        self.old_pre_allocated_outputs = new_pre_allocated_output
        return False, can_use, False


class TRTEngine(EngineBase):
    def __init__(self, fn, name=""):
        self.fn, self.name = fn, name
        self.use_pre_allocated_outputs = False
        self.use_output_allocator_outputs = False
        self.output_tensors_are_unowned = False
        self.requires_output_allocator = False
        self.output_allocator: Optional[DynamicOutputAllocator] = None
        self.pre_allocated_outputs: List[torch.Tensor] = []
        self._engine_stream = None
        self.shape_key = None
        self.output_shapes = []
        self.out_binding_names = ["out0"]
        self.output_dtypes = [torch.float32]
        self.runtime_states = TorchTRTRuntimeStates()
        self._context = None
        self._num_execution_contexts_created = 0

    def __str__(self):
        return f"TRTEngine(name={self.name}, device=cpu)"

    @property
    def context(self):
        if self._context is None:
            self._context = self._create_execution_context()
        return self._context

    def _create_execution_context(self):
        self._num_execution_contexts_created += 1
        return Context(self.fn)

    def set_output_tensors_as_unowned(self, enabled):
        self.output_tensors_are_unowned = enabled

    def are_output_tensors_unowned(self):
        return self.output_tensors_are_unowned

    def validate_input_shapes(self, inputs):
        key = "".join(str(tuple(t.shape)).replace(" ", "") for t in inputs)
        if key != self.shape_key:
            self.shape_key = key
            return True
        return False

    def create_output_tensors(self):
        return [torch.empty(self.output_shapes[i], dtype=self.output_dtypes[i])
                for i, _ in enumerate(self.out_binding_names)]

    def _execute_standard(self, inputs):
        shape_changed = self.validate_input_shapes(inputs)
        _, can_use, _ = self.runtime_states.set_runtime_states(self.use_pre_allocated_outputs, shape_changed)
        for i, t in enumerate(inputs):
            self.context.set_tensor_address(f"in{i}", t)
        if can_use:
            outputs = self.pre_allocated_outputs
        else:
            self.output_shapes = [tuple(self.context.get_tensor_shape(n)) for n in self.out_binding_names]
            outputs = self.create_output_tensors()
        for o, name in enumerate(self.out_binding_names):
            self.context.set_tensor_address(name, outputs[o])
        self.context.execute_async_v3(0)
        if self.use_pre_allocated_outputs and (
            self.output_tensors_are_unowned or not self.pre_allocated_outputs or shape_changed
        ):
            self.pre_allocated_outputs = self.create_output_tensors()
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _execute_output_allocator(self, inputs):
        for i, t in enumerate(inputs):
            self.context.set_tensor_address(f"in{i}", t)
        if self.output_allocator is None:
            self.output_allocator = DynamicOutputAllocator(dict(zip(self.out_binding_names, self.output_dtypes)))
        for name in self.out_binding_names:
            self.context.set_output_allocator(name, self.output_allocator)
        self.context.execute_async_v3(0)
        outs = from_allocator(self.output_allocator, self.out_binding_names, self.output_dtypes)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def execute(self, inputs):
        contiguous = [t.contiguous() for t in inputs]
        if self.requires_output_allocator or self.use_output_allocator_outputs:
            return self._execute_output_allocator(contiguous)
        return self._execute_standard(contiguous)
