"""Two captures side by side: did B get faster or slower than A, end to end and per subgraph?

Why this needs more than two medians: block-to-block drift on a GPU is often as large as the effect
being measured, so every difference comes with a 95 % bootstrap confidence interval, resampling each
capture independently (they are separate runs) with a fixed seed, via `bootstrap.bootstrap_median`.
A difference is called significant only when its interval excludes zero.

What is compared is explicit and recorded in `Selection`: inferences not marked excluded, of one
pre-alloc mode or all, and by default only those whose input shapes occur in both captures (a shape
that ran in one capture only would pose as a speed difference). Subgraph rows follow the inferences
they belong to; rows outside any inference have no mode or input shape of their own and are kept
under mode "all", or by their own pre-alloc flag.

Sign convention everywhere: difference = B - A, so a negative difference means B is faster.
Stateless: timelines in, dataclasses and DataFrames out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trtprof.analysis import overlap
from trtprof.analysis.partition import partition_diff
from trtprof.analysis.bootstrap import MIN_N, N_BOOT, SEED, Diff, diff_medians, fmt_ms, fmt_pcts
from trtprof.analysis.latency import dur, first_inference_kept, inference_latency
from trtprof.errors import UsageError
from trtprof.timeline import schema

if TYPE_CHECKING:  # the container only: analysis never depends on the store
    from trtprof.timeline.store import Capture

MODES = ("all", "on", "off")
SHAPES_COMMON, SHAPES_ALL = "common", "all"
ENV_KEYS = ("gpu", "driver", "cuda", "torch", "torch_tensorrt", "tensorrt", "tensorrt_backend", "python")


@dataclass
class Selection:
    """What was compared, in words a reader can check."""
    mode: str = "all"
    shape: str = SHAPES_COMMON
    shapes: list = field(default_factory=list)  # input shapes kept (empty: no restriction)
    dropped_shapes_a: int = 0  # included inferences left out because of their input shape
    dropped_shapes_b: int = 0

    def describe(self) -> str:
        mode = {"all": "every pre-alloc mode", "on": "pre-allocated outputs on",
                "off": "pre-allocated outputs off"}[self.mode]
        if self.shapes:
            shp = "input shapes " + ", ".join(self.shapes)
            if self.shape == SHAPES_COMMON:
                shp += " (those run in both captures)"
        else:
            shp = "every input shape"
        dropped = ""
        if self.dropped_shapes_a or self.dropped_shapes_b:
            dropped = (f"; left out for their input shape: {self.dropped_shapes_a} inferences of A, "
                       f"{self.dropped_shapes_b} of B")
        return f"inferences with {mode}, {shp}, excluded ones (cold start, first after a mode flip, CUDA-graph warm-up, raised) left out{dropped}"


@dataclass
class ModelDiff:
    model: str
    latency: Diff  # ms per inference
    by_shape: pd.DataFrame
    verdict: str


@dataclass
class CaptureDiff:
    selection: Selection
    models: list  # ModelDiff per model present in both
    subgraphs: pd.DataFrame  # SUBGRAPH_COLUMNS
    models_only_a: list
    models_only_b: list
    gpu_times_a: bool
    gpu_times_b: bool
    latency_a: pd.DataFrame  # the selected inferences' latencies (latency.inference_latency rows; read chunk by
    # chunk: labels as categories, numbers in 32 bits, without host_ns / gpu_ns, pids offset per rank)
    latency_b: pd.DataFrame
    warnings: list = field(default_factory=list)
    partition: list = field(default_factory=list)  # how the partitions differ, one phrase per model (empty: same)
    environment: pd.DataFrame | None = None  # key, a, b for the keys that differ
    runtimes_a: list = field(default_factory=list)  # the engine runtimes each capture ran (every row)
    runtimes_b: list = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if not self.models:
            return "no model ran in both captures: no end-to-end comparison (see the subgraph table)"
        if len(self.models) == 1:
            return self.models[0].verdict
        return "; ".join(f"{m.model}: {m.verdict}" for m in self.models)


# -- selecting inferences ------------------------------------------------------------------------------
def _select(lat: pd.DataFrame, mode: str) -> pd.DataFrame:
    ok = lat[~lat["excluded"].astype(bool)] if len(lat) else lat
    return ok if mode == "all" else ok[ok["mode"] == mode]


UNKNOWN_SHAPE = "(unknown)"


def _shape_key(s: pd.Series) -> pd.Series:
    """Input shapes as text, a missing one "(unknown)". Categories stay categories (a chunked capture's
    14 M inferences: one string per distinct shape, not one per inference)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        c = s.cat.remove_unused_categories()
        c = c.cat.rename_categories([str(v) for v in c.cat.categories])
        if c.isna().any():
            if UNKNOWN_SHAPE not in c.cat.categories:
                c = c.cat.add_categories(UNKNOWN_SHAPE)
            c = c.fillna(UNKNOWN_SHAPE)
        return c
    return s.astype(object).where(s.notna(), UNKNOWN_SHAPE).astype(str)


