"""Forcing or alternating CUDA graphs from outside an unmodified script (`--cudagraphs`).

Why: the report's CUDA-graph recommendation is an estimate (GPU idle while only Python runs); only
running both ways says what CUDA graphs really give this model. As with `--prealloc`, one compiled
model runs both arms interleaved in one process, the mode flipped every K inferences, so drift
between blocks cannot pose as the effect.

How: through the runtime's own `torch_tensorrt.runtime.set_cudagraphs_mode(bool)` (the call
`enable_cudagraphs` makes for a module without fallbacks), looked up at start, never assumed: per-engine
CUDA graphs, on every engine of every model, fallbacks (if any) running eagerly between them. The
mode is global in the runtime, so it is set at the start of an inference whenever it differs from
what the policy wants for that inference. The first `EXCLUDED_AFTER_FLIP` inferences after each flip
are left out of statistics: the first captures each engine's graph, the second is the graph's first
replay. While a policy is in force the script's own `set_cudagraphs_mode` calls are ignored and
counted. Whole-graph mode (`CudaGraphsTorchTensorRTModule`) needs the script to call through the
wrapper, so it is not flipped here; a script that uses it is captured as it runs (cudagraph_hooks.py).
"""
from __future__ import annotations

import functools

from trtprof.capture import cudagraphs

EXCLUDED_AFTER_FLIP = 2
FLIP_NOTE = ("one of the first inferences after CUDA graphs were switched (graph capture, first replay): "
             "left out of statistics")
SETTER = "set_cudagraphs_mode"


class Flipper:
    """Applies a `prealloc.Policy` (as parsed for --cudagraphs) to the runtime's CUDA-graph mode."""

    def __init__(self, policy, modes_module):
        self.policy = policy
        self.modes = modes_module
        self.set = getattr(modes_module, SETTER)  # the runtime's own, before guard() replaces it
        self.last: dict = {}  # ModelInfo id -> the mode its previous inference ran with
        self.flipped_at: dict = {}  # ModelInfo id -> inference index of its last flip
        self.refused: set = set()  # labels of models left off (engines need the output allocator)
        self.before = getattr(modes_module, "_PY_RT_CUDAGRAPHS", 0) == cudagraphs.PER_ENGINE_MODE

    def apply(self, info) -> str | None:
        """Before inference `info.calls` of a model: set the mode the policy wants. Returns the
        exclusion note when this inference is one of the first after a flip."""
        want = self.policy.wanted(info.calls)
        if want is None:
            return None
        if want and any(getattr(m, "requires_output_allocator", False) for m in info.engines):
            self.refused.add(info.label)  # the runtime raises for these under CUDA graphs
            want = False
        on = getattr(self.modes, "_PY_RT_CUDAGRAPHS", 0) == cudagraphs.PER_ENGINE_MODE
        if want != on:
            self.set(want)
        key = id(info)
        last = self.last.get(key)
        self.last[key] = want
        if last is not None and last != want:  # this model's previous inference ran the other way
            self.flipped_at[key] = info.calls
        at = self.flipped_at.get(key)
        return FLIP_NOTE if at is not None and info.calls - at < EXCLUDED_AFTER_FLIP else None

def guard(modes_module, policy) -> list:
    """Replace the runtime's set_cudagraphs_mode (in its module and in torch_tensorrt.runtime) with
    one that ignores the script while the policy is in force; returns what to restore."""
    import sys

    orig = getattr(modes_module, SETTER)

    @functools.wraps(orig)
    def set_cudagraphs_mode(mode):
        policy.cg_ignored += 1
    saved = [(modes_module, SETTER, orig)]
    modes_module.set_cudagraphs_mode = set_cudagraphs_mode
    rt = sys.modules.get("torch_tensorrt.runtime")
    if rt is not None and getattr(rt, SETTER, None) is orig:
        saved.append((rt, SETTER, orig))
        rt.set_cudagraphs_mode = set_cudagraphs_mode
    return saved


def start(ins, policy, notes: list, version: str) -> list:
    """At the capture's start: a Flipper on `ins` when the runtime has its setter (else a note);
    returns what to restore."""
    if not policy.forcing:
        return []
    modes = ins.cg_modes
    if modes is None or not callable(getattr(modes, SETTER, None)):
        notes.append(f"--cudagraphs {policy.mode}: this torch_tensorrt ({version}) has no "
                     "torch_tensorrt.runtime.set_cudagraphs_mode: CUDA graphs were not switched")
        return []
    ins.cg_flip = Flipper(policy, modes)
    return guard(modes, policy)


REPLAY_NOTE = ("{n} whole-graph CUDA-graph replay(s): each is one inference row timed as a whole. A replay "
               "runs no engine or fallback call, and the graph's kernels carry no mark of the subgraph they "
               "came from, so replays have no per-subgraph rows, times or kernels; {kernels}")


def stop(ins, policy, notes: list, kernels: bool = False) -> None:
    """At the end: the mode the script had before, and one note per thing to say (`kernels`: CUPTI
    kernel activity was recorded)."""
    if ins.cg_replays:
        kernels = ("their kernels count toward the inference only" if kernels else
                   "their GPU time is the CUDA-event bracket of the wrapper's call")
        notes.append(REPLAY_NOTE.format(n=ins.cg_replays, kernels=kernels))
    flip = ins.cg_flip
    if flip is None:
        return
    try:
        flip.set(flip.before)  # the script (or a notebook) goes on with the mode it had
    except Exception as e:  # noqa: BLE001
        notes.append(f"--cudagraphs: the runtime's CUDA-graph mode could not be restored ({e})")
    if policy.cg_ignored:
        notes.append(f"--cudagraphs {policy.mode}: the script's own {policy.cg_ignored} call(s) to "
                     "set_cudagraphs_mode were ignored")
    for label in sorted(flip.refused):
        notes.append(f"--cudagraphs: {label} has engines that need the output allocator, which CUDA graphs "
                     "cannot run: it ran without CUDA graphs")
