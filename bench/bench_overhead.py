"""Capture overhead on the GPU: median latency per inference with no tool, under trtprof (each level),
and under torch.profiler; interleaved blocks, one process, one compile; optionally under nsys.

    source .trtbundle/activate.sh && python3 bench/bench_overhead.py --runtime cpp --out reports/bench
    ... bench_overhead.py --goal --runtime cpp|python [--graph-breaks] --pairs 1000   # issue 22's figures
    ... bench_overhead.py --goal --profile 30 --pairs 400   # and where the extra time goes, by function

Each round runs every mode for --iters timed inferences (synchronize after each, like the tutorial);
the order of modes rotates from round to round so drift hits all modes alike; rounds are short so that
each mode's block sits next to a 'none' block in time. Reported per mode: the median over all its
iterations, and the median over rounds of (block median / 'none' block median of the same round),
with its 10th-90th percentile: the ratio that drift cannot fake. It also checks that trtprof does not change what it measures: the median inference latency that
trtprof recorded (host time of its inference rows) against the no-tool median.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))  # bert_models
from bert_models import bert_inputs, build_bert, compile_bert  # noqa: E402

import trtprof  # noqa: E402


def timed(model, inputs, iters):
    out = []
    with torch.no_grad():
        for _ in range(iters):
            t0 = time.perf_counter_ns()
            model(*inputs)
            torch.cuda.synchronize()
            out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def timed_once(model, inputs):
    """One inference: (ms until the call returned on the host, ms until the GPU finished)."""
    with torch.no_grad():
        t0 = time.perf_counter_ns()
        model(*inputs)
        t1 = time.perf_counter_ns()
        torch.cuda.synchronize()
        t2 = time.perf_counter_ns()
    return (t1 - t0) / 1e6, (t2 - t0) / 1e6


def run_mode(mode, model, inputs, iters, tmp, block):
    """Latencies (ms) of one block in one mode, and trtprof's own inference medians if any."""
    if mode == "none":
        return timed(model, inputs, iters), None
    if mode.startswith("trtprof"):
        s = trtprof.Session(Path(tmp) / f"{mode}-{block}", name=mode, **trtprof_options(mode))
        s.start()
        s.instrument(model)
        try:
            lat = timed(model, inputs, iters)
        finally:
            cap = s.stop()
        df = cap.timeline
        return lat, own_latencies(df)
    if mode == "torch.profiler":
        acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=acts):
            lat = timed(model, inputs, iters)
        return lat, None
    raise ValueError(mode)


def own_latencies(df) -> list:
    """trtprof's own inference latencies (ms, host clock) from a capture's timeline, without each
    capture's inference 0: it anchors the GPU clock (synchronizes) inside its range, once per
    capture, and with sampling it would be a third of a 25-inference block's recorded inferences."""
    inf = df[(df.event == "inference") & (df.inference > 0)]
    return ((inf.host_end_ns - inf.host_start_ns) / 1e6).tolist()


def trtprof_options(mode: str) -> dict:
    """'trtprof[-minimal][-noalloc][-nokernels][-nobrackets][-sN][-logalways]' -> Session options (level,
    allocator log, CUPTI kernel activity, events around every subgraph call, sampling; 'logalways' is
    applied in `toggled`: the allocator log left on through the inferences sampling skips)."""
    parts = mode.split("-")[1:]
    sample = [int(p[1:]) for p in parts if p[:1] == "s" and p[1:].isdigit()]
    return {"level": "minimal" if "minimal" in parts else "full", "cpp_allocs": "noalloc" not in parts,
            "kernels": "nokernels" not in parts, "brackets": "nobrackets" not in parts,
            "sample": sample[0] if sample else 1}


