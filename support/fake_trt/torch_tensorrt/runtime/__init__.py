"""`torch_tensorrt.runtime`: the context managers that set engine modes on `_run_on_acc` children,
and the CUDA-graph API of v2.11.0 `runtime/__init__.py` (from `_cudagraphs.py`)."""
from torch_tensorrt.runtime._cudagraphs import (  # noqa: F401
    enable_cudagraphs,
    get_cudagraphs_mode,
    get_whole_cudagraphs_mode,
    set_cudagraphs_mode,
)

class _PreAllocated:
    def __init__(self, module):
        self.mods = [m for n, m in module.named_children() if "_run_on_acc" in n]

    def set_pre_allocated_output(self, enable):
        for m in self.mods:
            m.set_pre_allocated_outputs(enable)

    def __enter__(self):
        self.set_pre_allocated_output(True)
        return self

    def __exit__(self, *a):
        self.set_pre_allocated_output(False)


def enable_pre_allocated_outputs(module):
    return _PreAllocated(module)


class _OutputAllocator(_PreAllocated):
    """As `torch_tensorrt.runtime.enable_output_allocator` (v2.11.0 `runtime/_output_allocator.py`)."""

    def set_pre_allocated_output(self, enable):
        for m in self.mods:
            m.set_use_output_allocator(enable)


def enable_output_allocator(module):
    return _OutputAllocator(module)
