"""Names for CUDA streams, so a lane reads "engine pool 2" instead of "stream 0x194a93f0".

Why: a raw handle tells a reader nothing, while the role of a stream does: the legacy default
stream (handle 0), the stream the caller ran the model on (the stream of its inference rows),
streams that only Torch-TensorRT engines used (the Python runtime takes its own stream from a pool
when the caller is on the default stream; the C++ runtime runs on a pool stream too), and any other
stream the user's code created. Numbered in order of first use, so the names are stable for a
capture. Stateless: timeline in, {handle: name} out; the handle stays in hover text and tables.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT, CALLER, POOL, USER = "default stream", "caller stream", "engine pool", "user stream"


def stream_names(df: pd.DataFrame) -> dict:
    """{stream handle: role name} for every stream that carries GPU times in `df`."""
    return names_from([stream_parts(df)])


def stream_parts(df: pd.DataFrame, offset: int = 0) -> dict | None:
    """What naming needs of a frame (a timeline, or a chunk of a capture whose first row is row
    `offset`): each handle's first use (host start, row), the callers' handles, the handles engine
    rows used and those other rows used."""
    if df.empty or "stream" not in df:
        return None
    d = df[df["stream"].notna()]
    if d.empty:
        return None
    h = d["stream"].astype("Int64").astype("int64").to_numpy()
    first = pd.DataFrame({"h": h, "t": d["host_start_ns"].to_numpy(np.int64),
                          "pos": offset + np.flatnonzero(df["stream"].notna().to_numpy(bool))})
    first = first.sort_values(["t", "pos"], kind="stable").drop_duplicates("h")
    eng = (d["subgraph_kind"] == "engine").fillna(False).to_numpy(bool)
    return {"first": first, "caller": set(h[(d["event"] == "inference").fillna(False).to_numpy(bool)].tolist()),
            "engine": set(h[eng].tolist()), "other": set(h[~eng].tolist())}


def names_from(parts: list) -> dict:
    """`stream_names` from the `stream_parts` of a frame or of a capture's chunks: handles named in
    order of first use (earliest host start, then row)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return {}
    first = pd.concat([p["first"] for p in parts]).sort_values(["t", "pos"], kind="stable").drop_duplicates("h")
    handles = [int(x) for x in first["h"]]
    caller = set().union(*(p["caller"] for p in parts))
    engine_only = set().union(*(p["engine"] for p in parts)) - set().union(*(p["other"] for p in parts))
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
