"""On the GPU machine: does `torch_tensorrt.save` (then load and one call) finish under each capture
setting? Each variant runs in its own process, time-boxed; a process that hangs gets its Python
stacks (faulthandler) and, where gdb is installed, its native stacks written next to the results.

    source .trtbundle/activate.sh && python3 scripts/probe_save.py --out DIR [--timeout 90] [VARIANT ...]

Variants: plain (no trtprof), cupti (cupti-python kernel and memcpy activity with buffer callbacks,
no trtprof), cupti-sub (the same with a callback-API subscriber held), cupti-memset (with memset),
nokernels (trtprof.profile(kernels=False)), trtprof (trtprof.profile()), after (compile and save
before trtprof.profile(), load and run inside it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("plain", "cupti", "cupti-sub", "cupti-memset", "nokernels", "trtprof", "after")


def child(variant: str, work: Path) -> None:
    import contextlib
    import faulthandler

    faulthandler.dump_traceback_later(float(os.environ.get("PROBE_STACKS_AFTER", "60")), exit=False)
    import torch
    import torch_tensorrt

    import trtprof

    t = {}
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()).eval().cuda().half()
    x = torch.randn(4, 64, device="cuda", dtype=torch.half)
    ctx = contextlib.nullcontext()
    if variant.startswith("cupti"):
        from cupti import cupti
        got = []
        cupti.activity_register_callbacks(lambda: (8 << 20, 0), lambda recs: got.extend(recs))
        cupti.activity_enable(cupti.ActivityKind.CONCURRENT_KERNEL)
        cupti.activity_enable(cupti.ActivityKind.MEMCPY)
        if variant == "cupti-sub":
            t["subscriber"] = repr(cupti.subscribe(lambda *a: None, None))
        if variant == "cupti-memset":
            cupti.activity_enable(cupti.ActivityKind.MEMSET)
    elif variant in ("nokernels", "trtprof"):
        ctx = trtprof.profile(out=work / "cap", kernels=variant == "trtprof")
    if variant == "after":
        trt = torch_tensorrt.compile(model, ir="dynamo", inputs=[x], min_block_size=1)
        torch_tensorrt.save(trt, str(work / "m.ep"), inputs=[x])
        ctx = trtprof.profile(out=work / "cap")
    with ctx:
        s = time.perf_counter()
        if variant != "after":
            trt = torch_tensorrt.compile(model, ir="dynamo", inputs=[x], min_block_size=1)
            t["compile_s"] = time.perf_counter() - s
            trt(x)
            s = time.perf_counter()
            torch_tensorrt.save(trt, str(work / "m.ep"), inputs=[x])
            t["save_s"] = time.perf_counter() - s
        s = time.perf_counter()
        loaded = torch_tensorrt.load(str(work / "m.ep")).module()
        y = loaded(x)
        torch.cuda.synchronize()
        t["load_run_s"] = time.perf_counter() - s
        t["max_err"] = float((y.float() - model(x).float()).abs().max())
    if variant.startswith("cupti"):
        cupti.activity_flush_all(1)
        t["cupti_records"] = len(got)
    print("RESULT " + json.dumps(t), flush=True)


def native_stacks(pid: int) -> str:
    if not shutil.which("gdb"):
        return "gdb not installed\n"
    p = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 25"],
                       capture_output=True, text=True, timeout=60)
    return p.stdout[-60000:] + p.stderr[-2000:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("variants", nargs="*", default=list(VARIANTS))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for v in a.variants:
        work = Path(tempfile.mkdtemp(prefix=f"save-{v}-"))
        log = open(a.out / f"{v}.log", "w")
        s = time.perf_counter()
        env = dict(os.environ, PROBE_STACKS_AFTER=str(max(10.0, a.timeout - 25)))
        p = subprocess.Popen([sys.executable, __file__, "--child", v, str(work)], stdout=subprocess.PIPE,
                             stderr=log, text=True, env=env)
        try:
            out, _ = p.communicate(timeout=a.timeout)
            line = [x for x in out.splitlines() if x.startswith("RESULT ")]
            results[v] = {"rc": p.returncode, **(json.loads(line[-1][7:]) if line else {})}
        except subprocess.TimeoutExpired:
            (a.out / f"{v}.gdb.txt").write_text(native_stacks(p.pid))
            p.kill()
            p.communicate()
            results[v] = {"rc": "timeout"}
        results[v]["wall_s"] = round(time.perf_counter() - s, 1)
        print(v, json.dumps(results[v]), flush=True)
        log.close()
    (a.out / "save_probe.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        sys.exit(main())
