"""Names for CUDA streams, so a lane reads "engine pool 2" instead of "stream 0x194a93f0".

Why: a raw handle tells a reader nothing, while the role of a stream does: the legacy default
stream (handle 0), the stream the caller ran the model on (the stream of its inference rows),
streams that only Torch-TensorRT engines used (the Python runtime takes its own stream from a pool
when the caller is on the default stream; the C++ runtime runs on a pool stream too), and any other
stream the user's code created. Numbered in order of first use, so the names are stable for a
capture. Stateless: timeline in, {handle: name} out; the handle stays in hover text and tables.
"""
from __future__ import annotations

import pandas as pd

DEFAULT, CALLER, POOL, USER = "default stream", "caller stream", "engine pool", "user stream"


def stream_names(df: pd.DataFrame) -> dict:
    """{stream handle: role name} for every stream that carries GPU times in `df`."""
    if df.empty or "stream" not in df:
        return {}
    d = df[df["stream"].notna()].sort_values("host_start_ns", kind="stable")
    if d.empty:
        return {}
    handles = [int(h) for h in pd.unique(d["stream"].astype("Int64").astype(object))]
    caller = {int(h) for h in d.loc[d["event"] == "inference", "stream"].astype("Int64")}
    eng = d["subgraph_kind"] == "engine"
    engine_only = set(d.loc[eng, "stream"].astype("Int64").astype(int)) - \
        set(d.loc[~eng, "stream"].astype("Int64").astype(int))
    names, pool, user, callers = {}, 0, 0, 0
    for h in handles:
        if h == 0:
            names[h] = DEFAULT + (" (caller)" if h in caller else "")
        elif h in caller:
            callers += 1
            names[h] = CALLER if len(caller - {0}) == 1 else f"{CALLER} {callers}"
        elif h in engine_only:
            pool += 1
            names[h] = f"{POOL} {pool}"
        else:
            user += 1
            names[h] = f"{USER} {user}"
    return names


def name_of(names: dict, handle) -> str:
    """The lane name of `handle` ("stream ?" when the row has none)."""
    if handle is None or handle is pd.NA or (isinstance(handle, float) and handle != handle):
        return "stream ?"
    return names.get(int(handle), f"stream {int(handle):#x}")