def _keys(k: pd.Series) -> set:
    return set(k.unique())


def _counts(keys: pd.Series, limit: int = 6, width: int = 60) -> str:
    """'off 59, on 20': each value and how often, the most frequent first, at most `limit` of them."""
    vc = keys.value_counts()
    vc = vc[vc > 0]  # categories no value has
    if vc.empty:
        return "none"
    items = [f"{k if len(k) <= width else k[:width - 1] + chr(0x2026)} ({n})" for k, n in vc.head(limit).items()]
    return ", ".join(items) + (f" and {len(vc) - limit} more" if len(vc) > limit else "")


def _check_mode(lat_a: pd.DataFrame, lat_b: pd.DataFrame, mode: str) -> None:
    """--mode on / off where a capture has no inference in that mode compares nothing: a usage error
    that says which modes each capture has."""
    if mode == "all":
        return
    missing = [side for side, lat in (("A", lat_a), ("B", lat_b)) if not (_select(lat, mode)["mode"] == mode).any()]
    if missing:
        have = "; ".join(f"{side}: {_counts(_select(lat, 'all')['mode'].astype(str))}"
                         for side, lat in (("A", lat_a), ("B", lat_b)))
        raise UsageError(f"--mode {mode}: {' and '.join(missing)} ha{'s' if len(missing) == 1 else 've'} no "
                         f"inference with pre-allocated outputs {mode} (modes of the included inferences, "
                         f"{have}); use --mode all or the mode both captures ran")


def _nospace(s: str) -> str:
    return "".join(str(s).split())


def select(lat_a: pd.DataFrame, lat_b: pd.DataFrame, mode: str = "all",
           shape: str = SHAPES_COMMON) -> tuple[pd.DataFrame, pd.DataFrame, Selection]:
    """The inferences of each side that are compared, and the Selection that says which.

    shape: "common" (input shapes run in both captures), "all" (no restriction), or one shape
    string such as "(1,128);(1,128)" (spaces ignored). A mode or a shape that no compared inference
    of either capture ran with is a UsageError naming those that did.
    """
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    _check_mode(lat_a, lat_b, mode)
    a, b = _select(lat_a, mode), _select(lat_b, mode)
    sel = Selection(mode=mode, shape=shape)
    ka, kb = _shape_key(a["input_shapes"]), _shape_key(b["input_shapes"])
    if shape == SHAPES_ALL:
        keep = None
    elif shape == SHAPES_COMMON:
        sa, sb = _keys(ka), _keys(kb)
        keep = sa & sb if (sa != sb and sa and sb) else None
        if keep is not None:
            sel.shapes = sorted(keep)
    else:
        keep = {k for k in _keys(ka) | _keys(kb) if _nospace(k) == _nospace(shape)}
        if not keep:
            raise UsageError(f"--shape {shape}: no compared inference ran with this input shape; shapes "
                             f"(inferences) in A: {_counts(ka)}; in B: {_counts(kb)}")
        sel.shapes = sorted(keep)
    if keep is not None:
        ma, mb = ka.isin(keep), kb.isin(keep)
        sel.dropped_shapes_a, sel.dropped_shapes_b = int((~ma).sum()), int((~mb).sum())
        a, b = a[ma.to_numpy()], b[mb.to_numpy()]
    return a, b, sel


# -- end to end -----------------------------------------------------------------------------------------
def _fmt_ci(lo: float, hi: float) -> tuple[str, str]:
    lo, hi = sorted((abs(lo), abs(hi)))
    return tuple(fmt_pcts(lo, hi))


