"""The hooks' own Python cost per recorded inference on the CPU, with the stand-in Torch-TensorRT.

    python3 bench/bench_hot_path.py [--pairs 4000] [--models small,broken] [--runtimes cpp,python]
    python3 bench/bench_hot_path.py --profile small-cpp      # cProfile: extra own time per function
    python3 bench/bench_hot_path.py --frames [--tree DIR]    # Python frames recording adds per inference
    python3 bench/bench_hot_path.py --split --models broken --runtimes cpp   # inside the ranges / at safe points
    python3 bench/bench_hot_path.py --frames --no-brackets     # the full level without subgraph events
    python3 bench/bench_hot_path.py --floor --pairs 2000         # trtprof beside a minimal per-range tape

Why a CPU stand-in: the hot path's cost on the GPU host is Python frames, attribute reads and dict
lookups; the CPU runs the same code against support/fake_trt (the runtime classes) and pure-Python
CUDA events (support/gpu_doubles.py through the real GpuClock), so a change to the hot path can be
measured without the device. What it cannot show: the cost of the real CUDA calls (event record
~3 us, torch.cuda.current_stream() ~7.5 us on the H100 host: bench_hooks.py measures those there).

Design: one capture per model at the full level, every inference recorded (no sampling), switched
on and off at every inference in a random order within each pair (as bench_overhead.py --toggle),
so drift and the other tenants of the machine cancel within a pair. Reported per model: the medians
of both arms and of the paired differences in CPU time (the cost per inference, and per row), and
trtprof's own inference latency (its inference rows, wall clock) paired with the 'off' inference.
Models: `small` = acc_0 -> gpu_1 -> acc_2 (2 engines, 1 fallback); `broken` = 13 engines and 12
fallbacks in a chain, the graph-broken BERT's structure. Runtimes: `cpp` (the op path, a TorchBind
engine's stand-in) and `python` (2.11's PythonTorchTensorRTModule, module-class hooks).
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup(tree=None):
    """The stand-in torch_tensorrt and the real GpuClock over pure-Python events; `tree`: a folder
    holding another version of the trtprof package (before/after a change, e.g. `git archive`)."""
    sys.path[:0] = [str(tree or ROOT), str(ROOT / "support" / "fake_trt"), str(ROOT / "support")]
    import torch
    import torch_tensorrt  # noqa: F401  (the stand-in)
    from gpu_doubles import Graph, fake_torch
    from trtprof.capture import install
    from trtprof.capture.events import GpuClock

    install.GpuClock = lambda t: GpuClock(fake_torch())
    torch.cuda.is_available = lambda: True
    torch.cuda.CUDAGraph = Graph
    return torch


def chain(runtime: str, engines: int, width: int = 8):
    """acc_0 -> gpu_1 -> acc_2 -> ... : `engines` engines with a fallback between each two."""
    import torch
    import torch.fx
    import torch_tensorrt.dynamo.runtime as rt

    class Sigmoid(torch.nn.Module):
        def forward(self, x):
            return torch.sigmoid(x)

    def engine(name):
        fn = torch.nn.Linear(width, width)
        return rt.PythonTorchTensorRTModule(fn, name) if runtime == "python" else rt.TorchTensorRTModule(fn, name)

    torch.manual_seed(0)
    mods, g = {}, torch.fx.Graph()
    v = g.placeholder("x")
    for i in range(2 * engines - 1):
        name = f"_run_on_acc_{i}" if i % 2 == 0 else f"_run_on_gpu_{i}"
        mods[name] = engine(name) if i % 2 == 0 else torch.fx.symbolic_trace(Sigmoid())
        v = g.call_module(name, (v,))
    g.output(v)
    return torch.fx.GraphModule(mods, g)


MODELS = {"small": 2, "broken": 13}


def measure(torch, model, pairs: int, tmp: Path, label: str) -> dict:
    """Each inference timed on two clocks: this thread's CPU time (what the hooks cost, with the
    other tenants' load left out: on this shared 2-core machine wall-clock medians of the same code
    moved by 2x between runs) and the wall clock (what trtprof's own inference rows are measured
    with, so its own latency is compared with the wall time of the 'off' inference of the same pair)."""
    import trtprof

    x = torch.randn(4, 8)
    s = _session(tmp / label)
    s.instrument(model)
    rnd = random.Random(0)
    cpu, wall = {"on": [], "off": []}, {"on": [], "off": []}
    tc, tw = time.thread_time_ns, time.perf_counter_ns
    warm = 200
    try:
        with torch.no_grad():
            for _ in range(warm):  # warm-up: caches, the pool of events, the anchor
                model(x)
            for _ in range(pairs):
                for arm in (("on", "off") if rnd.random() < 0.5 else ("off", "on")):
                    (s.resume if arm == "on" else s.pause)()
                    c0, w0 = tc(), tw()
                    model(x)
                    w1, c1 = tw(), tc()
                    cpu[arm].append(c1 - c0)
                    wall[arm].append(w1 - w0)
                s.resume()
    finally:
        s.resume()
        cap = s.stop()
    df = cap.timeline
    # paused inferences are not counted: the 'on' inference of pair k is inference warm + k
    inf = df[(df.event == "inference") & (df.inference >= warm)].sort_values("inference")
    rows = int((df.inference == warm).sum())
    mine = (inf.host_end_ns - inf.host_start_ns).tolist()
    assert len(mine) == pairs, (len(mine), pairs)

    def med(v):
        return round(statistics.median(v) / 1000, 2)

    d_cpu = [a - b for a, b in zip(cpu["on"], cpu["off"])]
    d_own = [a - b for a, b in zip(mine, wall["off"])]
    off_cpu, off_wall = statistics.median(cpu["off"]), statistics.median(wall["off"])
    return {"pairs": pairs, "rows_per_inference": rows,
            "cpu_off_us": med(cpu["off"]), "cpu_on_us": med(cpu["on"]),
            "cpu_paired_diff_us": med(d_cpu), "cpu_paired_ratio": round(1 + statistics.median(d_cpu) / off_cpu, 3),
            "cpu_per_row_us": round(statistics.median(d_cpu) / rows / 1000, 2),
            "wall_off_us": med(wall["off"]), "wall_on_us": med(wall["on"]),
            "wall_paired_diff_us": med([a - b for a, b in zip(wall["on"], wall["off"])]),
            "own_inference_us": med(mine), "own_minus_off_paired_us": med(d_own),
            "own_ratio": round(1 + statistics.median(d_own) / off_wall, 3)}


def build(name: str):
    model, runtime = name.split("-")
    return chain(runtime, MODELS[model])


BRACKETS = [True]  # --no-brackets: the full level without events around subgraph calls


def _session(folder):
    """A started full-level capture (no allocator log, no kernels). Without brackets: the stand-in has
    no CUPTI, whose launch times `brackets=False` needs, so the choice is forced (the hot path is the
    one a capture with launch times runs)."""
    import trtprof
    from trtprof.capture import install
    if not BRACKETS[0]:
        install.Instrumenter._brackets = lambda self, gpu: False
    kw = {} if BRACKETS[0] else {"brackets": False}  # a --tree from before the option takes no keyword
    return trtprof.Session(folder, level="full", cpp_allocs=False, kernels=False, **kw).start()


@contextlib.contextmanager
def _warm_session(model, x):
    """A full-level capture (`_session`) into a temporary folder, the model instrumented and run 200
    times, so what is measured next is the recorded steady state."""
    with tempfile.TemporaryDirectory() as tmp:
        s = _session(Path(tmp) / "c")
        try:
            s.instrument(model)
            for _ in range(200):
                model(x)
            yield s
        finally:
            s.stop()


def profile(torch, name: str, iters: int, top: int) -> None:
    """Extra own time per inference by function (on minus off), under cProfile."""
    from trtprof.capture import state

    model = build(name)
    x = torch.randn(4, 8)

    def run():
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(iters):
            model(x)
        pr.disable()
        return {f"{k[0].rsplit('/', 2)[-1]}:{k[1]}({k[2]})": (v[0], v[2]) for k, v in pstats.Stats(pr).stats.items()}

    with torch.no_grad(), _warm_session(model, x):
        ins, state.ACTIVE = state.ACTIVE, None
        off = run()
        state.ACTIVE = ins
        on = run()
    rows = sorted((((on.get(k, (0, 0))[1] - off.get(k, (0, 0))[1]) / iters * 1e6,
                    (on.get(k, (0, 0))[0] - off.get(k, (0, 0))[0]) / iters, k) for k in set(on) | set(off)),
                  reverse=True)
    print(f"{name}: extra own time {sum(r[0] for r in rows):.1f} us/inference, "
          f"{sum(r[1] for r in rows):.0f} extra calls (under cProfile)")
    for dt, dc, k in rows[:top]:
        print(f"  {dt:9.2f} us  {dc:7.1f} calls  {k}")


def split(torch, name: str, iters: int) -> dict:
    """Where a recorded inference's extra time goes: inside the inference's own ranges, or at the
    safe point after it (emitting rows from finished ranges, then writing them). Wall clock per
    inference in blocks of `iters`, recording off/on/off/on; the safe point, the emit pass and the
    sink timed from wrappers around them (their own cost, a few calls per inference, is included)."""
    from trtprof.capture import state

    model = build(name)
    x = torch.randn(4, 8)
    acc = {"safe_point": 0, "emit": 0, "sink": 0}

    def timed(key, fn):
        def wrapper(*a, **k):
            t = time.perf_counter_ns()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += time.perf_counter_ns() - t
        return wrapper
    walls = {"off": [], "on": []}
    with torch.no_grad(), _warm_session(model, x):
        ins = state.ACTIVE
        ins.safe_point = timed("safe_point", ins.safe_point)
        ins.rec._resolve = timed("emit", ins.rec._resolve)
        ins.rec.sink = timed("sink", ins.rec.sink)
        for arm in ("off", "on", "off", "on"):
            state.ACTIVE = ins if arm == "on" else None
            t = time.perf_counter_ns()
            for _ in range(iters):
                model(x)
            walls[arm].append((time.perf_counter_ns() - t) / iters / 1e3)
        state.ACTIVE = ins
    off, on = statistics.mean(walls["off"]), statistics.mean(walls["on"])
    per = {k: v / (2 * iters) / 1e3 for k, v in acc.items()}
    return {"off_us": round(off, 1), "on_us": round(on, 1), "extra_us": round(on - off, 1),
            "safe_point_us": round(per["safe_point"], 1), "of_which_emit_us": round(per["emit"], 1),
            "of_which_sink_us": round(per["sink"], 1), "inside_ranges_us": round(on - off - per["safe_point"], 1)}


def frames(torch, name: str, iters: int = 200) -> dict:
    """Python frames per inference that recording adds (sys.setprofile 'call' events, on minus off),
    in the hooks (inside the ranges) and in the batched work (drain, rows, writes): a count, so the
    machine's load cannot move it."""
    from trtprof.capture import state

    model = build(name)
    x = torch.randn(4, 8)
    counts = {"off": 0, "on": 0}
    arm = ["off"]

    def prof(frame, event, arg):
        if event == "call":
            counts[arm[0]] += 1
    with torch.no_grad(), _warm_session(model, x):
        ins = state.ACTIVE
        for a in ("off", "on"):
            state.ACTIVE = ins if a == "on" else None
            arm[0] = a
            sys.setprofile(prof)
            for _ in range(iters):
                model(x)
            sys.setprofile(None)
        state.ACTIVE = ins
    return {"frames_per_inference": round((counts["on"] - counts["off"]) / iters, 1)}


