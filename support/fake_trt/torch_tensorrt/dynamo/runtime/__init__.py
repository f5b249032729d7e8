"""Stand-ins for the runtime module classes of each version (see `torch_tensorrt._fake`).

`_PythonTorchTensorRTModule` follows v2.11.0/v2.12.0 `dynamo/runtime/_PythonTorchTensorRTModule.py`
(`forward` -> `create_output_tensors` / `context.execute_async_v3(engine_stream)`, pre-allocation
after the enqueue, the output-allocator path, per-engine CUDA graphs: static input and output
buffers, the enqueue captured into a `torch.cuda.CUDAGraph` when the mode came on or the shape
changed, a `replay()` on every call); it is exported as `PythonTorchTensorRTModule` only
while 2.11 or 2.12 is played. `TorchTensorRTModule` follows `_TorchTensorRTModule.py` at each tag:
its `forward` calls `torch.ops.tensorrt.execute_engine` with its engine, a `_CppEngine` (plays the
TorchBind `torch.classes.tensorrt.Engine`: the attributes `register_jit_hooks.cpp` exposes, its name
only through `str()`) or, in a 2.13+ PYTHON_ONLY build, the Python `TRTEngine`.
"""
from typing import List

import torch

from torch_tensorrt import _fake
from torch_tensorrt._ops import EngineBase
from torch_tensorrt.dynamo.runtime._io import Context, DynamicOutputAllocator, from_allocator
from torch_tensorrt.dynamo.runtime._TRTEngine import TRTEngine


class _PythonTorchTensorRTModule(torch.nn.Module):
    def __init__(self, fn, name="", requires_output_allocator=False):
        super().__init__()
        self.name = name
        self.context = Context(fn)
        self.use_pre_allocated_outputs = False
        self.pre_allocated_outputs: List[torch.Tensor] = []
        self.shape_key = None
        self.output_shapes = []
        self._engine_stream = None
        self.output_tensors_are_unowned = False
        self._old_prealloc = False
        self.requires_output_allocator = requires_output_allocator
        self.use_output_allocator_outputs = False
        self.output_allocator = None
        from torch_tensorrt.runtime import _cudagraphs

        self._old_cudagraphs = _cudagraphs.get_cudagraphs_mode()  # TorchTRTRuntimeStates(mode at setup)
        self.cudagraph = None
        self._input_buffers: List[torch.Tensor] = []
        self._output_buffers: List[torch.Tensor] = []

    def _reset_captured_graph(self):
        if self.cudagraph:
            self.cudagraph.reset()
            self.cudagraph = None

    def validate_input_shapes(self, inputs):
        key = "".join(str(tuple(t.shape)) for t in inputs)
        changed = key != self.shape_key
        self.shape_key = key
        return changed

    def create_output_tensors(self):
        return [torch.empty(s) for s in self.output_shapes]

    def set_pre_allocated_outputs(self, enable):
        self.use_pre_allocated_outputs = enable

    def set_use_output_allocator(self, enable):
        self.use_output_allocator_outputs = enable

    def forward(self, *inputs):
        if self.requires_output_allocator or self.use_output_allocator_outputs:  # run_output_allocator
            for i, t in enumerate(inputs):
                self.context.set_tensor_address(f"in{i}", t.contiguous())
            if self.output_allocator is None:
                self.output_allocator = DynamicOutputAllocator({"out0": torch.float32})
            self.context.set_output_allocator("out0", self.output_allocator)
            self.context.execute_async_v3(0)
            return from_allocator(self.output_allocator, ["out0"], [torch.float32])[0]
        from torch_tensorrt.runtime import _cudagraphs

        cudagraphs = _cudagraphs.get_cudagraphs_mode()
        shape_changed = self.validate_input_shapes(inputs)
        # as runtime_states.set_runtime_states: record a graph when the mode just came on or the
        # shape changed; reuse outputs only if the previous call had pre-allocation on too
        need_record = cudagraphs and (not self._old_cudagraphs or shape_changed)
        if not cudagraphs or shape_changed:
            self._reset_captured_graph()
        can_use = self._old_prealloc and self.use_pre_allocated_outputs and not shape_changed
        self._old_prealloc, self._old_cudagraphs = self.use_pre_allocated_outputs, cudagraphs
        if need_record:
            self._input_buffers = [t.contiguous().clone() for t in inputs]
        for i, t in enumerate(inputs):
            if cudagraphs:
                if not need_record:
                    self._input_buffers[i].copy_(t)
                self.context.set_tensor_address(f"in{i}", self._input_buffers[i])
            else:
                self.context.set_tensor_address(f"in{i}", t.contiguous())
        if can_use:
            outputs = self.pre_allocated_outputs
        else:
            self.output_shapes = [self.context.get_tensor_shape("out0")]
            outputs = self.create_output_tensors()
        if need_record:
            self._output_buffers = [o.clone() for o in outputs]
        self.context.set_tensor_address("out0", self._output_buffers[0] if cudagraphs else outputs[0])
        if cudagraphs:  # per-engine CUDA graphs: the enqueue only while capturing, then a replay
            if need_record:
                self.cudagraph = torch.cuda.CUDAGraph()
                self.cudagraph.capture_begin()  # torch.cuda.graph(self.cudagraph, stream=engine stream)
                try:
                    self.context.execute_async_v3(0)
                finally:
                    self.cudagraph.capture_end()
            self.cudagraph.replay()
        else:
            self.context.execute_async_v3(0)
        # as in 2.11: re-create for the next call when outputs leave the graph (unowned), or none yet,
        # or the shape changed; intermediate engines reuse the same buffers
        if self.use_pre_allocated_outputs and (
            self.output_tensors_are_unowned or not self.pre_allocated_outputs or shape_changed
        ):
            self.pre_allocated_outputs = self.create_output_tensors()
        if cudagraphs:
            outputs[0].copy_(self._output_buffers[0])
        return outputs[0]


