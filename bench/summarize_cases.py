"""Summaries of the tutorial's three cases (reports/cases/<case>-<runtime>/), as text and a Markdown table.

    python3 bench/summarize_cases.py [reports/cases]

Writes summary.txt into each capture folder (per-subgraph summary, latency by mode and by shape, the
pre-allocation verdict with its 95 % bootstrap CI, exposed allocation per inference, shape-change
frequency) and prints one Markdown table row per capture for docs/measurements.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trtprof  # noqa: E402
from trtprof.analysis import report as analysis_report  # noqa: E402
from trtprof.analysis.subgraphs import table as by_subgraph  # noqa: E402
from trtprof.render.summary_text import render as summary_table  # noqa: E402


def _ms(v: float) -> str:
    return f"{v:.3f}"


def summarize(folder: Path) -> tuple[str, dict]:
    cap = trtprof.load_capture(folder)
    df = cap.timeline
    r = analysis_report.analyse(df, kernels=cap.kernels, meta=cap.meta)
    env = cap.meta.get("environment", {})
    lines = [f"capture {folder.name}: {' '.join(cap.meta.get('command', [])[-6:])}",
             f"{env.get('gpu')} | torch {env.get('torch')} | torch_tensorrt {env.get('torch_tensorrt')} | "
             f"{env.get('tensorrt_backend')} {env.get('tensorrt')} | options {cap.meta.get('options')}", "",
             summary_table(by_subgraph(df)), "", "latency per inference (ms) by pre-alloc mode (excluded calls left out):",
             r.by_mode.to_string(index=False, float_format=_ms), "", "by input shape (ms):",
             r.by_shape.to_string(index=False, float_format=_ms), ""]
    lines += [f"verdict: {c.verdict}" for c in r.comparisons]
    exp = r.exposure.groupby("mode")[["alloc_ns_per_inference", "exposed_ns_per_inference"]].sum() / 1e3
    exp.columns = ["allocation us per inference", "exposed us per inference"]
    lines += ["", "allocation per inference, all engines: host time of the allocations and the part of it the GPU "
              f"sat idle ({r.busy_source or 'no GPU times'}):", exp.round(1).to_string()]
    if r.shape_advice:
        lines += ["", r.shape_advice]
    if len(r.recommendations):
        lines += ["", "recommendations (gain per inference; an estimate unless marked measured):"]
        lines += [f"- {x.action}: {x.gain_ms:.3f} ms ({x.gain_pct:.1f} %), {'measured' if x.measured else x.basis}; "
                  f"{x.arithmetic}" for x in r.recommendations.itertuples(index=False)]
    text = "\n".join(lines) + "\n"
    (folder / "summary.txt").write_text(text)
    c = r.comparisons[0] if r.comparisons else None
    engines = df[df.subgraph_kind == "engine"].subgraph.nunique()
    fallbacks = df[df.subgraph_kind == "fallback"].subgraph.nunique()
    med = r.by_mode.set_index("mode")["median_ms"].to_dict()
    row = dict(capture=folder.name, engines=engines, fallbacks=fallbacks,
               off=med.get("off"), on=med.get("on"), verdict=c.verdict if c else "",
               exposed_off=exp["exposed us per inference"].get("off"),
               exposed_on=exp["exposed us per inference"].get("on"))
    return text, row


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/cases")
    print("| capture | engines / fallbacks | median off (ms) | median on (ms) | exposed alloc off / on (us per inference) | verdict (95 % bootstrap CI) |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(p for p in root.iterdir() if (p / "meta.json").exists()):
        _, r = summarize(folder)
        print(f"| {r['capture']} | {r['engines']} / {r['fallbacks']} | {r['off']:.3f} | {r['on']:.3f} | "
              f"{r['exposed_off']:.1f} / {r['exposed_on']:.1f} | {r['verdict']} |")


if __name__ == "__main__":
    main()
