"""GPU test workload: two engines around a forced graph break, dynamic batch, a fixed call schedule.

Usage: python two_engines.py {python|cpp} SCHEDULE_JSON
The schedule (written to SCHEDULE_JSON) says, per inference, the batch size and whether pre-allocated
outputs were on, so the test can check every row of the capture against what really happened.
"""
import json
import sys
import time

import torch
import torch_tensorrt


class TwoEngines(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(256, 256)
        self.b = torch.nn.Linear(256, 256)

    def forward(self, x):
        return self.b(torch.sigmoid(torch.relu(self.a(x))))  # sigmoid kept in torch: a graph break


runtime, out = sys.argv[1], sys.argv[2]
model = TwoEngines().eval().cuda().half()
spec = torch_tensorrt.Input(min_shape=(1, 256), opt_shape=(8, 256), max_shape=(16, 256), dtype=torch.half)
trt = torch_tensorrt.compile(model, ir="dynamo", inputs=[spec], min_block_size=1,
                             use_python_runtime=(runtime == "python"),
                             torch_executed_ops={"torch.ops.aten.sigmoid.default"})
schedule = [(8, False)] * 3 + [(8, True)] * 3 + [(4, True)] * 3 + [(4, False)] * 2 + [(8, False)]
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
json.dump({"schedule": done, "children": children, "runtime": runtime}, open(out, "w"))
print("ran", len(done), "inferences;", children)