def verdict(d: Diff, min_n: int = MIN_N) -> str:
    """One sentence: how much faster or slower B is than A per inference, or that it is not."""
    if not d.enough:
        return (f"too few inferences to compare (A: {d.n_a}, B: {d.n_b}; need at least {min_n} on each side "
                "with the selected mode and input shapes)")
    if d.significant:
        p = fmt_pcts(abs(d.diff_pct))[0]
        lo, hi = _fmt_ci(*d.ci_pct)
        way = "faster" if d.diff < 0 else "slower"
        return (f"B is {fmt_ms(d.diff)} ms ({p} %, CI {lo}\u2013{hi} %) {way} per inference than A "
                f"(median {d.median_b:.3f} vs {d.median_a:.3f} ms)")
    lo, hi = fmt_pcts(*d.ci_pct)
    return (f"no significant difference (B \u2212 A {d.diff:+.3f} ms, CI {lo} to {hi} %; "
            f"median {d.median_b:.3f} vs {d.median_a:.3f} ms)")


BY_SHAPE_COLUMNS = ["input_shapes", "n_a", "n_b", "median_a_ms", "median_b_ms", "diff_ms", "diff_pct",
                    "ci_lo_pct", "ci_hi_pct", "significant"]


def _by_shape(a: pd.DataFrame, b: pd.DataFrame, n_boot: int, seed: int, min_n: int) -> pd.DataFrame:
    ka, kb = _shape_key(a["input_shapes"]), _shape_key(b["input_shapes"])
    rows = []
    for s in sorted(_keys(ka) | _keys(kb)):
        d = diff_medians(a.loc[(ka == s).to_numpy(), "latency_ns"] / 1e6, b.loc[(kb == s).to_numpy(), "latency_ns"] / 1e6,
                         n_boot=n_boot, seed=seed, min_n=min_n)
        rows.append([s, d.n_a, d.n_b, d.median_a, d.median_b, d.diff, d.diff_pct, *d.ci_pct,
                     d.significant if d.enough else pd.NA])
    return pd.DataFrame(rows, columns=BY_SHAPE_COLUMNS).astype({"significant": "boolean"})


# -- per subgraph -------------------------------------------------------------------------------------
SUBGRAPH_COLUMNS = ["model", "subgraph", "kind", "kind_a", "kind_b", "status", "runtime_a", "runtime_b", "calls_a", "calls_b",
                    "calls_per_inf_a", "calls_per_inf_b"]
for _m in ("gpu", "host"):
    SUBGRAPH_COLUMNS += [f"{_m}_us_a", f"{_m}_us_b", f"{_m}_diff_us", f"{_m}_diff_pct", f"{_m}_ci_lo_pct",
                         f"{_m}_ci_hi_pct", f"{_m}_significant"]
SUBGRAPH_COLUMNS += ["allocs_per_inf_a", "allocs_per_inf_b", "alloc_us_per_inf_a", "alloc_us_per_inf_b",
                     "bytes_per_inf_a", "bytes_per_inf_b"]


