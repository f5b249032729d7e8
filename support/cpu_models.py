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
    """acc_0 (Linear) -> gpu_1 (sigmoid, a fallback) -> acc_2 (Linear), like smoke.py's TwoEngines.
    runtime "python": the Python runtime module where the played version has one (2.11, 2.12),
    else a TorchTensorRTModule running a Python TRTEngine (a 2.13+ PYTHON_ONLY build)."""
    import torch_tensorrt.dynamo.runtime as rt

    if runtime == "python" and hasattr(rt, "PythonTorchTensorRTModule"):
        def cls(fn, name):
            return rt.PythonTorchTensorRTModule(fn, name)
    else:
        def cls(fn, name):
            return rt.TorchTensorRTModule(fn, name, python_engine=runtime == "python")
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
        last = gm._run_on_acc_2
        if hasattr(last, "engine"):
            last.set_output_tensors_as_unowned(True)
        else:
            last.output_tensors_are_unowned = True
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


def assert_boundaries_shared(inf) -> None:
    """One inference of an acc_0 -> gpu_1 -> acc_2 graph captured at the full level on the caller
    stream (C++ runtime): one event at each boundary, so a range starts when the previous one ended
    on the GPU, or when the host called it if the GPU was waiting for the host by then; the
    inference's GPU span is its first subgraph's start to its last one's end."""
    a0 = inf[(inf.subgraph == "_run_on_acc_0") & (inf.event == "exec")].iloc[0]
    g1 = inf[inf.event == "fallback"].iloc[0]
    a2 = inf[(inf.subgraph == "_run_on_acc_2") & (inf.event == "exec")].iloc[0]
    top = inf[inf.event == "inference"].iloc[0]
    assert g1.gpu_start_ns == max(a0.gpu_end_ns, g1.host_start_ns)
    assert a2.gpu_start_ns == max(g1.gpu_end_ns, a2.host_start_ns)
    assert a0.gpu_start_ns < a0.gpu_end_ns and g1.gpu_start_ns < g1.gpu_end_ns and a2.gpu_start_ns < a2.gpu_end_ns
    assert (top.gpu_start_ns, top.gpu_end_ns) == (a0.gpu_start_ns, a2.gpu_end_ns)
