"""Latency statistics, the pre-alloc on/off comparison, the per-subgraph table and recommendations.

Why medians and a bootstrap: inference latencies are skewed (a GC pause, a cudaMalloc) so the mean
misleads; the question "did pre-allocated outputs help?" needs an interval, not two numbers. The
bootstrap of a median is done without materialising resamples: the median of a resample of size n
drawn from sorted data x is x[floor(n * U_(k))], with U_(k) the k-th order statistic of n uniforms,
which is Beta(k, n + 1 - k) distributed; so each resample costs O(1) and 10^5 inferences take
milliseconds with a fixed seed.

Everything is computed from the timeline: no threshold below is a result, only a rule for when a
measured cost is worth a recommendation. Stateless DataFrame -> DataFrame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trtprof.analysis import overlap, shapes

N_BOOT = 4000
SEED = 20240917
MIN_N = 5  # inferences per mode before a comparison means anything
# A cost is worth a recommendation when it is at least this share of the median latency and at least
# MIN_GAIN_NS in absolute terms (below a few microseconds, noise and the profiler dominate).
SIGNIFICANT_SHARE = 0.02
BREAK_SHARE = 0.05
PYTHON_SHARE = 0.10
MIN_GAIN_NS = 5_000


def _q(x: np.ndarray, q: float) -> float:
    return float(np.quantile(x, q)) if len(x) else float("nan")


# -- latency ------------------------------------------------------------------------------------------
def inference_latency(df: pd.DataFrame, infs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per inference: host time, GPU time and latency = from the call until both the host
    returned and the GPU finished its work (the host alone when there are no GPU times)."""
    cols = overlap.KEY + ["mode", "excluded", "input_shapes", "host_ns", "gpu_ns", "latency_ns"]
    rows = df[(df["event"] == "inference") & (df["inference"] >= 0)].drop_duplicates(overlap.KEY)
    if rows.empty:
        return pd.DataFrame(columns=cols)
    hs, he = rows["host_start_ns"].to_numpy(np.int64), rows["host_end_ns"].to_numpy(np.int64)
    gs = rows["gpu_start_ns"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    ge = rows["gpu_end_ns"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    out = rows[overlap.KEY + ["input_shapes"]].reset_index(drop=True)
    out["host_ns"] = (he - hs).astype(float)
    out["gpu_ns"] = ge - gs
    out["latency_ns"] = np.where(np.isnan(ge), he - hs, np.maximum(he, ge) - hs)
    infs = overlap.inferences(df) if infs is None else infs
    out = out.merge(infs[overlap.KEY + ["mode", "excluded"]], on=overlap.KEY, how="left")
    out["mode"] = out["mode"].fillna("none")
    out["excluded"] = out["excluded"].fillna(False).astype(bool)
    return out[cols]


def latency_summary(lat: pd.DataFrame, by=("model", "mode")) -> pd.DataFrame:
    """n, median, p10, p90 (ms) of the included inferences per group."""
    by = list(by)
    cols = by + ["n", "median_ms", "p10_ms", "p90_ms"]
    ok = lat[~lat["excluded"].astype(bool)] if len(lat) else lat
    if ok.empty:
        return pd.DataFrame(columns=cols)
    g = ok.groupby(by, sort=True, dropna=False)["latency_ns"]
    out = pd.DataFrame({"n": g.size(), "median_ms": g.median() / 1e6, "p10_ms": g.quantile(0.1) / 1e6,
                        "p90_ms": g.quantile(0.9) / 1e6}).reset_index()
    return out[cols]


# -- the pre-alloc comparison -------------------------------------------------------------------------
def bootstrap_median(x, n_boot: int = N_BOOT, rng: np.random.Generator | None = None) -> np.ndarray:
    """`n_boot` bootstrap replicates of the median of `x` (same distribution as np.median of
    resamples drawn with replacement), via order statistics of uniforms."""
    rng = np.random.default_rng(SEED) if rng is None else rng
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    if n == 0:
        return np.full(n_boot, np.nan)
    k = (n + 1) // 2  # 1-based rank of the (lower) middle element
    u = rng.beta(k, n + 1 - k, n_boot)
    lo = np.minimum((n * u).astype(np.int64), n - 1)
    if n % 2:
        return x[lo]
    u2 = u + (1.0 - u) * rng.beta(1, n - k, n_boot)  # the next order statistic
    hi = np.minimum((n * u2).astype(np.int64), n - 1)
    return (x[lo] + x[hi]) / 2.0


@dataclass
class Diff:
    """Median of A and of B, B - A in the same unit and in % of A, and 95 % CIs of both."""
    n_a: int = 0
    n_b: int = 0
    median_a: float = float("nan")
    median_b: float = float("nan")
    diff: float = float("nan")
    diff_pct: float = float("nan")
    ci: tuple = (float("nan"), float("nan"))
    ci_pct: tuple = (float("nan"), float("nan"))
    significant: bool = False
    enough: bool = False  # both sides have at least min_n values


def diff_medians(a, b, *, n_boot: int = N_BOOT, seed: int = SEED,
                 min_n: int = MIN_N) -> Diff:
    """B - A of the medians with a percentile-bootstrap 95 % CI, each side resampled on its own."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    d = Diff(n_a=len(a), n_b=len(b))
    if len(a):
        d.median_a = float(np.median(a))
    if len(b):
        d.median_b = float(np.median(b))
    if len(a) and len(b):
        d.diff = d.median_b - d.median_a
        d.diff_pct = 100 * d.diff / d.median_a if d.median_a else float("nan")
    if min(len(a), len(b)) < min_n:
        return d
    d.enough = True
    rng = np.random.default_rng(seed)
    ba, bb = bootstrap_median(a, n_boot, rng), bootstrap_median(b, n_boot, rng)
    delta = bb - ba
    d.ci = (float(np.quantile(delta, 0.025)), float(np.quantile(delta, 0.975)))
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = 100 * delta / np.where(ba == 0, np.nan, ba)
    if np.isfinite(pct).any():
        d.ci_pct = (float(np.nanquantile(pct, 0.025)), float(np.nanquantile(pct, 0.975)))
    d.significant = d.ci[0] > 0 or d.ci[1] < 0
    return d


@dataclass
class Comparison:
    """Pre-allocated outputs on vs off for one model: medians, saving and its 95 % CI, a verdict."""
    model: str
    n_off: int = 0
    n_on: int = 0
    median_off_ms: float = float("nan")
    median_on_ms: float = float("nan")
    saved_ms: float = float("nan")
    saved_pct: float = float("nan")
    ci_ms: tuple = (float("nan"), float("nan"))
    ci_pct: tuple = (float("nan"), float("nan"))
    significant: bool = False
    shapes: list = field(default_factory=list)  # input shapes the comparison was restricted to
    verdict: str = ""


def _fmt_ms(v: float) -> str:
    v = abs(v)
    return f"{v:.2f}" if v >= 0.1 else f"{v:.3f}" if v >= 0.01 else f"{v:.4f}"


def _fmt_pcts(*vals: float) -> list[str]:
    d = 0 if max(abs(v) for v in vals) >= 5 else 1
    return [f"{v:.{d}f}" for v in vals]


def compare_modes(lat: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED,
                  min_n: int = MIN_N) -> list[Comparison]:
    """Per model, median latency with pre-allocated outputs off minus on, with a 95 % bootstrap CI.

    Restricted to the input shape run most in both modes, so a shape mix that differs between the
    two runs does not pose as a pre-allocation effect (shape changes are reported on their own).
    """
    res = []
    if lat.empty:
        return res
    ok = lat[~lat["excluded"].astype(bool) & lat["mode"].isin(["on", "off"])]
    for model in sorted(lat["model"].dropna().unique()):
        m = ok[ok["model"] == model]
        c = Comparison(model=model)
        counts = m.groupby(["input_shapes", "mode"], dropna=False).size().unstack(fill_value=0)
        both = counts[(counts.get("on", 0) >= min_n) & (counts.get("off", 0) >= min_n)] \
            if {"on", "off"} <= set(counts.columns) else counts.iloc[:0]
        if len(both):
            shape = both.min(axis=1).idxmax()
            if len(counts) > 1:
                c.shapes = [shape]
            m = m[m["input_shapes"] == shape] if not pd.isna(shape) else m[m["input_shapes"].isna()]
        off = m.loc[m["mode"] == "off", "latency_ns"].to_numpy(float) / 1e6
        on = m.loc[m["mode"] == "on", "latency_ns"].to_numpy(float) / 1e6
        d = diff_medians(off, on, n_boot=n_boot, seed=seed, min_n=min_n)  # on - off: minus the saving
        c.n_off, c.n_on, c.median_off_ms, c.median_on_ms = d.n_a, d.n_b, d.median_a, d.median_b
        if not d.enough:
            c.verdict = _no_comparison(c, min_n)
            res.append(c)
            continue
        c.saved_ms, c.saved_pct = -d.diff, -d.diff_pct
        c.ci_ms, c.ci_pct = (-d.ci[1], -d.ci[0]), (-d.ci_pct[1], -d.ci_pct[0])
        c.significant = d.significant
        c.verdict = verdict(c)
        res.append(c)
    return res


def _no_comparison(c: Comparison, min_n: int) -> str:
    if c.n_on == 0 and c.n_off == 0:
        return "no inference with engine calls to compare"
    if c.n_on == 0:
        return (f"pre-allocated outputs were off in all {c.n_off} measured inferences: no comparison "
                f"(run some with torch_tensorrt.runtime.enable_pre_allocated_outputs to compare)")
    if c.n_off == 0:
        return f"pre-allocated outputs were on in all {c.n_on} measured inferences: no comparison"
    return (f"too few inferences to compare pre-allocated outputs on ({c.n_on}) and off ({c.n_off}); "
            f"need at least {min_n} of each with the same input shape")


def verdict(c: Comparison) -> str:
    """A plain sentence: what pre-allocated outputs did, with the 95 % CI in percent."""
    on = f", on inputs {c.shapes[0]}" if c.shapes else ""
    if c.significant:
        lo, hi = sorted(abs(v) for v in c.ci_pct)  # both bounds have the sign of the effect
        p, lo, hi = _fmt_pcts(abs(c.saved_pct), lo, hi)
        if c.saved_ms > 0:
            return f"pre-allocated outputs saved {_fmt_ms(c.saved_ms)} ms per inference ({p} %, CI {lo}\u2013{hi} %){on}"
        return f"pre-allocated outputs cost {_fmt_ms(c.saved_ms)} ms more per inference ({p} %, CI {lo}\u2013{hi} %){on}"
    lo, hi = _fmt_pcts(*c.ci_pct)
    return (f"no significant difference between pre-allocated outputs on and off "
            f"(saved {c.saved_ms:+.3f} ms, CI {lo} to {hi} %){on}")


# -- per-subgraph table ------------------------------------------------------------------------------
SUBGRAPH_COLUMNS = ["model", "subgraph", "kind", "runtime", "calls", "gpu_ms_total", "gpu_us_median",
                    "host_us_median", "enqueue_us_median", "allocs", "alloc_ms_total", "hidden_ms_total",
                    "exposed_ms_total", "bytes_total", "break_cost_us_per_inference"]


def _dur(d: pd.DataFrame, start: str, end: str) -> pd.Series:
    return (d[end].astype("Float64") - d[start].astype("Float64")).astype(float)


def break_costs(df: pd.DataFrame, gaps: pd.DataFrame, infs: pd.DataFrame) -> pd.DataFrame:
    """Per fallback subgraph: mean cost per inference of the graph break = its GPU time (host time
    without GPU times) plus the GPU idle gaps right before and after it."""
    cols = ["model", "subgraph", "inferences", "fallback_us", "gaps_us", "break_cost_us_per_inference"]
    fb = df[(df["event"] == "fallback") & (df["inference"] >= 0)]
    if fb.empty:
        return pd.DataFrame(columns=cols)
    ok = infs.loc[~infs["excluded"], overlap.KEY]
    fb = fb.merge(ok, on=overlap.KEY)
    gpu = _dur(fb, "gpu_start_ns", "gpu_end_ns")
    fb = fb.assign(_t=gpu.fillna(_dur(fb, "host_start_ns", "host_end_ns")))
    per = fb.groupby(["model", "subgraph"] + ["pid", "inference"], sort=False)["_t"].sum().reset_index()
    if len(gaps):
        g = gaps[~gaps["excluded"]]
        parts = [g.rename(columns={side: "subgraph"})[["model", "subgraph", "pid", "inference", "gap_ns"]]
                 for side in ("before", "after")]
        gsum = pd.concat(parts).groupby(["model", "subgraph", "pid", "inference"])["gap_ns"].sum()
        per = per.merge(gsum.reset_index(), on=["model", "subgraph", "pid", "inference"], how="left")
    else:
        per["gap_ns"] = 0.0
    per["gap_ns"] = per["gap_ns"].fillna(0.0)
    out = per.groupby(["model", "subgraph"], sort=False).agg(
        inferences=("_t", "size"), fallback_us=("_t", "mean"), gaps_us=("gap_ns", "mean")).reset_index()
    out["fallback_us"] /= 1e3
    out["gaps_us"] /= 1e3
    out["break_cost_us_per_inference"] = out["fallback_us"] + out["gaps_us"]
    return out[cols]


def subgraph_table(df: pd.DataFrame, allocs: pd.DataFrame, breaks: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, subgraph): calls, GPU and host time, allocations hidden/exposed, bytes, and
    for fallbacks the cost of the graph break. Excluded rows count as calls but not in the times."""
    d = df[df["subgraph_kind"].isin(["engine", "fallback"])]
    if d.empty:
        return pd.DataFrame(columns=SUBGRAPH_COLUMNS)
    keep = ~d["exclude"].fillna(False).astype(bool)
    main = d[((d["event"] == "call") & (d["subgraph_kind"] == "engine")) | (d["event"] == "fallback")]
    timed = d[keep & d["event"].isin(["exec", "fallback"])]
    timed = timed.assign(_gpu=_dur(timed, "gpu_start_ns", "gpu_end_ns"),
                         _enq=np.where(timed["event"] == "exec", _dur(timed, "host_start_ns", "host_end_ns"), np.nan))
    mk = main[keep.loc[main.index]]
    mk = mk.assign(_host=_dur(mk, "host_start_ns", "host_end_ns"))
    keys = ["model", "subgraph"]
    out = main.groupby(keys, sort=False).agg(kind=("subgraph_kind", "first"), runtime=("runtime", "first"),
                                              calls=("event", "size"))
    tg = timed.groupby(keys, sort=False)
    t = pd.DataFrame({"gpu_ms_total": tg["_gpu"].sum(min_count=1) / 1e6,
                      "gpu_us_median": tg["_gpu"].median() / 1e3, "enqueue_us_median": tg["_enq"].median() / 1e3})
    h = (mk.groupby(keys, sort=False)["_host"].median() / 1e3).rename("host_us_median").to_frame()
    a = allocs[~allocs["exclude"].fillna(False).astype(bool)]
    a = a.assign(_b=a["bytes"].astype("Float64").fillna(0).astype(float))
    ag = a.groupby(keys, sort=False)
    al = ag.agg(allocs=("alloc_ns", "size"), alloc_ms_total=("alloc_ns", "sum"), bytes_total=("_b", "sum"))
    al["hidden_ms_total"] = ag["hidden_ns"].sum(min_count=1)
    al["exposed_ms_total"] = ag["exposed_ns"].sum(min_count=1)
    for c in ("alloc_ms_total", "hidden_ms_total", "exposed_ms_total"):
        al[c] = al[c] / 1e6
    out = out.join(t).join(h).join(al)
    if len(breaks):
        out = out.join(breaks.set_index(keys)["break_cost_us_per_inference"])
    else:
        out["break_cost_us_per_inference"] = np.nan
    out["allocs"] = out["allocs"].fillna(0).astype(int)
    for c in ("alloc_ms_total", "bytes_total"):
        out[c] = out[c].fillna(0.0)
    out = out.reset_index()
    out["_o"] = out["subgraph"].str.extract(r"_(\d+)$", expand=False).astype(float)
    return out.sort_values(["model", "_o", "subgraph"]).drop(columns="_o").reset_index(drop=True)[SUBGRAPH_COLUMNS]


# -- recommendations -----------------------------------------------------------------------------------
@dataclass
class Results:
    """Everything the report shows, each table computed once from the timeline."""
    infs: pd.DataFrame
    latency: pd.DataFrame
    by_mode: pd.DataFrame
    by_shape: pd.DataFrame
    comparisons: list
    allocs: pd.DataFrame
    exposure: pd.DataFrame
    gaps: pd.DataFrame
    gap_summary: pd.DataFrame
    changes: pd.DataFrame
    frequency: pd.DataFrame
    shape_advice: str | None
    breaks: pd.DataFrame
    subgraphs: pd.DataFrame
    recommendations: pd.DataFrame
    gpu_times: bool


REC_COLUMNS = ["model", "action", "why", "gain_ms", "gain_pct", "basis"]


def recommendations(r: Results) -> pd.DataFrame:
    """Actions worth taking, each with its measured or estimated gain per inference, largest first."""
    recs = []
    models = sorted(set(r.latency["model"].dropna()) | set(r.subgraphs["model"].dropna()))
    for model in models:
        lat = r.latency[(r.latency["model"] == model) & ~r.latency["excluded"]]
        base_ns = float(lat["latency_ns"].median()) if len(lat) else float("nan")

        def worth(gain_ns: float, share: float) -> bool:
            return gain_ns >= MIN_GAIN_NS and (np.isnan(base_ns) or gain_ns >= share * base_ns)

        def add(action, why, gain_ns, basis, gain_pct=None):
            if gain_pct is None:
                gain_pct = 100 * gain_ns / base_ns if base_ns == base_ns and base_ns else np.nan
            recs.append({"model": model, "action": action, "why": why, "gain_ms": gain_ns / 1e6,
                         "gain_pct": gain_pct, "basis": basis})

        comp = next((c for c in r.comparisons if c.model == model), None)
        modes = set(lat["mode"])
        if comp is not None and comp.significant:
            if comp.saved_ms > 0:
                add("Keep pre-allocated outputs on", f"measured: {comp.verdict}.", comp.saved_ms * 1e6,
                    "measured (on vs off, 95 % CI)", comp.saved_pct)
            else:
                add("Turn pre-allocated outputs off", f"measured: {comp.verdict}.", -comp.saved_ms * 1e6,
                    "measured (on vs off, 95 % CI)", -comp.saved_pct)
        elif "on" not in modes and "off" in modes:
            ex = r.exposure[(r.exposure["model"] == model) & (r.exposure["mode"] == "off")]
            if r.gpu_times:
                gain, basis = float(ex["exposed_ns_per_inference"].sum()), \
                    "estimated: exposed allocation time per inference (upper bound)"
            else:
                gain, basis = float(ex["alloc_ns_per_inference"].sum()), \
                    "upper bound: allocation host time (no GPU times in this capture)"
            if worth(gain, SIGNIFICANT_SHARE):
                add("Turn on pre-allocated outputs: torch_tensorrt.runtime.enable_pre_allocated_outputs(model)",
                    f"output allocation keeps the GPU waiting {gain / 1e3:.1f} \u00b5s per inference; with "
                    "pre-allocated outputs it happens after the enqueue, while the GPU runs.", gain, basis)
        # shape changes with pre-allocation on
        fq = r.frequency[(r.frequency["model"] == model) & (r.frequency["kind"] == "engine")]
        pre_calls = float(fq["prealloc_calls"].sum()) if len(fq) else 0.0
        if pre_calls:
            share = float(fq["prealloc_changes"].sum()) / pre_calls
            ch = r.changes[(r.changes["model"] == model) & r.changes["outputs_discarded"]]
            n_on = int(((r.infs["model"] == model) & (r.infs["mode"] == "on") & ~r.infs["excluded"]).sum())
            cost = ch["realloc_exposed_ns"].fillna(ch["realloc_ns"]).sum()
            gain = float(cost) / max(n_on, 1)
            if share > shapes.FREQUENT and worth(gain, SIGNIFICANT_SHARE):
                add("Keep input shapes fixed (pad to a few sizes), or turn pre-allocated outputs off",
                    f"input shapes changed on {share:.0%} of engine calls with pre-allocated outputs on; each "
                    f"change threw the buffer away and allocated again before execution "
                    f"({len(ch)} forced re-allocations).", gain,
                    "estimated: forced re-allocation time per inference" +
                    ("" if r.gpu_times else " (host time, no GPU times)"))
        # graph breaks
        for _, b in r.breaks[r.breaks["model"] == model].iterrows():
            gain = float(b["break_cost_us_per_inference"]) * 1e3
            if worth(gain, BREAK_SHARE):
                add(f"Remove the graph break at {b['subgraph']} (ops PyTorch runs between engines)",
                    f"the fallback takes {b['fallback_us']:.1f} \u00b5s and the GPU idles {b['gaps_us']:.1f} "
                    "\u00b5s around it per inference; the tutorial says reducing graph breaks should be "
                    "prioritized.", gain, "estimated: fallback time plus GPU gaps (upper bound)")
        # GPU idle while Python runs
        gs = r.gap_summary[(r.gap_summary["model"] == model) & r.gap_summary["mode"].isin(list(modes))]
        if len(gs):
            py = float(gs.groupby("mode")["python_ns_per_inference"].sum().min())
            if worth(py, PYTHON_SHARE):
                add("Cut Python overhead between engines (CUDA graphs: torch_tensorrt.runtime.enable_cudagraphs)",
                    f"the GPU idles {py / 1e3:.1f} \u00b5s per inference while the host runs Python between "
                    "subgraphs (no allocation, fallback or enqueue recorded then).", py,
                    "estimated: GPU idle time with only Python on the host")
    out = pd.DataFrame(recs, columns=REC_COLUMNS)
    return out.sort_values("gain_ms", ascending=False, kind="stable").reset_index(drop=True)


def analyse(df: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED) -> Results:
    """Run every analysis once over a timeline."""
    infs = overlap.inferences(df)
    lat = inference_latency(df, infs)
    allocs = overlap.alloc_overlap(df)
    gaps = overlap.gpu_gaps(df, infs)
    breaks = break_costs(df, gaps, infs)
    freq = shapes.change_frequency(df)
    r = Results(
        infs=infs, latency=lat, by_mode=latency_summary(lat, ("model", "mode")),
        by_shape=latency_summary(lat, ("model", "mode", "input_shapes")),
        comparisons=compare_modes(lat, n_boot, seed), allocs=allocs,
        exposure=overlap.exposed_per_inference(df, allocs, infs), gaps=gaps,
        gap_summary=overlap.gap_summary(gaps, infs), changes=shapes.shape_changes(df, allocs),
        frequency=freq, shape_advice=shapes.advice(freq), breaks=breaks,
        subgraphs=subgraph_table(df, allocs, breaks), recommendations=pd.DataFrame(columns=REC_COLUMNS),
        gpu_times=overlap.has_gpu_times(df))
    r.recommendations = recommendations(r)
    return r