def _rows_of(df: pd.DataFrame, chosen: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Engine/fallback rows of the chosen inferences, plus rows outside any inference (see module doc)."""
    d = df[df["subgraph_kind"].isin(["engine", "fallback"]) & schema.kept(df)]
    inside = d[d["inference"] >= 0].merge(chosen[overlap.KEY].drop_duplicates(), on=overlap.KEY)
    out = d[d["inference"] < 0]
    if mode != "all":
        pre = out["prealloc"].astype("boolean")
        out = out[(pre == (mode == "on")).fillna(False).astype(bool)]
    return pd.concat([inside, out], ignore_index=True)


def _per_call(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Host time per call (engine `call` / `fallback` rows) and GPU time per call (`exec` / `fallback`)."""
    keys = ["model", "subgraph"]
    main, timed = schema.call_rows(rows), schema.timed_rows(rows)
    m = main.assign(host_us=dur(main, "host_start_ns", "host_end_ns") / 1e3)
    t = timed.assign(gpu_us=dur(timed, "gpu_start_ns", "gpu_end_ns") / 1e3)
    return (m[keys + ["pid", "inference", "call", "subgraph_kind", "runtime", "host_us"]],
            t[keys + ["pid", "call", "gpu_us"]])


def _side(df: pd.DataFrame, chosen: pd.DataFrame, mode: str) -> dict:
    rows = _rows_of(df, chosen, mode)
    main, timed = _per_call(rows)
    keys = ["model", "subgraph"]
    n_inf = chosen.groupby("model", observed=True).size()
    info = main.groupby(keys, sort=False, observed=True).agg(kind=("subgraph_kind", "first"), runtime=("runtime", "first"),
                                              calls=("host_us", "size"))
    return {"info": info, "alloc": in_us(alloc_sums(rows)), "host": _Groups(main.groupby(keys, sort=False, observed=True)["host_us"]),
            "gpu": _Groups(timed.groupby(keys, sort=False, observed=True)["gpu_us"]), "n_inf": n_inf}


def alloc_sums(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (model, subgraph) of the allocation rows: how many, their host time (ns) and bytes. Sums of
    integer nanoseconds: exact in any order, so chunks add up to the whole (`compare_streamed`)."""
    al = rows[(rows["event"] == "alloc").to_numpy(dtype=bool, na_value=False)]
    al = al.assign(_ns=dur(al, "host_start_ns", "host_end_ns"), _b=al["bytes"].astype("Float64").fillna(0).astype(float))
    return al.groupby(["model", "subgraph"], sort=False, observed=True).agg(
        allocs=("_ns", "size"), alloc_ns=("_ns", "sum"), bytes=("_b", "sum"))


def in_us(alloc: pd.DataFrame) -> pd.DataFrame:
    """`alloc_sums` with the host time in microseconds (`alloc_us`), as the comparison reports it."""
    return alloc.assign(alloc_us=alloc["alloc_ns"] / 1e3).drop(columns="alloc_ns")


class _Groups:
    """A side's per-call values by (model, subgraph), as `diff_medians` takes them: `get(key)`.
    (The chunked comparison, `compare_streamed`, gives a dict of `counts.Counted` instead.)"""

    def __init__(self, groups):
        self.groups = groups

    def get(self, key, default=None):
        try:
            return self.groups.get_group(key).to_numpy(float)
        except KeyError:
            return default


def subgraph_diff(df_a: pd.DataFrame, df_b: pd.DataFrame, chosen_a: pd.DataFrame, chosen_b: pd.DataFrame,
                  mode: str = "all", n_boot: int = N_BOOT, seed: int = SEED,
                  min_n: int = MIN_N) -> pd.DataFrame:
    """One row per (model, subgraph) in either capture: calls, median GPU and host time per call with
    B - A and its CI, allocations per inference; status both / appeared (B only) / disappeared (A only).
    `kind` is A's kind where A ran the subgraph, else B's; kind_a / kind_b are each side's (None: absent).
    A significance is NA where no CI could be computed (the row is in one capture only, or too few calls).

    Per-inference figures divide by the compared inferences of the model (rows outside any inference
    have no inference to divide by: NaN for the model "")."""
    return sides_diff(_side(df_a, chosen_a, mode), _side(df_b, chosen_b, mode), n_boot, seed, min_n)


def sides_diff(sa: dict, sb: dict, n_boot: int = N_BOOT, seed: int = SEED, min_n: int = MIN_N) -> pd.DataFrame:
    """`subgraph_diff` from each side's summary (`_side`, or the chunked one of `compare_streamed`)."""
    keys = list(dict.fromkeys(list(sa["info"].index) + list(sb["info"].index)))
    none = np.zeros(0)
    out = []
    for key in keys:
        ia = sa["info"].loc[key] if key in sa["info"].index else None
        ib = sb["info"].loc[key] if key in sb["info"].index else None
        r = {"model": key[0], "subgraph": key[1], "kind": (ia if ia is not None else ib)["kind"],
             "kind_a": ia["kind"] if ia is not None else None, "kind_b": ib["kind"] if ib is not None else None,
             "status": "both" if ia is not None and ib is not None else "disappeared" if ib is None else "appeared",
             "runtime_a": ia["runtime"] if ia is not None else None,
             "runtime_b": ib["runtime"] if ib is not None else None,
             "calls_a": int(ia["calls"]) if ia is not None else 0, "calls_b": int(ib["calls"]) if ib is not None else 0}
        na, nb = float(sa["n_inf"].get(key[0], np.nan)), float(sb["n_inf"].get(key[0], np.nan))
        r["calls_per_inf_a"], r["calls_per_inf_b"] = r["calls_a"] / na, r["calls_b"] / nb
        for m in ("gpu", "host"):
            d = diff_medians(sa[m].get(key, none), sb[m].get(key, none), n_boot=n_boot, seed=seed, min_n=min_n)
            r.update({f"{m}_us_a": d.median_a, f"{m}_us_b": d.median_b, f"{m}_diff_us": d.diff,
                      f"{m}_diff_pct": d.diff_pct, f"{m}_ci_lo_pct": d.ci_pct[0], f"{m}_ci_hi_pct": d.ci_pct[1],
                      f"{m}_significant": d.significant if d.enough else pd.NA})
        for side, s, n in (("a", sa, na), ("b", sb, nb)):
            al = s["alloc"].loc[key] if key in s["alloc"].index else None
            present = (ia if side == "a" else ib) is not None
            for col, src in (("allocs_per_inf", "allocs"), ("alloc_us_per_inf", "alloc_us"), ("bytes_per_inf", "bytes")):
                r[f"{col}_{side}"] = (float(al[src]) if al is not None else 0.0) / n if present else np.nan
        out.append(r)
    res = pd.DataFrame(out, columns=SUBGRAPH_COLUMNS)
    for m in ("gpu", "host"):
        res[f"{m}_significant"] = res[f"{m}_significant"].astype("boolean")
    if res.empty:
        return res
    return schema.sort_subgraphs(res)


# -- the whole comparison -----------------------------------------------------------------------------
def environment_diff(meta_a: dict, meta_b: dict) -> pd.DataFrame:
    """The environment entries (GPU, driver, versions) that differ between two captures' metadata."""
    ea = meta_a.get("environment") if isinstance(meta_a.get("environment"), dict) else {}
    eb = meta_b.get("environment") if isinstance(meta_b.get("environment"), dict) else {}
    rows = [(k, ea.get(k), eb.get(k)) for k in ENV_KEYS if ea.get(k) != eb.get(k)]
    return pd.DataFrame(rows, columns=["key", "a", "b"])


def compare_timelines(df_a: pd.DataFrame, df_b: pd.DataFrame, *, mode: str = "all", shape: str = SHAPES_COMMON,
                      n_boot: int = N_BOOT, seed: int = SEED, min_n: int = MIN_N) -> CaptureDiff:
    """Compare timeline B against timeline A (see the module docstring for what is compared)."""
    lat_a, lat_b = inference_latency(df_a), inference_latency(df_b)
    chosen_a, chosen_b, sel = select(lat_a, lat_b, mode, shape)
    sides = (_side(df_a, chosen_a, mode), _side(df_b, chosen_b, mode))
    res = assemble(lat_a, lat_b, chosen_a, chosen_b, sel, sides,
                   (overlap.has_gpu_times(df_a), overlap.has_gpu_times(df_b)),
                   (engine_runtimes(df_a), engine_runtimes(df_b)), mode, n_boot, seed, min_n)
    cold = cold_mismatch(lat_a, lat_b)
    if cold:
        res.warnings.append(cold)
    return res


def cold_mismatch(lat_a: pd.DataFrame, lat_b: pd.DataFrame) -> str | None:
    """A warning when one capture leaves its first inference out (the cold start, trtprof since
    2026-12-07) and the other keeps it in its statistics (an older capture): the tails and means of
    the two sides then differ by that one inference."""
    (a_out, a_in), (b_out, b_in) = first_inference_kept(lat_a), first_inference_kept(lat_b)
    if (a_out and b_in) or (b_out and a_in):
        out, keep = ("A", "B") if a_out and b_in else ("B", "A")
        return (f"{out} leaves its first inference out of the statistics (the cold start) and {keep} keeps it "
                f"(a capture made before trtprof left it out): medians barely move, tails and means may")
    return None


def engine_runtimes(df: pd.DataFrame) -> list:
    """The runtimes of a timeline's engine rows (the compare page's header)."""
    return sorted(set(df.loc[(df["subgraph_kind"] == "engine").to_numpy(dtype=bool, na_value=False), "runtime"].dropna()))


def assemble(lat_a, lat_b, chosen_a, chosen_b, sel: Selection, sides: tuple, gpu: tuple, runtimes: tuple,
             mode: str, n_boot: int, seed: int, min_n: int) -> CaptureDiff:
    """The comparison from each side's per-inference latencies (only their models are read), the
    chosen ones and the per-subgraph summaries: what the whole timelines and the chunked captures
    (`compare_streamed`) share."""
    ma, mb = set(lat_a["model"].dropna()), set(lat_b["model"].dropna())
    models = []
    for model in sorted(ma & mb):
        a, b = chosen_a[chosen_a["model"] == model], chosen_b[chosen_b["model"] == model]
        d = diff_medians(a["latency_ns"] / 1e6, b["latency_ns"] / 1e6, n_boot=n_boot, seed=seed, min_n=min_n)
        models.append(ModelDiff(model, d, _by_shape(a, b, n_boot, seed, min_n), verdict(d, min_n)))
    subs = sides_diff(*sides, n_boot, seed, min_n)
    ga, gb = gpu
    res = CaptureDiff(selection=sel, models=models, subgraphs=subs, models_only_a=sorted(ma - mb),
                      models_only_b=sorted(mb - ma), gpu_times_a=ga, gpu_times_b=gb,
                      latency_a=chosen_a.reset_index(drop=True), latency_b=chosen_b.reset_index(drop=True),
                      runtimes_a=list(runtimes[0]), runtimes_b=list(runtimes[1]))
    res.partition = partition_diff(subs, sorted(ma & mb))
    if res.partition:
        res.warnings.append("the captures have different partitions (" + " | ".join(res.partition) + "): "
                            "subgraphs are matched by name, so compare per-subgraph rows with care; the "
                            "end-to-end difference includes the change of partition")
    if ga != gb:
        res.warnings.append(f"only {'A' if ga else 'B'} has GPU times: its latencies include GPU completion, the "
                            "other's are host times only, so the end-to-end difference is not like for like")
    eng = subs[(subs["kind"] == "engine") & (subs["status"] == "both")]
    moved = sorted({f"{a} \u2192 {b}" for a, b in zip(eng["runtime_a"], eng["runtime_b"]) if a != b})
    if moved:
        res.warnings.append(f"the Torch-TensorRT runtime differs ({', '.join(moved)}): engine GPU times are "
                            "measured differently (C++ runtime: around the execute_engine op on the caller "
                            "stream; Python runtime: around the enqueue on the engine stream), so compare "
                            "engine GPU times with care; end-to-end latency is measured the same way")
    if mode == "all":
        mix = [f"{side}: " + ", ".join(f"{k} {v}" for k, v in c["mode"].value_counts().sort_index().items() if v)
               for side, c in (("A", chosen_a), ("B", chosen_b)) if len(c)]
        share = [c["mode"].value_counts(normalize=True) for c in (chosen_a, chosen_b)]
        if len(chosen_a) and len(chosen_b) and \
                share[0].subtract(share[1], fill_value=0).abs().max() > 0.1:
            res.warnings.append("the pre-alloc modes ran in different proportions (" + "; ".join(mix) +
                                "): the difference mixes both; compare one mode with --mode on or --mode off")
    return res


def compare_captures(a: Capture, b: Capture, **kw) -> CaptureDiff:
    """compare_timelines on two loaded captures, plus the environment differences and status warnings."""
    return finish(compare_timelines(a.timeline, b.timeline, **kw), a, b)


def finish(res: CaptureDiff, a: Capture, b: Capture) -> CaptureDiff:
    """The environment differences and status warnings of the captures compared (`meta` and `complete`
    are all it reads of them)."""
    res.environment = environment_diff(a.meta, b.meta)
    for side, c in (("A", a), ("B", b)):
        if not c.complete:
            res.warnings.append(f"{side} is an incomplete capture "
                                f"({c.meta.get('incomplete_reason') or 'the run did not finish normally'})")
    if len(res.environment):
        res.warnings.append("the captures ran in different environments (" +
                            ", ".join(res.environment["key"]) + "): see the environment table")
    return res
