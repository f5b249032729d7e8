"""`latency_summary` groups without pandas' groupby (memory at 14 M inferences): the figures, dtypes
and group order of `groupby(by, sort=True, dropna=False, observed=True)`, which the test computes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trtprof.analysis.latency import latency_summary


def _pandas(lat: pd.DataFrame, by) -> pd.DataFrame:
    by = list(by)
    ok = lat.loc[~lat["excluded"].to_numpy(bool), by + ["latency_ns"]]
    g = ok.groupby(by, sort=True, dropna=False, observed=True)["latency_ns"]
    out = pd.DataFrame({"n": g.size(), "median_ms": g.median() / 1e6, "p10_ms": g.quantile(0.1) / 1e6,
                        "p90_ms": g.quantile(0.9) / 1e6}).reset_index()
    return out[by + ["n", "median_ms", "p10_ms", "p90_ms"]]


@pytest.mark.parametrize("seed", range(12))
def test_summary_is_pandas_groupby(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    lat = pd.DataFrame({
        "model": pd.array(np.array(["m1", "m0", "zz", "<b>"])[rng.integers(0, int(rng.integers(1, 5)), n)], dtype="string"),
        "mode": np.array(["on", "off", "mixed"], dtype=object)[rng.integers(0, 3, n)],
        "input_shapes": pd.array(np.array(["(1,128)", "(8,128)", None], dtype=object)[rng.integers(0, 3, n)], dtype="string"),
        "excluded": rng.random(n) < 0.1,
        "latency_ns": np.round(rng.exponential(1e6, n) / (1000 if seed % 3 == 0 else 1)) * (1000 if seed % 3 == 0 else 1)})
    lat.loc[rng.random(n) < 0.05, "latency_ns"] = np.nan  # counted in n, left out of the figures
    if seed % 2:  # the chunked report's per-inference tables: labels as categories
        for c in ("model", "mode", "input_shapes"):
            lat[c] = pd.Categorical(lat[c])
    for by in (("model", "mode"), ("model", "mode", "input_shapes")):
        pd.testing.assert_frame_equal(latency_summary(lat, by), _pandas(lat, by), check_exact=True)


def test_group_without_latency_and_empty_input():
    lat = pd.DataFrame({"model": ["a", "a", "b"], "mode": ["on", "on", "off"], "excluded": [False, False, False],
                        "latency_ns": [np.nan, np.nan, 3e6]})
    got = latency_summary(lat)
    assert list(got["n"]) == [2, 1] and np.isnan(got.loc[0, "median_ms"]) and got.loc[1, "p90_ms"] == 3.0
    assert latency_summary(lat.iloc[:0]).empty


def _pandas_compare(lat, n_boot, min_n):
    """`compare_modes` as it was written on pandas (copies split by model, each side sorted by
    `diff_medians`): the reference the grouped form is held to."""
    from trtprof.analysis.bootstrap import diff_medians
    from trtprof.analysis.prealloc import TAIL_QUANTILES, Comparison, Tail, _no_comparison, _shape_note, verdict

    res = []
    ok = lat.loc[(~lat["excluded"].astype(bool) & lat["mode"].isin(["on", "off"])).to_numpy(),
                 ["model", "input_shapes", "mode", "latency_ns"]]
    per_model = dict(iter(ok.groupby("model", sort=False, dropna=True, observed=True)))
    for model in sorted(lat["model"].dropna().unique()):
        m = per_model.get(model, ok.iloc[:0])
        c = Comparison(model=model)
        counts = m.groupby(["input_shapes", "mode"], dropna=False, observed=True).size().unstack(fill_value=0)
        both = counts[(counts.get("on", 0) >= min_n) & (counts.get("off", 0) >= min_n)] \
            if {"on", "off"} <= set(counts.columns) else counts.iloc[:0]
        if len(both):
            shape = both.min(axis=1).idxmax()
            if len(counts) > 1:
                c.shapes, c.shape_note = [shape], _shape_note(counts, shape, min_n)
            m = m[m["input_shapes"] == shape] if not pd.isna(shape) else m[m["input_shapes"].isna()]
        off = m.loc[m["mode"] == "off", "latency_ns"].to_numpy(float) / 1e6
        on = m.loc[m["mode"] == "on", "latency_ns"].to_numpy(float) / 1e6
        d = diff_medians(off, on, n_boot=n_boot, min_n=min_n)
        c.n_off, c.n_on, c.median_off_ms, c.median_on_ms = d.n_a, d.n_b, d.median_a, d.median_b
        if not d.enough:
            c.verdict = _no_comparison(c, min_n)
            res.append(c)
            continue
        c.saved_ms, c.saved_pct = -d.diff, -d.diff_pct
        c.ci_ms, c.ci_pct = (-d.ci[1], -d.ci[0]), (-d.ci_pct[1], -d.ci_pct[0])
        c.significant = d.significant
        for q in TAIL_QUANTILES:
            t = diff_medians(off, on, n_boot=n_boot, min_n=min_n, q=q)
            c.tails.append(Tail(q, t.median_a, t.median_b, -t.diff, (-t.ci[1], -t.ci[0]), t.significant))
        c.verdict = verdict(c)
        res.append(c)
    return res


def _random_lat(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4000))
    lat = pd.DataFrame({
        "model": np.array(["m1", "m0", "zz", "<b>"])[rng.integers(0, int(rng.integers(1, 5)), n)],
        "mode": np.array(["on", "off", "mixed", "on", "off"], dtype=object)[rng.integers(0, 5, n)],
        "input_shapes": np.array(["(1,128)", "(8,128)", None], dtype=object)[rng.integers(0, int(rng.integers(1, 4)), n)],
        "excluded": rng.random(n) < 0.1,
        "latency_ns": np.round(rng.exponential(1e6, n))})
    lat.loc[rng.random(n) < 0.05, "latency_ns"] = np.nan
    if seed % 2:
        for c in ("model", "mode", "input_shapes"):
            lat[c] = pd.Categorical(lat[c])
    return lat


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("seed", range(10))
def test_compare_modes_is_the_pandas_form(seed):
    """The grouped `compare_modes` gives every figure, CI and sentence of the pandas form, exactly."""
    from dataclasses import asdict

    from trtprof.analysis.prealloc import compare_modes

    lat = _random_lat(seed)
    min_n = 5 if seed % 3 else 400
    got, want = compare_modes(lat, 300, min_n=min_n), _pandas_compare(lat, 300, min_n)
    assert [c.model for c in got] == [c.model for c in want]
    for g, w in zip(got, want):
        assert _same(asdict(g), asdict(w)), (asdict(g), asdict(w))
    assert any(c.tails for c in got) or min_n == 400 or len(lat) < 50


@pytest.mark.parametrize("seed", range(6))
def test_recommendation_medians_are_pandas(seed):
    """The per-model medians and modes recommendations read, against pandas' groupby."""
    from types import SimpleNamespace

    from trtprof.analysis.recommend import _per_inference

    lat = _random_lat(seed)
    r = SimpleNamespace(latency=lat, infs=lat)
    base, modes, _ = _per_inference(r)
    inc = lat.loc[~lat["excluded"].to_numpy(bool)]
    want = inc.groupby("model", sort=False, observed=True)["latency_ns"].median().to_dict()
    assert base.keys() == want.keys() and all(_same(float(base[k]), float(want[k])) for k in want)
    want_modes: dict = {}
    for model, mode in inc.groupby(["model", "mode"], sort=False, observed=True).size().index:
        want_modes.setdefault(model, set()).add(mode)
    assert modes == want_modes


@pytest.mark.parametrize("seed", range(8))
def test_group_sizes_are_pandas_sizes(seed):
    """`groups.group_sizes`: the groups (a missing key left out), their order, dtypes and sizes of
    pandas' `groupby(by, observed=True).size()` on the masked rows."""
    from trtprof.analysis.groups import group_sizes

    lat = _random_lat(seed)
    mask = ~lat["excluded"].to_numpy(bool)
    for by in (["model", "mode"], ["model", "mode", "input_shapes"], ["input_shapes"]):
        want = lat[mask].groupby(by, observed=True).size().rename("size").reset_index()
        pd.testing.assert_frame_equal(group_sizes(lat, by, mask), want, check_exact=True)
    assert len(group_sizes(lat.iloc[:0], ["model"])) == 0
