"""Input shape changes: where they happened and what they cost with pre-allocated outputs.

Why: a pre-allocated output buffer only fits the shape it was made for. When a subgraph's input shape
changes, the Python runtime throws the buffer away and allocates new outputs *before* execution, the
exposed path pre-allocation was meant to avoid, and the buffer it allocated after the previous call
was wasted. The Torch-TensorRT tutorial therefore calls the feature unsuitable for frequent shape
changes; this module measures how frequent they are and what each one cost.

Stateless DataFrame -> DataFrame, vectorised (groupby / merge, no per-row Python).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trtprof.analysis.overlap import alloc_overlap
from trtprof.timeline import schema

TUTORIAL_URL = ("https://docs.pytorch.org/TensorRT/tutorials/_rendered_examples/dynamo/"
                "pre_allocated_output_example.html")
TUTORIAL_QUOTE = ("If shape is changed, pre-allocated buffer cannot be used for next inference and there "
                  "will new allocation before executing the TensorRT context. This feature is not suitable "
                  "for use cases with frequent input shape changes")
# Share of a subgraph's calls with a new input shape above which we call shape changes "frequent":
# then at least one forced re-allocation every ten calls, enough to eat a sizeable part of the saving.
FREQUENT = 0.10

SUB = ["pid", "model", "subgraph"]
CHANGE_COLUMNS = ["pid", "model", "inference", "subgraph", "kind", "call", "old_shapes", "new_shapes",
                  "prealloc", "outputs_discarded", "realloc_ns", "realloc_exposed_ns", "realloc_bytes",
                  "discarded_bytes", "discarded_alloc_ns"]


def _calls(df: pd.DataFrame) -> pd.DataFrame:
    """One row per subgraph call: engine `call` rows and `fallback` rows, ordered per subgraph."""
    c = df[((df["event"] == "call") & (df["subgraph_kind"] == "engine")) | (df["event"] == "fallback")]
    c = c.sort_values(SUB + ["call", "host_start_ns"], kind="stable")
    prev = c.groupby(SUB, sort=False)["input_shapes"].shift(1)
    flag = c["shape_changed"].astype("boolean")
    # trust the capture's flag; where it is missing, compare with the previous call's shapes
    derived = prev.notna() & (prev != c["input_shapes"]).fillna(False)
    changed = flag.fillna(derived.astype("boolean")).fillna(False).astype(bool)
    return c.assign(old_shapes=prev, changed=changed.to_numpy())


def shape_changes(df: pd.DataFrame, allocs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every call whose input shape differs from the subgraph's previous call, with its cost.

    outputs_discarded: pre-allocated outputs were on but had to be re-created before execution;
    realloc_*: the before-execution allocations of that call (host time, exposed part, bytes);
    discarded_*: the buffer allocated after the previous call's enqueue, thrown away unused.
    """
    calls = _calls(df)
    ch = calls[calls["changed"]]
    if ch.empty:
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    allocs = alloc_overlap(df) if allocs is None else allocs
    a = allocs.assign(bytes=allocs["bytes"].astype("Float64").fillna(0).astype(float))
    keys = SUB + ["call"]
    gb = a[a["alloc_phase"] == "before_exec"].groupby(keys, sort=False)
    before = gb.agg(realloc_ns=("alloc_ns", "sum"), realloc_bytes=("bytes", "sum"))
    before["realloc_exposed_ns"] = gb["exposed_ns"].sum(min_count=1)
    after = a[a["alloc_phase"] == "after_enqueue"].groupby(keys, sort=False).agg(
        discarded_alloc_ns=("alloc_ns", "sum"), discarded_bytes=("bytes", "sum")).reset_index()
    after["call"] = after["call"] + 1  # the previous call's buffer is the one this call would have used
    out = ch.rename(columns={"subgraph_kind": "kind", "input_shapes": "new_shapes"})
    out = out.merge(before.reset_index(), on=keys, how="left").merge(after, on=keys, how="left")
    pre = out["prealloc"].fillna(False).astype(bool)
    out["prealloc"] = pre
    out["outputs_discarded"] = pre & out["reallocated"].fillna(False).astype(bool)
    for c in ("realloc_ns", "realloc_bytes", "discarded_alloc_ns", "discarded_bytes"):
        out[c] = out[c].fillna(0.0)
    out.loc[out["realloc_ns"] == 0, "realloc_exposed_ns"] = 0.0  # nothing allocated: nothing exposed
    not_discarded = ~out["outputs_discarded"]
    out.loc[not_discarded, ["discarded_alloc_ns", "discarded_bytes"]] = 0.0
    out = out[CHANGE_COLUMNS].sort_values(["pid", "model", "inference"], kind="stable")
    return schema.sort_subgraphs(out, by=("pid", "model", "inference", "subgraph"))


def change_frequency(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, subgraph): calls, calls with a new input shape, their share, distinct shapes, and
    the same counts restricted to calls made with pre-allocated outputs on."""
    cols = ["model", "subgraph", "kind", "calls", "changes", "share", "distinct_shapes", "prealloc_calls",
            "prealloc_changes", "prealloc_share"]
    calls = _calls(df)
    if calls.empty:
        return pd.DataFrame(columns=cols)
    pre = calls["prealloc"].fillna(False).astype(bool).to_numpy()
    calls = calls.assign(_pre=pre, _prech=pre & calls["changed"].to_numpy())
    out = calls.groupby(["model", "subgraph"], sort=False).agg(
        kind=("subgraph_kind", "first"), calls=("changed", "size"), changes=("changed", "sum"),
        distinct_shapes=("input_shapes", "nunique"), prealloc_calls=("_pre", "sum"),
        prealloc_changes=("_prech", "sum")).reset_index()
    # the first call of a subgraph cannot change shape: share of the calls that could
    out["share"] = out["changes"] / np.maximum(out["calls"] - 1, 1)
    out["prealloc_share"] = np.where(out["prealloc_calls"] > 0,
                                     out["prealloc_changes"] / np.maximum(out["prealloc_calls"], 1), np.nan)
    return schema.sort_subgraphs(out[cols])


def advice(freq: pd.DataFrame, threshold: float = FREQUENT) -> str | None:
    """The tutorial's advice when some engine's input shapes change on more than `threshold` of its
    calls; None otherwise. Plain text (the renderer escapes it)."""
    eng = freq[freq["kind"] == "engine"] if len(freq) else freq
    if eng.empty or float(eng["share"].max()) <= threshold:
        return None
    worst = eng.loc[eng["share"].idxmax()]
    used = int(eng["prealloc_calls"].sum()) > 0
    head = (f"Input shapes change on {worst['share']:.0%} of the calls of {worst['subgraph']} "
            f"({int(worst['changes'])} of {int(worst['calls'])}).")
    if used:
        tail = ("With pre-allocated outputs on, each change throws the pre-allocated buffer away and "
                "allocates again before execution.")
    else:
        tail = "Pre-allocated outputs were off here; if you turn them on, each change will force a new allocation."
    return f"{head} {tail} The Torch-TensorRT tutorial: \u201c{TUTORIAL_QUOTE}.\u201d"
