"""A folder of ranks as one Perfetto / chrome://tracing trace: one process per rank (pid = rank).

Each rank's trace is built exactly as for a single capture (`render.perfetto.build_trace`: host
thread tracks, GPU stream tracks, flows, shape changes), then moved into the rank's process: its
host and GPU tracks become threads of process `rank`, thread and flow ids are renumbered so no two
ranks share one, and its times are moved onto the common clock in whole nanoseconds (the rank's
offset of `timeline.ranks` and the difference of time origins), so nesting and flow order within a
rank are untouched.
"""
from __future__ import annotations

import json

from trtprof.render import perfetto
from trtprof.render.ranks_text import where


def _us(ts: float, shift_ns: int) -> float:
    return round((round(ts * 1000) + shift_ns) / 1000, 3)


def build_trace(ranks) -> dict:
    """`ranks`: timeline.ranks.Ranks. The trace dict; `perfetto.to_json` makes it text."""
    built = {}
    for r, cap in ranks.captures.items():
        trace = perfetto.build_trace(cap.timeline, cap.meta)
        built[r] = (trace, trace["otherData"]["time_origin_ns"] + ranks.offsets.get(r, 0))
    origin = min(t0 for _, t0 in built.values())
    events, tid_base, flow_base, dropped, half = [], 1, 0, {}, 0
    for sort, (r, (trace, t0)) in enumerate(built.items()):
        shift = t0 - origin
        tids, flows = {}, set()
        events.append({"name": "process_name", "ph": "M", "pid": r, "tid": 0,
                       "args": {"name": f"rank {r} ({where(ranks.captures[r].meta)})"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": r, "tid": 0, "args": {"sort_index": sort}})
        for ev in trace["traceEvents"]:
            if ev["ph"] == "M" and ev["name"] in ("process_name", "process_sort_index"):
                continue
            ev = dict(ev, pid=r)
            if ev.get("tid"):
                ev["tid"] = tids.setdefault(ev["tid"], tid_base + len(tids))
            if "ts" in ev:
                ev["ts"] = _us(ev["ts"], shift)
            if "id" in ev:
                flows.add(ev["id"])
                ev["id"] = ev["id"] + flow_base
            if ev["ph"] == "M" and ev["name"] == "thread_name" and trace_is_gpu(ev):
                ev["args"] = {"name": "GPU " + ev["args"]["name"]}
            events.append(ev)
        tid_base += len(tids) + 1
        flow_base += max(flows, default=0)
        for k, n in trace["otherData"]["flows_left_out_backwards"].items():
            dropped[k] = dropped.get(k, 0) + n
        half += trace["otherData"]["gpu_ranges_with_one_time"]
    meta = {r: json.loads(json.dumps(c.meta, default=str)) for r, c in ranks.captures.items()}
    return {"traceEvents": events,
            "otherData": {"trtprof_ranks": meta, "time_origin_ns": origin, "clock": ranks.clock,
                          "rank_offsets_ns": {str(r): o for r, o in ranks.offsets.items()},
                          "gpu_ranges_with_one_time": half, "flows_left_out_backwards": dropped}}


def trace_is_gpu(ev: dict) -> bool:
    """A thread_name event of a GPU stream track (perfetto._stream_name names them 'stream ...')."""
    return str(ev.get("args", {}).get("name", "")).startswith("stream ")
