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
# Share of calls that change and return to the shape before the last one above which a subgraph's
# shapes "alternate every call" (A, B, A, B); a few misses (a warm-up call) do not hide the pattern.
ALTERNATING = 0.9

SUB = ["pid", "model", "subgraph"]
CHANGE_COLUMNS = ["pid", "model", "inference", "subgraph", "kind", "call", "old_shapes", "new_shapes",
                  "prealloc", "outputs_discarded", "realloc_ns", "realloc_exposed_ns", "realloc_bytes",
                  "discarded_bytes", "discarded_alloc_ns"]


def calls_in_order(df: pd.DataFrame) -> pd.DataFrame:
    """One row per subgraph call: engine `call` rows and `fallback` rows, ordered per subgraph."""
    c = df[((df["event"] == "call") & (df["subgraph_kind"] == "engine")) | (df["event"] == "fallback")]
    c = c.sort_values(SUB + ["call", "host_start_ns"], kind="stable")
    prev = c.groupby(SUB, sort=False, observed=True)["input_shapes"].shift(1)
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
    calls = calls_in_order(df)
    ch = calls[calls["changed"]]
    if ch.empty:
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    allocs = alloc_overlap(df) if allocs is None else allocs
    a = allocs.assign(bytes=allocs["bytes"].astype("Float64").fillna(0).astype(float))
    keys = SUB + ["call"]
    gb = a[a["alloc_phase"] == "before_exec"].groupby(keys, sort=False, observed=True)
    before = gb.agg(realloc_ns=("alloc_ns", "sum"), realloc_bytes=("bytes", "sum"))
    before["realloc_exposed_ns"] = gb["exposed_ns"].sum(min_count=1)
    after = a[a["alloc_phase"] == "after_enqueue"].groupby(keys, sort=False, observed=True).agg(
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
    # a fallback's allocations are PyTorch's own and not recorded: unknown, not zero
    unknown = (out["kind"] != "engine").to_numpy(bool)
    out.loc[unknown, ["realloc_ns", "realloc_exposed_ns", "realloc_bytes"]] = np.nan
    return order_changes(out[CHANGE_COLUMNS])


def order_changes(changes: pd.DataFrame) -> pd.DataFrame:
    """Shape changes in the table's order: by process, model, inference and subgraph (stable, so the
    changes of a capture's chunks, concatenated in order, come out as those of the whole)."""
    out = changes.sort_values(["pid", "model", "inference"], kind="stable")
    return schema.sort_subgraphs(out, by=("pid", "model", "inference", "subgraph"))


FREQUENCY_COLUMNS = ["model", "subgraph", "kind", "calls", "changes", "share", "distinct_shapes", "prealloc_calls",
                     "prealloc_changes", "prealloc_share", "alternating"]


def change_frequency(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, subgraph): calls, calls with a new input shape, their share, distinct shapes, the
    same counts restricted to calls made with pre-allocated outputs on, and whether the shapes
    alternate (A, B, A, B: every call changes and goes back to the shape before the last one; the
    runtime compares with the last shape only, so each such call throws the buffers away)."""
    return frequency_finish([frequency_parts(calls_in_order(df))])


def frequency_parts(calls: pd.DataFrame, keep=None) -> tuple | None:
    """The counts `frequency_finish` needs from `calls_in_order` rows, over the rows `keep` selects (all by
    default; the rows before them only say what came before: a chunk of a capture with the last
    calls of the chunk before it): per (model, subgraph) sums, and its distinct input shapes."""
    pre = calls["prealloc"].fillna(False).astype(bool).to_numpy()
    back2 = calls.groupby(SUB, sort=False, observed=True)["input_shapes"].shift(2)
    ret = (calls["changed"] & (back2 == calls["input_shapes"]).fillna(False)).to_numpy(bool)
    calls = calls.assign(_pre=pre, _prech=pre & calls["changed"].to_numpy(), _ret=ret)
    if keep is not None:
        calls = calls[np.asarray(keep, bool)]
    if calls.empty:
        return None
    sums = calls.groupby(["model", "subgraph"], sort=False, observed=True).agg(
        kind=("subgraph_kind", "first"), calls=("changed", "size"), changes=("changed", "sum"),
        prealloc_calls=("_pre", "sum"), prealloc_changes=("_prech", "sum"), _returns=("_ret", "sum"))
    shapes = calls.loc[calls["input_shapes"].notna().to_numpy(bool), ["model", "subgraph", "input_shapes"]]
    return sums, shapes.drop_duplicates()


def frequency_finish(parts: list) -> pd.DataFrame:
    """`change_frequency` from the `frequency_parts` of a frame or of a capture's chunks, in order."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return pd.DataFrame(columns=FREQUENCY_COLUMNS)
    sums = [p[0] for p in parts]
    out = sums[0] if len(sums) == 1 else pd.concat(sums).groupby(level=[0, 1], sort=False).agg(
        kind=("kind", "first"), calls=("calls", "sum"), changes=("changes", "sum"),
        prealloc_calls=("prealloc_calls", "sum"), prealloc_changes=("prealloc_changes", "sum"),
        _returns=("_returns", "sum"))
    shapes = pd.concat([p[1] for p in parts]).drop_duplicates()
    distinct = shapes.groupby(["model", "subgraph"], sort=False, observed=True).size()
    out = out.assign(distinct_shapes=distinct.reindex(out.index).fillna(0).astype("int64").to_numpy()).reset_index()
    # A, B, A, B: at least ALTERNATING of the calls that could change (all but the first) changed,
    # and as many of those that could go back (all but the first two) went back
    could = np.maximum(out["calls"] - 1, 1)
    out["alternating"] = (out["calls"] >= 4) & (out["changes"] >= ALTERNATING * could) & \
        (out["_returns"] >= ALTERNATING * np.maximum(out["calls"] - 2, 1))
    # the first call of a subgraph cannot change shape: share of the calls that could
    out["share"] = out["changes"] / np.maximum(out["calls"] - 1, 1)
    out["prealloc_share"] = np.where(out["prealloc_calls"] > 0,
                                     out["prealloc_changes"] / np.maximum(out["prealloc_calls"], 1), np.nan)
    return schema.sort_subgraphs(out[FREQUENCY_COLUMNS])


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


# -- why outputs were allocated again before execution ---------------------------------------------------
# A call with pre-allocated outputs on that still allocates before execution (`reallocated`) has one of
# three causes, and only one of them is a shape change: the runtime re-creates its outputs when it has
# no buffer yet (the first call after switching pre-allocation on), when the input shape differs from
# the previous call's, or when the outputs it made are not its own to reuse (the caller keeps them).
REALLOC_CAUSES = {
    "switch": "first call after switching pre-allocated outputs on (no buffer yet)",
    "shape": "input shape changed (buffer for the old shape thrown away)",
    "unowned": "outputs not reusable (unowned: the caller keeps the previous ones)",
}


def realloc_causes(df: pd.DataFrame, allocs: pd.DataFrame) -> pd.Series:
    """For each row of `allocs` (`overlap.alloc_overlap`), the cause of its re-allocation (a key of
    REALLOC_CAUSES), or None for an allocation that is not one."""
    out = pd.Series([None] * len(allocs), index=allocs.index, dtype=object)
    re = allocs["reallocated"].fillna(False).astype(bool).to_numpy()
    if not re.any():
        return out
    calls = df[(df["event"] == "call") & (df["subgraph_kind"] == "engine")].sort_values(SUB + ["call"], kind="stable")
    prev = calls.groupby(SUB, sort=False, observed=True)["prealloc"].shift(1).astype("boolean")
    info = calls[SUB + ["call"]].assign(_prev_on=prev.fillna(False).astype(bool).to_numpy(),
                                        _changed=calls["shape_changed"].astype("boolean").fillna(False)
                                        .astype(bool).to_numpy()).drop_duplicates(SUB + ["call"])
    a = allocs[SUB + ["call", "shape_changed", "exclude"]].merge(info, on=SUB + ["call"], how="left")
    shape = a["shape_changed"].astype("boolean").fillna(False).to_numpy(bool) | a["_changed"].fillna(False).to_numpy(bool)
    switch = ~a["_prev_on"].fillna(False).to_numpy(bool) | a["exclude"].astype("boolean").fillna(False).to_numpy(bool)
    cause = np.where(shape, "shape", np.where(switch, "switch", "unowned"))
    out[re] = cause[re]
    return out


TRANSITION_COLUMNS = ["model", "subgraph", "prealloc", "old_shapes", "new_shapes", "changes", "thrown_away",
                      "realloc_us_median", "exposed_us_median", "discarded_bytes"]


def transitions(changes: pd.DataFrame) -> pd.DataFrame:
    """Shape changes grouped by transition (old -> new) per subgraph and pre-alloc mode: how often,
    how many threw pre-allocated buffers away, the median cost of the new allocation. Pre-allocated
    outputs on first (where a change costs), then subgraphs in natural order, frequent ones first."""
    if changes.empty:
        return pd.DataFrame(columns=TRANSITION_COLUMNS)
    c = changes.assign(old_shapes=changes["old_shapes"].astype(object).where(changes["old_shapes"].notna(), "(none)"),
                       new_shapes=changes["new_shapes"].astype(object).where(changes["new_shapes"].notna(), "(none)"))
    g = c.groupby(["model", "subgraph", "prealloc", "old_shapes", "new_shapes"], sort=False, dropna=False, observed=True)
    out = g.agg(changes=("call", "size"), thrown_away=("outputs_discarded", "sum"),
                realloc_us_median=("realloc_ns", "median"), exposed_us_median=("realloc_exposed_ns", "median"),
                discarded_bytes=("discarded_bytes", "sum")).reset_index()
    out["realloc_us_median"] /= 1e3
    out["exposed_us_median"] = out["exposed_us_median"].astype(float) / 1e3
    out["thrown_away"] = out["thrown_away"].astype(int)
    out = out.assign(_off=(~out["prealloc"].astype(bool)).astype(int), _n=-out["changes"])
    out = schema.sort_subgraphs(out, by=("_off", "model", "subgraph", "_n"))
    return out[TRANSITION_COLUMNS]
