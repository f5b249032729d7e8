"""GPU test workload for a folder of ranks: each rank compiles its own small engine on
cuda:(LOCAL_RANK mod GPUs), then the ranks run N inferences, meeting at a gloo barrier after each.

Usage (under torchrun, through trtprof capture): ranks_job.py N {python|cpp}
"""
import os
import sys

import torch
import torch.distributed as dist
import torch_tensorrt

n, runtime = int(sys.argv[1]), sys.argv[2]
device = int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count()
torch.cuda.set_device(device)
model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256)).eval().cuda().half()
x = torch.randn(8, 256, device="cuda", dtype=torch.half)
trt = torch_tensorrt.compile(model, ir="dynamo", inputs=[x], min_block_size=1, use_python_runtime=runtime == "python")
dist.init_process_group("gloo")
dist.barrier()
with torch.no_grad():
    for _ in range(n):
        trt(x)
        torch.cuda.synchronize()
        dist.barrier()
dist.destroy_process_group()
