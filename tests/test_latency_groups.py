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
