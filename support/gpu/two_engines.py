"""GPU test workload: two engines around a forced graph break, dynamic batch, a fixed call schedule.

Usage: python two_engines.py {python|cpp} SCHEDULE_JSON [live|loaded]
The schedule (written to SCHEDULE_JSON) says, per inference, the batch size and whether pre-allocated
outputs were on, so the test can check every row of the capture against what really happened.
`loaded` (C++ runtime): the compiled module goes through `torch_tensorrt.save` (dynamic batch) and
`torch_tensorrt.load(...).module()`, and the schedule runs on the loaded graph, which calls
`tensorrt::execute_engine` from its nodes with no runtime module; pre-allocation is flipped on the
engines' own `use_pre_allocated_outputs` attribute (the TorchBind engine's), as a deployment would.
"""
import json
import sys
import time

import torch
import torch_tensorrt
from gpu_models import TwoEngines

runtime, out = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "live"
model = TwoEngines().eval().cuda().half()
spec = torch_tensorrt.Input(min_shape=(1, 256), opt_shape=(8, 256), max_shape=(16, 256), dtype=torch.half)
trt = torch_tensorrt.compile(model, ir="dynamo", inputs=[spec], min_block_size=1,
                             use_python_runtime=(runtime == "python"),
                             torch_executed_ops={"torch.ops.aten.sigmoid.default"})
schedule = [(8, False)] * 3 + [(8, True)] * 3 + [(4, True)] * 3 + [(4, False)] * 2 + [(8, False)]
if mode == "loaded":
    import os
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "two_engines.ep")
    batch_dim = torch.export.Dim("batch", min=1, max=16)
    example = torch.randn(8, 256, device="cuda", dtype=torch.half)
    torch_tensorrt.save(trt, path, arg_inputs=[example], dynamic_shapes={"x": {0: batch_dim}})
    trt = torch_tensorrt.load(path).module()
    engines = [getattr(trt, n) for n in dir(trt) if n.endswith("_engine")]
    assert len(engines) == 2, dir(trt)

    class _Engines:  # the same interface as the runtime's context for the schedule loop
        @staticmethod
        def set_pre_allocated_output(on):
            for e in engines:
                e.use_pre_allocated_outputs = on
    ctx = _Engines()
else:
    ctx = torch_tensorrt.runtime.enable_pre_allocated_outputs(trt)
done = []
with torch.no_grad():
    for batch, pre in schedule:
        ctx.set_pre_allocated_output(pre)
        x = torch.randn(batch, 256, device="cuda", dtype=torch.half)
        y = trt(x)
        err = (y.float() - model(x).float()).abs().max().item()
        assert err < 5e-2, err
        done.append({"batch": batch, "prealloc": pre})
        if len(done) == 6:  # over a second without a harvest: the capture harvests the C++ allocator log
            time.sleep(1.2)  # mid-run (and clears it), so attribution across two harvests is tested
torch.cuda.synchronize()
children = [n for n, _ in trt.named_children()]
json.dump({"schedule": done, "children": children, "runtime": runtime, "mode": mode}, open(out, "w"))
print("ran", len(done), "inferences;", children)
