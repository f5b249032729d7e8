"""What capturing at the op costs against today's module-class hooks, in the same run, side by side.

    python3 bench/bench_op_path.py                 # CPU, the stand-in torch_tensorrt (support/fake_trt)
    python3 bench/bench_op_path.py --gpu           # the GPU machine: real torch_tensorrt, C++ runtime
    python3 bench/bench_op_path.py --gpu --out reports/bench   # also writes bench_op_path.json

Workload: the two-engine + fallback model (acc_0 -> gpu_1 -> acc_2). Configurations, interleaved
round by round so drift hits all alike: no capture; the live model captured through the module
classes (C++ `forward` patched) and through the op (`torch.ops.tensorrt.execute_engine` proxied);
the same model exported and loaded (`ExportedProgram.module()`), uncaptured, captured through the op
(re-pointed nodes, fallback markers) and under the module-classes path (which records nothing
there: its cost is the floor). Per-inference host time of the model call, median over all rounds;
`added_us` is the median minus the uncaptured median of the same model. Also: the one-off cost of
adopting a loaded graph (re-point + markers + recompile), of the scan for loaded graphs at start
(a walk of gc.get_objects()) and, on the GPU, of reading
`use_pre_allocated_outputs` from a TorchBind engine (read on every call for a loaded graph's
engines). Rows go to a null sink: what is measured is the hooks, not the writer.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _models(gpu: bool):
    """(live model, exported program, example input, input maker)."""
    import torch
    if not gpu:
        sys.path[:0] = [str(ROOT / "support" / "fake_trt"), str(ROOT / "support")]
        import torch_tensorrt  # noqa: F401  (the stand-in)
        from cpu_models import partitioned
        live = partitioned("cpp")
        x = torch.randn(4, 8)
        dyn = {"x": {0: torch.export.Dim("batch", min=1, max=16)}}
        ep = torch.export.export(partitioned("cpp"), (x,), dynamic_shapes=dyn, strict=False)
        return live, ep, x
    import torch_tensorrt

    class TwoEngines(torch.nn.Module):  # support/gpu/two_engines.py
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(256, 256), torch.nn.Linear(256, 256)

        def forward(self, x):
            return self.b(torch.sigmoid(torch.relu(self.a(x))))

    model = TwoEngines().eval().cuda().half()
    x = torch.randn(8, 256, device="cuda", dtype=torch.half)
    live = torch_tensorrt.compile(model, ir="dynamo", inputs=[x], min_block_size=1,
                                  torch_executed_ops={"torch.ops.aten.sigmoid.default"})
    path = "/tmp/trtprof_bench_op_path.ep"
    torch_tensorrt.save(live, path, output_format="exported_program", inputs=[x])
    return live, torch_tensorrt.load(path), x


def _time(fn, x, n, sync):
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn(x)
        sync()
        out.append(time.perf_counter_ns() - t0)
    return out


def run(gpu: bool, rounds: int, per_round: int) -> dict:
    import torch
    from trtprof.capture.install import Instrumenter
    from trtprof.capture.options import CaptureOptions

    live, ep, x = _models(gpu)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    loaded = ep.module()
    configs = [("live", "none"), ("live", "module-classes"), ("live", "op"),
               ("loaded", "none"), ("loaded", "module-classes"), ("loaded", "op")]
    samples = {c: [] for c in configs}
    adopt_us, scan_us = [], []
    opts = CaptureOptions(gpu=gpu or None)
    with torch.no_grad():
        for _ in range(3):  # warm-up
            live(x), loaded(x)
        for _ in range(rounds):
            for which, path in configs:
                model = live if which == "live" else loaded
                inst = None
                if path != "none":
                    inst = Instrumenter(lambda recs: None, opts, capture_path=path).start()
                    if which == "live":
                        inst.instrument(model)
                    elif path == "op":  # adopted by the start scan; time adopting a fresh copy
                        fresh = type(ep).module.__wrapped__(ep)  # ExportedProgram.module, unwrapped
                        t0 = time.perf_counter_ns()
                        inst.instrument(fresh)
                        adopt_us.append((time.perf_counter_ns() - t0) / 1000)
                        t0 = time.perf_counter_ns()
                        inst.op.scan()
                        scan_us.append((time.perf_counter_ns() - t0) / 1000)
                try:
                    model(x)  # the first call anchors the GPU clock: not timed
                    samples[(which, path)] += _time(model, x, per_round, sync)
                finally:
                    if inst is not None:
                        inst.stop()
    med = {c: statistics.median(v) / 1000 for c, v in samples.items()}
    res = {"device": torch.cuda.get_device_name(0) if gpu else "cpu (stand-in torch_tensorrt)",
           "torch_tensorrt": getattr(sys.modules["torch_tensorrt"], "__version__", None),
           "rounds": rounds, "per_round": per_round, "median_us": {}, "added_us": {}}
    for (which, path), m in med.items():
        res["median_us"][f"{which}/{path}"] = round(m, 2)
        res["added_us"][f"{which}/{path}"] = round(m - med[(which, "none")], 2)
    res["adopt_graph_us_median"] = round(statistics.median(adopt_us), 1) if adopt_us else None
    res["start_scan_us_median"] = round(statistics.median(scan_us), 1) if scan_us else None
    if gpu:
        res["torchbind_mode_read_us"] = _attr_read(live)
    return res


def _attr_read(live, n: int = 20000) -> dict:
    """use_pre_allocated_outputs read from the TorchBind engine directly and through its module."""
    mod = next(m for name, m in live.named_children() if "_run_on_acc" in name)
    eng = mod.engine

    def per(fn):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return round((time.perf_counter_ns() - t0) / n / 1000, 3)
    return {"engine_attr": per(lambda: eng.use_pre_allocated_outputs),
            "via_module": per(lambda: mod.engine.use_pre_allocated_outputs)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="real torch_tensorrt on CUDA (the GPU machine)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--per-round", type=int, default=200)
    p.add_argument("--out", default=None, help="folder for bench_op_path.json")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    res = run(args.gpu, args.rounds, args.per_round)
    print(f"{'configuration':28} {'median us':>10} {'added us':>9}")
    for k, v in res["median_us"].items():
        print(f"{k:28} {v:10.2f} {res['added_us'][k]:9.2f}")
    print("adopting a loaded graph (once):", res["adopt_graph_us_median"], "us; scanning for graphs at "
          "start:", res["start_scan_us_median"], "us")
    if "torchbind_mode_read_us" in res:
        print("TorchBind use_pre_allocated_outputs read:", res["torchbind_mode_read_us"])
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "bench_op_path.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
