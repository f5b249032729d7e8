"""The timeline's columns: name, order, type and meaning, written once.

Everything else derives from this table: the raw record the hooks fill (`capture.records`), the
Arrow schema and pandas dtypes (`timeline.schema`), the loader's checks and the schema table in
docs/schema.md (a test keeps it in sync). Types are named here, not built, so the hooks can read the
order without importing pyarrow or pandas.

kind: int | str | bool; nullable: whether a row may lack the value (a pandas nullable dtype then).
"""
from __future__ import annotations

# name -> (kind, nullable, meaning)
SPEC: dict[str, tuple[str, bool, str]] = {
    "seq": ("int", False, "row number in recording order"),
    "pid": ("int", False, "process id"),
    "thread": ("int", False, "Python thread id (threading.get_ident) of the caller"),
    "model": ("str", True, "label of the top-level compiled module (model0, ...); empty if none"),
    "inference": ("int", False, "index of the model's top-level call; -1 outside one"),
    "subgraph": ("str", True, "submodule name (_run_on_acc_0, _run_on_gpu_1) or the model label"),
    "subgraph_kind": ("str", True, "engine | fallback | model"),
    "runtime": ("str", True, "python | cpp (Torch-TensorRT runtime) | torch (fallback, model)"),
    "event": ("str", True, "inference | call | alloc | exec | fallback"),
    "call": ("int", False, "per-subgraph call index, 0-based"),
    "host_start_ns": ("int", False, "host start, ns on the host clock (CLOCK_MONOTONIC)"),
    "host_end_ns": ("int", False, "host end, ns on the host clock"),
    "gpu_start_ns": ("int", True, "GPU start from a CUDA event, ns on the host clock, never before host_start_ns "
                                  "(a shared boundary event can complete earlier: the GPU waited for the "
                                  "host); null without CUDA, and on subgraph rows recorded without events "
                                  "(--level minimal, --no-brackets: their kernel columns give the GPU side)"),
    "gpu_end_ns": ("int", True, "GPU end from a CUDA event, ns on the host clock"),
    "stream": ("int", True, "CUDA stream handle the events were recorded on"),
    "input_shapes": ("str", True, "input tensor shapes, '(1,128);(1,128)'"),
    "shapes": ("str", True, "alloc: shapes allocated; call/exec: output shapes"),
    "bytes": ("int", True, "alloc: bytes allocated"),
    "prealloc": ("bool", True, "pre-allocated outputs mode on for this call"),
    "alloc_phase": ("str", True, "alloc: before_exec (normal path) | after_enqueue (for the next call) | "
                             "output_allocator (data-dependent shapes)"),
    "outputs": ("str", True, "engine call/exec: preallocated | new"),
    "shape_changed": ("bool", True, "input shapes differ from this subgraph's previous call"),
    "reallocated": ("bool", True, "pre-alloc mode on but outputs were created before execution"),
    "new_segment": ("bool", True, "alloc (C++ runtime): a new cudaMalloc segment, not the cache"),
    "exclude": ("bool", True, "left out of timing statistics (the first recorded call, the first after a "
                              "pre-alloc mode flip, CUDA-graph warm-up or capture, a call that raised: `note` says "
                              "which); still counted as a call"),
    "note": ("str", True, "free text explaining a special row"),
    # kernel activity (CUPTI), attributed to exec, fallback and inference rows when the capture
    # recorded it (docs/recording.md, "Kernels"); null when it did not, 0 when watched and none ran
    "kernel_count": ("int", True, "kernels the row launched (launch time inside its host window), else that started inside its GPU window"),
    "kernel_first_ns": ("int", True, "start of the row's first kernel, ns on the host clock"),
    "kernel_last_ns": ("int", True, "end of the row's last kernel, ns on the host clock (kernel span = last - first)"),
    "kernel_busy_ns": ("int", True, "GPU busy with the row's kernels: length of the union of their intervals"),
    "copy_count": ("int", True, "memcpy operations that started inside the row's GPU window (memsets are not recorded in process)"),
    "copy_ns": ("int", True, "length of the union of those copies' intervals"),
    # Torch-TensorRT's CUDA-graph modes (docs/recording.md, "CUDA graphs"); null: no CUDA graph
    "cudagraph": ("str", True, "whole-graph mode: warmup | capture | replay (the wrapper's calls and the rows "
                               "inside them); per-engine: engines ran with per-engine CUDA graphs"),
}
# columns a capture of an older schema version lacks; the loader adds them as nulls
ADDED_IN = {2: ("kernel_count", "kernel_first_ns", "kernel_last_ns", "kernel_busy_ns", "copy_count", "copy_ns"),
            4: ("cudagraph",)}
# the `note` of a cold start's rows (capture/state.py says why they are left out)
COLD_NOTE = "first call trtprof saw of it in this process (cold start): left out of statistics"
# how the `note` of a range whose call raised begins (the exception's class name follows)
RAISED_NOTE = "the call raised "

FIELDS = tuple(SPEC)

# Columns the recorder fills on every row. A null there means trtprof did not write the file, and the
# analyses group and branch on them, so the loader refuses it rather than let a report trip over it.
NOT_NULL = ("model", "subgraph", "subgraph_kind", "runtime", "event")

# Which row of a subgraph is "the call" (one per call: counts, host time) and which carries its GPU
# interval (timing statistics). Every table and comparison uses these two rules.
CALL_EVENT = {"engine": "call", "fallback": "fallback", "model": "inference"}
TIMED_EVENT = {"engine": "exec", "fallback": "fallback", "model": "inference"}
