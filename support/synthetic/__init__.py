"""Synthetic trtprof timelines for the tests, benchmarks and scripts: one simulator.

A CPU capture has no GPU times, so the analyses, reports and exporters need a stand-in for a GPU run.
model.py holds the run that is simulated (rows, host durations, GPU work), rows.py what a row looks like,
timing.py how durations are drawn and how GPU times follow host times, runs.py the drivers: `timeline`
(one synchronising thread, vectorised: a million rows in about a second) and `concurrent` (threads at
once, shared streams, jitter, ground-truth links beside the frame).
"""
from .rows import DEFAULTS, frame, write_capture
from .runs import CALLER_STREAM, Run, concurrent, hostile, timeline

__all__ = ["CALLER_STREAM", "DEFAULTS", "Run", "concurrent", "frame", "hostile", "timeline", "write_capture"]
