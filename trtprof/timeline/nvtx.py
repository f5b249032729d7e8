"""NVTX names: the domain and the range-name rule, shared by the hooks and the nsys reader.

Why here: the capture emits ranges named '<subgraph> <event>[ (<detail>)]' in the domain `trtprof`,
and the nsys import pairs a report's ranges with timeline rows by that same name. One rule, in the
contract both sides depend on.
"""
from __future__ import annotations

DOMAIN = "trtprof"
# ARGB integers: colour names other than a few need matplotlib inside nvtx
COLORS = {"inference": 0xFF9E9E9E, "call": 0xFF7B1FA2, "alloc": 0xFFF57C00, "exec": 0xFF388E3C,
          "fallback": 0xFF1976D2}


def range_name(subgraph: str, event: str, detail: str = "") -> str:
    """'_run_on_acc_0 alloc (before_exec)'."""
    return f"{subgraph} {event}" + (f" ({detail})" if detail else "")


def range_names(df):
    """The range name of every row of a timeline DataFrame: alloc rows carry their phase as the
    detail, as the hooks push them."""
    name = df["subgraph"].astype(str) + " " + df["event"].astype(str)
    phase = df["alloc_phase"].astype("string")
    alloc = (df["event"] == "alloc") & phase.notna()
    name = name.where(~alloc, name + " (" + phase.fillna("") + ")")
    return name.astype(str)
