"""Facts about a folder of ranks for a device run (issue 24's checks), as JSON on stdout.

    python3 scripts/check_ranks.py DIR [--out facts.json]

Each rank's device (index, name, UUID: distinct UUIDs mean distinct GPUs), its rows and GPU-timed
rows; whether the straggler view agrees with the per-rank latencies (the slowest and fastest of every
inference index are the max and min of the ranks' own latencies); the clock check of a run whose
ranks meet after every inference (`analysis.ranks.lockstep_check`: no start of inference i+1 before
any rank's end of inference i on the common clock); and the spread and finish-skew summary.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from trtprof.analysis import ranks as analysis
from trtprof.timeline.ranks import load_ranks


def facts(root) -> dict:
    ranks = load_ranks(root)
    res = analysis.analyse_ranks(ranks, n_boot=200)
    out = {"ranks": {}, "clock": ranks.clock, "offsets_ns": ranks.offsets, "notes": ranks.notes}
    for r, cap in ranks.captures.items():
        info = cap.meta.get("rank", {})
        df = cap.timeline
        out["ranks"][r] = {"device": info.get("device"), "host": info.get("host"), "local_rank": info.get("local_rank"),
                           "rows": len(df), "gpu_timed_rows": int(df["gpu_start_ns"].notna().sum()),
                           "status": cap.meta.get("status")}
    lat = {r: x.latency.set_index(["model", "inference"])["latency_ns"] / 1e6 for r, x in res.per_rank.items()}
    bad = 0
    for row in res.straggler.itertuples(index=False):
        vals = [s.get((row.model, row.inference)) for s in lat.values()]
        vals = [v for v in vals if v is not None and v == v]
        bad += not (np.isclose(max(vals), row.slowest_ms) and np.isclose(min(vals), row.fastest_ms))
    out["straggler_rows"] = len(res.straggler)
    out["straggler_disagreements"] = bad
    out["lockstep"] = analysis.lockstep_check(ranks)
    out["summary"] = json.loads(res.summary.to_json(orient="records"))
    out["latency"] = json.loads(res.latency.to_json(orient="records"))
    uuids = [v["device"].get("uuid") for v in out["ranks"].values() if v["device"]]
    out["distinct_devices"] = len(set(uuids))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--out")
    a = p.parse_args(argv)
    text = json.dumps(facts(a.folder), indent=2, default=str)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