PythonTorchTensorRTModule = _PythonTorchTensorRTModule


class _CppEngine(EngineBase):
    """Plays the TorchBind engine: the allocation and enqueue happen inside the op, unseen."""

    def __init__(self, fn, name):
        self.fn, self._name = fn, name
        self.use_pre_allocated_outputs = False
        self.use_output_allocator_outputs = False
        self.requires_output_allocator = False  # not exposed by TorchBind: only in the serialized info
        self.unowned = False
        if _fake.STATE.version in ("2.13", "2.14"):
            self.pre_allocated_outputs = []  # def_readwrite from v2.13.0

    def __str__(self):  # TRTEngine::to_str
        return f"Torch-TensorRT TensorRT Engine:\n  Name: {self._name}\n  Inputs: [\n  ]\n"

    def __getstate__(self):  # def_pickle: the serialized info list; REQUIRES_OUTPUT_ALLOCATOR_IDX = 9
        info = [""] * 11
        info[1], info[9] = self._name, str(int(self.requires_output_allocator))
        return (info, self.fn)  # the stand-in's "serialized engine" is its torch function

    def __setstate__(self, state):
        info, fn = state
        self.__init__(fn, info[1])
        self.requires_output_allocator = bool(int(info[9]))

    def set_output_tensors_as_unowned(self, enable):
        self.unowned = enable

    def are_output_tensors_unowned(self):
        return self.unowned

    def execute(self, inputs):
        return [self.fn(*inputs)]


class TorchTensorRTModule(torch.nn.Module):
    def __init__(self, fn, name="", requires_output_allocator=False, python_engine=None):
        super().__init__()
        self.name = name
        self.fn = fn
        self.requires_output_allocator = requires_output_allocator
        self.input_binding_names = ["in0"]
        self.output_binding_names = ["out0"]
        python = _fake.STATE.python_only if python_engine is None else python_engine
        self.engine = TRTEngine(fn, name) if python else _CppEngine(fn, name)
        self.engine.requires_output_allocator = requires_output_allocator

    def set_pre_allocated_outputs(self, enable):
        self.engine.use_pre_allocated_outputs = enable

    def set_use_output_allocator(self, enable):
        self.engine.use_output_allocator_outputs = enable

    def set_output_tensors_as_unowned(self, enabled):
        self.engine.set_output_tensors_as_unowned(enabled)

    def forward(self, *inputs):
        input_tensors = [i if isinstance(i, torch.Tensor) else torch.tensor(i) for i in inputs]
        if _fake.STATE.version in ("2.11", "2.12"):
            outputs = torch.ops.tensorrt.execute_engine(list(input_tensors), self.engine)
        else:  # v2.13.0 and main pass the list as it is
            outputs = torch.ops.tensorrt.execute_engine(input_tensors, self.engine)
        if len(outputs) == 1:
            return outputs[0]
        return tuple(outputs)