def toggled(trt, inputs, args, tmp, config):
    """One capture for the whole run, recording switched on and off (state.ACTIVE) at every
    inference, in a random order within each pair: the two arms differ only in what trtprof does per
    inference, and drift (CPU clocks, other tenants: block medians here move by +-30 %) cancels
    within a pair. Reported: the median of the paired differences (the cost per inference), the
    ratio of the arms' medians and of their means (the mean carries the batched work: row building,
    event conversion, writes). The 'off' arm still passes through the installed wrappers (their
    pass-through cost is measured separately by bench_hooks.py). On the C++ runtime without sampling
    the allocator log runs through the 'off' arm too, so each harvest also converts the 'off'
    inferences' allocations: the ratio of means carries that, the paired median does not (harvests
    come every 512 C++ calls)."""
    import random
    opts = trtprof_options(config)
    s = trtprof.Session(Path(tmp) / f"toggle-{config}", name="toggle", **opts).start()
    if "logalways" in config.split("-"):  # sampling: the allocator log not stopped between recorded inferences
        s.instrumenter.ins.pause_log = False
    s.instrument(trt)
    rnd = random.Random(0)
    on, off, diff, host_diff = [], [], [], []
    warm = 20
    prof = {"on": cProfile.Profile(), "off": cProfile.Profile()} if args.profile else None
    try:
        timed(trt, inputs, warm)  # anchors the GPU clock, starts the allocator log
        for _ in range(args.pairs or args.blocks * args.iters):
            arms = ("on", "off") if rnd.random() < 0.5 else ("off", "on")
            got = {}
            for arm in arms:
                (s.resume if arm == "on" else s.pause)()  # pausing also switches kernel activity off
                if prof:
                    prof[arm].enable()
                got[arm] = timed_once(trt, inputs)
                if prof:
                    prof[arm].disable()
            s.resume()
            on.append(got["on"][1])
            off.append(got["off"][1])
            diff.append(got["on"][1] - got["off"][1])
            host_diff.append(got["on"][0] - got["off"][0])
    finally:
        s.resume()
        cap = s.stop()
        mine = own_latencies(cap.timeline)
        own = paired_own(cap.timeline, off, warm) if opts["sample"] == 1 else None
    mo, mf = statistics.median(on), statistics.median(off)
    diff.sort()
    n = len(diff)
    return {**opts, "pairs": n, "median_on_ms": round(mo, 4), "median_off_ms": round(mf, 4),
            "ratio_of_medians": round(mo / mf, 4),
            "ratio_of_means": round(statistics.fmean(on) / statistics.fmean(off), 4),
            "paired_diff_median_us": round(1000 * diff[n // 2], 2),
            "paired_diff_median_ratio": round(1 + diff[n // 2] / mf, 4),
            "paired_diff_p25_p75_us": [round(1000 * diff[n // 4], 2), round(1000 * diff[3 * n // 4], 2)],
            # host side only: until the call returned (what the hooks cost the CPU, GPU waiting aside)
            "paired_host_diff_median_us": round(1000 * statistics.median(host_diff), 2),
            # what trtprof itself recorded, against the 'off' arm timed from outside (+ a synchronize)
            "trtprof_inference_median_ms": round(statistics.median(mine), 4) if mine else None,
            # every inference recorded: trtprof's latency of each 'on' inference (the report's rule:
            # host start to the later of host end and GPU end) against the 'off' one of its pair
            **(own or {}),
            "kernels_recorded": bool(cap.meta.get("kernels", {}).get("recorded")),
            "brackets": cap.meta.get("brackets"),  # events around every subgraph call, as it ran
            **({"profile": extra_own_time(prof, n, args.profile)} if prof else {})}


def extra_own_time(prof: dict, pairs: int, top: int) -> list:
    """Where a recorded inference's extra time goes: per function, own time (cProfile's tottime) in
    the 'on' arm minus the 'off' arm, per inference, largest first, with the extra calls. Under
    cProfile every Python call costs more, so the shares matter, not the sum; CUDA calls made from C++
    (inside the engine) are not split out."""
    own = {}
    for arm, pr in prof.items():
        for k, v in pstats.Stats(pr).stats.items():
            name = f"{k[0].rsplit('/', 2)[-1]}:{k[1]}({k[2]})"
            got = own.setdefault(name, {"on": (0, 0.0), "off": (0, 0.0)})
            got[arm] = (v[0], v[2])
    rows = sorted(((v["on"][1] - v["off"][1]) / pairs * 1e6, (v["on"][0] - v["off"][0]) / pairs, k)
                  for k, v in own.items())
    rows.reverse()
    print(f"extra own time under cProfile: {sum(r[0] for r in rows):.1f} us per inference", file=sys.stderr)
    for us, calls, k in rows[:top]:
        print(f"  {us:9.2f} us  {calls:7.1f} calls  {k}", file=sys.stderr)
    return [{"us_per_inference": round(us, 2), "calls_per_inference": round(calls, 2), "function": k}
            for us, calls, k in rows[:top]]


def paired_own(df, off: list, warm: int) -> dict | None:
    """trtprof's own latency of the 'on' inference of pair k (inference warm + k: paused inferences
    are not counted) minus the 'off' inference's time until the GPU finished, paired."""
    inf = df[(df.event == "inference") & (df.inference >= warm)].sort_values("inference")
    if len(inf) != len(off):
        return None
    hs, he = inf.host_start_ns.to_numpy(float), inf.host_end_ns.to_numpy(float)
    ge = inf.gpu_end_ns.astype("Float64").to_numpy(dtype=float, na_value=float("nan"))
    lat = [float((max(h, g) if g == g else h) - s) for s, h, g in zip(hs, he, ge)]  # analysis.latency's rule
    d = sorted(a / 1e6 - b for a, b in zip(lat, off))
    mf = statistics.median(off)
    return {"own_latency_median_ms": round(statistics.median(lat) / 1e6, 4),
            "own_minus_off_paired_median_us": round(1000 * d[len(d) // 2], 2),
            "own_paired_ratio": round(1 + d[len(d) // 2] / mf, 4)}


def goal(toggle: dict, limit: float) -> dict:
    """Issue 22, per capture: the paired median ratio to no tool within `limit`, and trtprof's own
    latency of a recorded inference within 2 % of the unrecorded one's."""
    out = {}
    for config, r in toggle.items():
        own = r.get("own_paired_ratio")
        out[config] = {"paired_ratio": r["paired_diff_median_ratio"], "limit": limit,
                       "overhead_ok": bool(r["paired_diff_median_ratio"] <= limit),
                       "own_paired_ratio": own, "own_ok": bool(own is not None and own <= 1.02)}
    return out


def under_nsys(argv, base_ms) -> dict:
    """This benchmark's 'none' mode in a child process under nsys (CUDA + NVTX tracing)."""
    import shutil
    import subprocess
    nsys = shutil.which("nsys")
    if nsys is None:
        return {"skipped": "nsys not on PATH"}
    argv = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        child = [a for a in argv if a not in ("--nsys", "--toggle")]
        cmd = [nsys, "profile", "-t", "cuda,nvtx", "-o", f"{tmp}/run", "--force-overwrite", "true",
               sys.executable, __file__, *child, "--modes", "none", "--out", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
        found = list(Path(tmp).glob("overhead-*.json"))
        if proc.returncode or not found:
            return {"error": (proc.stderr or proc.stdout)[-800:]}
        med = json.loads(found[0].read_text())["modes"]["none"]["median_ms"]
    return {"median_ms": med, "ratio_to_none_other_process": round(med / base_ms, 4)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", choices=["cpp", "python"], default="cpp")
    p.add_argument("--graph-breaks", action="store_true")
    p.add_argument("--blocks", type=int, default=60, help="rounds")
    p.add_argument("--iters", type=int, default=25, help="timed inferences per mode per round")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--prealloc", action="store_true", help="pre-allocated outputs on")
    p.add_argument("--modes", default="none,trtprof,trtprof-minimal,trtprof-s10,trtprof-minimal-s10,torch.profiler",
                   help="trtprof[-minimal][-noalloc][-nokernels][-nobrackets][-sN][-logalways]: level full (or minimal), "
                        "without the C++ allocator log, CUPTI or subgraph event brackets, recording 1 inference in N")
    p.add_argument("--nsys", action="store_true",
                   help="also run the 'none' mode in a second process under nsys profile -t cuda,nvtx and "
                        "compare its median with this run's (two processes: less exact than the paired ratios)")
    p.add_argument("--out", default="reports/bench")
    p.add_argument("--toggle", action="store_true",
                   help="also measure each level with one capture switched on/off at every inference "
                        "(see toggled()): the most precise figure of trtprof's own cost")
    p.add_argument("--toggle-configs", default="trtprof,trtprof-minimal,trtprof-s10,trtprof-minimal-s10",
                   help="the captures --toggle measures, named like the trtprof modes")
    p.add_argument("--pairs", type=int, default=None, help="pairs per --toggle capture (default blocks x iters)")
    p.add_argument("--profile", type=int, default=0, metavar="TOP",
                   help="run each --toggle capture's two arms under cProfile and give the TOP functions by extra "
                        "own time per recorded inference (the ratios are then not the published ones)")
    p.add_argument("--goal", action="store_true",
                   help="issue 22's measurement only: the full level recording every inference, with and without "
                        "kernel activity, paired on/off against no tool (--toggle), and trtprof's own latency "
                        "paired with the unrecorded inference; 'goal' in the JSON says whether each ratio is within "
                        "2 %% (5 %% for --graph-breaks)")
    args = p.parse_args(argv)
    if args.goal:
        args.modes, args.blocks, args.toggle = "none", 2, True
        args.toggle_configs = "trtprof-nokernels,trtprof,trtprof-nobrackets"
    import torch_tensorrt

    model = build_bert()
    inputs = bert_inputs()
    t0 = time.time()
    trt = compile_bert(model, python_runtime=args.runtime == "python", graph_breaks=args.graph_breaks)
    compile_s = time.time() - t0
    torch_tensorrt.runtime.enable_pre_allocated_outputs(trt).set_pre_allocated_output(args.prealloc)
    timed(trt, inputs, args.warmup)
    modes = args.modes.split(",")
    # torch.profiler keeps CUPTI once it used it (measured on the H200): trtprof's kernel activity could
    # not start after it, so it runs last, in rounds of its own against fresh 'none' blocks
    profiler = "torch.profiler" in modes
    if profiler:
        modes.remove("torch.profiler")
    lat = {m: [] for m in modes}
    blocks = {m: [] for m in modes}
    own = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for b in range(args.blocks):
            order = modes[b % len(modes):] + modes[:b % len(modes)]
            for m in order:
                x, mine = run_mode(m, trt, inputs, args.iters, tmp, b)
                lat[m] += x
                blocks[m].append(statistics.median(x))
                if mine:
                    own[m] += mine
    base = statistics.median(lat["none"]) if "none" in lat else None
    res = {
        "model": "bert-base fp16 b1 s128" + (" gelu-fallbacks" if args.graph_breaks else ""),
        "runtime": args.runtime, "prealloc": args.prealloc,
        "engines": sum(1 for n, _ in trt.named_children() if n.startswith("_run_on_acc")),
        "fallbacks": sum(1 for n, _ in trt.named_children() if n.startswith("_run_on_gpu")),
        "compile_s": round(compile_s, 1), "blocks": args.blocks, "iters": args.iters,
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "torch_tensorrt": torch_tensorrt.__version__,
        "modes": {},
    }
    for m in modes:
        med = statistics.median(lat[m])
        ratios = sorted(b / n for b, n in zip(blocks[m], blocks["none"])) if "none" in blocks else []
        q = (lambda f: round(ratios[min(len(ratios) - 1, int(f * len(ratios)))], 4)) if ratios else (lambda f: None)
        res["modes"][m] = {
            "median_ms": round(med, 4), "mean_ms": round(statistics.fmean(lat[m]), 4),
            "block_medians_ms": [round(v, 4) for v in blocks[m]],
            "ratio_to_none": round(med / base, 4) if base else None,
            "mean_ratio_to_none": round(statistics.fmean(lat[m]) / statistics.fmean(lat["none"]), 4) if base else None,
            "paired_ratio_median": round(statistics.median(ratios), 4) if ratios else None,
            "paired_ratio_p10_p90": [q(0.1), q(0.9)],
            "trtprof_inference_median_ms": round(statistics.median(own[m]), 4) if own[m] else None,
        }
    if args.nsys:
        res["nsys"] = under_nsys(argv, base)
    if args.toggle:
        with tempfile.TemporaryDirectory() as tmp:
            res["toggle"] = {c: toggled(trt, inputs, args, tmp, c) for c in args.toggle_configs.split(",")}
    if profiler:
        pl, nl, ratios = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for b in range(args.blocks):
                x, _ = run_mode("none", trt, inputs, args.iters, tmp, b)
                y, _ = run_mode("torch.profiler", trt, inputs, args.iters, tmp, b)
                nl += x
                pl += y
                ratios.append(statistics.median(y) / statistics.median(x))
        ratios.sort()
        res["modes"]["torch.profiler"] = {
            "median_ms": round(statistics.median(pl), 4), "none_median_same_rounds_ms": round(statistics.median(nl), 4),
            "ratio_to_none": round(statistics.median(pl) / statistics.median(nl), 4),
            "paired_ratio_median": round(statistics.median(ratios), 4),
            "note": "run after the other modes, against its own 'none' blocks (it keeps CUPTI)"}
    if args.goal:
        res["goal"] = goal(res["toggle"], 1.05 if args.graph_breaks else 1.02)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"overhead-{'goal-' if args.goal else ''}{args.runtime}{'-broken' if args.graph_breaks else ''}{'-prealloc' if args.prealloc else ''}.json"
    (out / name).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
