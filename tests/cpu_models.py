"""Compiled-model look-alikes built from the CPU stand-in runtime classes and real torch.fx graphs.

Same structure as what Torch-TensorRT returns: a GraphModule whose children are `_run_on_acc_N`
runtime modules and `_run_on_gpu_N` fallback GraphModules.
"""
import torch
import torch.fx


class _Sigmoid(torch.nn.Module):
    def forward(self, x):
        return torch.sigmoid(x)


def partitioned(runtime: str = "python", width: int = 8) -> torch.fx.GraphModule:
    """acc_0 (Linear) -> gpu_1 (sigmoid, a fallback) -> acc_2 (Linear), like smoke.py's TwoEngines."""
    from torch_tensorrt.dynamo.runtime import PythonTorchTensorRTModule, TorchTensorRTModule

    cls = PythonTorchTensorRTModule if runtime == "python" else TorchTensorRTModule
    torch.manual_seed(0)
    mods = {
        "_run_on_acc_0": cls(torch.nn.Linear(width, width), "_run_on_acc_0"),
        "_run_on_gpu_1": torch.fx.symbolic_trace(_Sigmoid()),
        "_run_on_acc_2": cls(torch.nn.Linear(width, width), "_run_on_acc_2"),
    }
    g = torch.fx.Graph()
    x = g.placeholder("x")
    a = g.call_module("_run_on_acc_0", (x,))
    b = g.call_module("_run_on_gpu_1", (a,))
    c = g.call_module("_run_on_acc_2", (b,))
    g.output(c)
    gm = torch.fx.GraphModule(mods, g)
    if runtime == "python":  # as Torch-TensorRT marks engines whose outputs leave the graph
        gm._run_on_acc_2.output_tensors_are_unowned = True
    return gm


def prealloc_scenario(model) -> None:
    """The canonical five calls: two normal, then pre-allocation on for two calls and a shape change."""
    import torch_tensorrt

    x = torch.randn(2, 8)
    model(x)
    model(x)
    with torch_tensorrt.runtime.enable_pre_allocated_outputs(model):
        model(x)
        model(x)
        model(torch.randn(3, 8))