def floor(torch, name: str, pairs: int) -> dict:
    """The floor of a per-range record in Python, beside trtprof, in one run: a second copy of the
    model whose engine (op), fallback and model calls each get the least a range needs (NVTX push/pop
    with cached attributes, two host timestamps, input and output shapes, one tuple appended to a
    list: a "tape"), against trtprof's full level (no events: the stand-in's are pure Python) and no
    tool. Arms in random order within each triple, this thread's CPU time. The tape's conversion into
    rows is timed apart: one Arrow table from its columns (what a drain of such a tape would do)."""
    import pyarrow as pa

    from trtprof.capture import ops, state
    from trtprof.capture.marks import Marks

    model, lean = build(name), build(name)
    x = torch.randn(4, 8)
    marks = Marks(True)
    perf, shape = time.perf_counter_ns, state._SHAPE
    tape: list = []
    push, pop = (marks.push, marks.pop) if marks.available else (lambda a: None, lambda: None)

    def taped(fn, key, attrs):
        def forward(*args):
            push(attrs)
            t0 = perf()
            out = fn(*args)
            t1 = perf()
            pop()
            tape.append((key, t0, t1, tuple(map(shape, args[0] if key[0] == "e" else args[1:])),
                         (out.shape,) if isinstance(out, torch.Tensor) else tuple(map(shape, out))))
            return out
        return forward

    for n, child in lean.named_children():
        if n.startswith("_run_on_gpu"):
            cls = type(child)
            cls.forward = taped(cls.forward, ("f", n), marks.attributes(n, "fallback"))
    cls = type(lean)
    cls.forward = taped(cls.forward, ("m", "model"), marks.attributes("model", "inference"))
    real = torch.ops.tensorrt.execute_engine.default
    engine_attrs = marks.attributes("engine", "exec")
    tape_op = taped(lambda inputs, engine: real(inputs, engine), ("e", "engine"), engine_attrs)
    proxy_cls = ops.OpProxy
    rnd = random.Random(0)
    cpu = {"off": [], "trtprof": [], "tape": []}
    tc = time.thread_time_ns
    with torch.no_grad(), _warm_session(model, x):
        ins = state.ACTIVE
        saved = proxy_cls.__call__
        try:
            for i in range(pairs + 200):
                arms = ["off", "trtprof", "tape"]
                rnd.shuffle(arms)
                for arm in arms:
                    state.ACTIVE = ins if arm == "trtprof" else None
                    if arm == "tape":
                        proxy_cls.__call__ = lambda self, *a: tape_op(*a)
                    c0 = tc()
                    (lean if arm == "tape" else model)(x)
                    c1 = tc()
                    proxy_cls.__call__ = saved
                    if i >= 200:
                        cpu[arm].append(c1 - c0)
                if len(tape) > 100_000:
                    tape.clear()
        finally:
            proxy_cls.__call__ = saved
            state.ACTIVE = ins
    ranges = 2 * MODELS[name.split("-")[0]]  # engines + fallbacks + the model
    rows = [tape[i % len(tape)] for i in range(20_000)]
    t0 = tc()
    cols = list(zip(*rows))
    pa.table({"key": [k[1] for k in cols[0]], "t0": pa.array(cols[1], pa.int64()), "t1": pa.array(cols[2], pa.int64()),
              "in": [str(s) for s in cols[3]], "out": [str(s) for s in cols[4]]})
    per_row = (tc() - t0) / len(rows) / 1e3
    off = statistics.median(cpu["off"])
    out = {"pairs": pairs, "ranges_per_inference": ranges, "cpu_off_us": round(off / 1e3, 1),
           "tape_rows_to_table_us_per_row": round(per_row, 2)}
    for arm in ("trtprof", "tape"):
        d = statistics.median([a - b for a, b in zip(cpu[arm], cpu["off"])])
        out[arm] = {"paired_diff_us": round(d / 1e3, 1), "per_range_us": round(d / 1e3 / ranges, 2),
                    "paired_ratio": round(1 + d / off, 3)}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--models", default="small,broken")
    p.add_argument("--runtimes", default="cpp,python")
    p.add_argument("--profile", metavar="MODEL-RUNTIME", help="cProfile one model instead (small-cpp, broken-python ...)")
    p.add_argument("--frames", action="store_true", help="count the Python frames recording adds per inference")
    p.add_argument("--split", action="store_true",
                   help="the extra wall time per inference inside the ranges and at the safe point (emit, sink)")
    p.add_argument("--iters", type=int, default=3000, help="inferences per arm under --profile")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--floor", action="store_true", help="trtprof beside the least a per-range record in "
                   "Python needs (a tape), per range, cpp runtime")
    p.add_argument("--no-brackets", action="store_true", help="the full level without events around subgraph calls")
    p.add_argument("--out", default=None, help="file for the JSON result")
    p.add_argument("--tree", default=None, help="measure the trtprof package in this folder instead "
                   "(e.g. an earlier commit: git archive COMMIT trtprof | tar -x -C DIR)")
    args = p.parse_args()
    BRACKETS[0] = not args.no_brackets
    torch = _setup(args.tree)
    import torch_tensorrt
    torch_tensorrt._fake.use("2.11")
    if args.profile:
        profile(torch, args.profile, args.iters, args.top)
        return
    if args.floor:
        for m in args.models.split(","):
            print(f"{m}-cpp", json.dumps(floor(torch, f"{m}-cpp", min(args.pairs, 3000))))
        return
    if args.split:
        for m in args.models.split(","):
            for rt in args.runtimes.split(","):
                print(f"{m}-{rt}", json.dumps(split(torch, f"{m}-{rt}", args.iters)))
        return
    if args.frames:
        for m in args.models.split(","):
            for rt in args.runtimes.split(","):
                print(f"{m}-{rt}", frames(torch, f"{m}-{rt}"))
        return
    import os
    res = {"machine": f"cpu ({os.cpu_count()} cores), stand-in torch_tensorrt", "python": sys.version.split()[0],
           "torch": torch.__version__, "trtprof": str(Path(sys.modules["trtprof"].__file__).parent.parent),
           "date": time.strftime("%Y-%m-%d"), "level": "full", "brackets": BRACKETS[0], "sample": 1,
           "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.models.split(","):
            for rt in args.runtimes.split(","):
                name = f"{m}-{rt}"
                res["results"][name] = r = measure(torch, build(name), args.pairs, Path(tmp), name)
                print(f"{name:14} CPU: off {r['cpu_off_us']:8.2f} us  +{r['cpu_paired_diff_us']:7.2f} us "
                      f"(x{r['cpu_paired_ratio']:.3f}, {r['cpu_per_row_us']:.2f} us per row of {r['rows_per_inference']});"
                      f"  wall: trtprof's own inference {r['own_minus_off_paired_us']:+.2f} us against 'off' "
                      f"(x{r['own_ratio']:.3f})", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
