"""Do two captures run the same partition? Subgraphs are matched by name across captures, so a
per-subgraph comparison only says what it seems to when both split the model the same way.

Why its own check: a recompile with other settings can rename, merge or split engines, turn an engine
into a PyTorch fallback, or call a subgraph a different number of times per inference; each row of
the comparison then pairs different pieces of the graph, and the end-to-end difference includes the
change of partition. This reads the per-subgraph table of `compare.subgraph_diff` and says, per
model, what differs; the comparison carries it as a warning.
"""
from __future__ import annotations

import pandas as pd


def _names(names, limit: int = 5) -> str:
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _per_inf(subs: pd.DataFrame, side: str, kind: str) -> float:
    return float(subs.loc[subs[f"kind_{side}"] == kind, f"calls_per_inf_{side}"].sum())


def partition_diff(subs: pd.DataFrame, models) -> list[str]:
    """How the partition of each model run in both captures differs, one phrase per model that
    differs: subgraph names only in A or only in B, a name whose kind changed (engine / fallback), and
    engine and fallback calls per compared inference. Empty when every model's partition is the same."""
    out = []
    for model in models:
        s = subs[subs["model"] == model]
        parts = []
        for status, side in (("disappeared", "only in A"), ("appeared", "only in B")):
            names = s.loc[s["status"] == status, "subgraph"]
            if len(names):
                parts.append(f"subgraphs {side}: {_names(names)}")
        both = s[s["status"] == "both"]
        kinds = both[both["kind_a"] != both["kind_b"]]
        if len(kinds):
            parts.append("kind changed: " + _names(f"{n} ({a} \u2192 {b})" for n, a, b in
                                                   zip(kinds["subgraph"], kinds["kind_a"], kinds["kind_b"])))
        for kind in ("engine", "fallback"):
            na, nb = _per_inf(s, "a", kind), _per_inf(s, "b", kind)
            if round(na, 2) != round(nb, 2):
                parts.append(f"{kind} calls per inference {na:.3g} \u2192 {nb:.3g}")
        if parts:
            out.append(f"{model}: " + "; ".join(parts))
    return out
