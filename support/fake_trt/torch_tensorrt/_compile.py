"""`torch_tensorrt.save` / `load` for exported programs, as v2.11.0 `py/torch_tensorrt/_compile.py`
does them for a GraphModule with static shapes and `retrace=True`: `torch.export.export(module,
inputs, strict=False)` (tracing runs each runtime module's `forward`, which records the op with its
engine as a constant), `torch.export.save`; `load` is `torch.export.load`, and `.module()` of what it
returns is the graph a user runs. `dynamic_shapes` stands in for what the real one derives from
`torch_tensorrt.Input(min_shape=..., max_shape=...)`. The dynamic-shape branch (torch_tensorrt's own `inline_trt_modules`
exporter, constants named `<name>_engine`) is not played here; the GPU test runs it for real.
"""
import torch


def save(module, file_path="", *, output_format="exported_program", inputs=None, arg_inputs=None,
         retrace=True, dynamic_shapes=None, **kwargs):
    if output_format != "exported_program":
        raise ValueError("the stand-in saves exported programs only")
    args = tuple(arg_inputs if arg_inputs is not None else inputs)
    ep = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    torch.export.save(ep, file_path)


def load(file_path="", extra_files=None, **kwargs):
    return torch.export.load(file_path)
