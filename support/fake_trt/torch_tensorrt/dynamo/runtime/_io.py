"""What stands in for TensorRT itself: an execution context and the dynamic output allocator.

`Context` plays IExecutionContext: addresses are tensors, execution is a torch function, and with
an output allocator set it asks it for memory during `execute_async_v3` (as TensorRT calls
`reallocateOutputAsync` / `notify_shape` inside enqueueV3). Enqueued while the tests' CUDA-graph
double (support/gpu_doubles.py) records, the work goes into that graph and runs at its `replay()`, as
kernels launched on a capturing stream do. `DynamicOutputAllocator` follows the
class of that name in v2.11.0 `_PythonTorchTensorRTModule.py` and v2.13.0 `_TRTEngine.py`.
"""
import torch


class Context:
    def __init__(self, fn):
        self.fn = fn
        self.inputs, self.outputs, self.allocators = {}, {}, {}

    def set_tensor_address(self, name, tensor):
        (self.inputs if name.startswith("in") else self.outputs)[name] = tensor

    def set_input_shape(self, name, shape):
        return True

    def infer_shapes(self):
        return []

    def get_tensor_shape(self, name):
        return tuple(self.fn(*self.inputs.values()).shape)

    def set_output_allocator(self, name, allocator):
        self.allocators[name] = allocator
        return True

    def execute_async_v3(self, stream_handle):
        graph = getattr(torch.cuda.CUDAGraph, "recording", None)  # the tests' CUDA-graph double
        if graph is not None:  # enqueued on a capturing stream: recorded into the graph, run at replay
            graph.work.append(lambda: self._run(stream_handle))
            return True
        return self._run(stream_handle)

    def _run(self, stream_handle):
        res = self.fn(*self.inputs.values())
        if self.allocators:  # data-dependent shapes: memory is asked for while enqueuing
            name, alloc = next(iter(self.allocators.items()))
            alloc.reallocate_output_async(name, 0, res.numel() * res.element_size(), 256, stream_handle)
            alloc.notify_shape(name, tuple(res.shape))
            alloc.buffers[name].view(res.dtype)[:res.numel()].copy_(res.reshape(-1))
        else:
            next(iter(self.outputs.values())).copy_(res)
        return True


class DynamicOutputAllocator:
    def __init__(self, output_dtypes):
        self.buffers, self.shapes, self.dtypes = {}, {}, output_dtypes

    def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
        shape = (size,)
        if tensor_name not in self.buffers or self.buffers[tensor_name].shape != shape:
            self.buffers[tensor_name] = torch.empty(shape, dtype=torch.uint8)
        return self.buffers[tensor_name].data_ptr()

    def notify_shape(self, tensor_name, shape):
        self.shapes[tensor_name] = tuple(shape)


def from_allocator(allocator, names, dtypes):
    """The outputs of an output-allocator run: a copy of each buffer, cut to its shape."""
    outs = []
    for name, dt in zip(names, dtypes):
        shape = allocator.shapes[name]
        n = int(torch.tensor(shape).prod()) if shape else 1
        outs.append(allocator.buffers[name].clone().view(dt)[:n].reshape(shape))
    return outs
