"""The small models of the GPU workloads (two_engines.py, cudagraphs_workload.py), in one place so
that both run the same graph break. The workloads are run as scripts: this file sits beside them
on sys.path."""
import torch


class TwoEngines(torch.nn.Module):
    """Two engines around a forced graph break (compile with torch_executed_ops={aten.sigmoid})."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(256, 256)
        self.b = torch.nn.Linear(256, 256)

    def forward(self, x):
        return self.b(torch.sigmoid(torch.relu(self.a(x))))  # sigmoid kept in torch: a graph break


class OneEngine(torch.nn.Module):
    """The same layers without the break: one engine."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(256, 256)
        self.b = torch.nn.Linear(256, 256)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))
