"""What marking rows with their CUDA-graph mode costs the hot path.

    python bench/bench_cudagraph_mark.py [N] [ROUNDS]

Every engine call and every inference or fallback range asks `capture.cudagraphs.current(ins)`:
outside a whole-graph wrapper call, one class-attribute read (no thread is in a wrapper) and one
attribute read of the runtime's mode global. This times that call against a function of the same shape that returns
None at once, in interleaved rounds, and prints the medians per call and their difference (CPU
only: nothing here touches CUDA or Torch-TensorRT; the mode module is a plain module object).
"""
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trtprof.capture import cudagraphs, state  # noqa: E402


def baseline(ins):
    return None


def per_call(fn, ins, n):
    t = time.perf_counter_ns()
    for _ in range(n):
        fn(ins)
    return (time.perf_counter_ns() - t) / n


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 21
    modes = types.ModuleType("torch_tensorrt.runtime._cudagraphs")
    modes._PY_RT_CUDAGRAPHS = 1  # per-engine: the longest path (phase unset, then the mode read)
    ins = types.SimpleNamespace(stacks=state._Stacks(), cg_modes=modes)
    got = {"current": [], "baseline": []}
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits both alike
        got["current"].append(per_call(cudagraphs.current, ins, n))
        got["baseline"].append(per_call(baseline, ins, n))
    a, b = statistics.median(got["current"]), statistics.median(got["baseline"])
    print(f"cudagraphs.current {a:.0f} ns, an empty call {b:.0f} ns: the mark costs {a - b:.0f} ns per "
          f"range (median of {rounds} interleaved rounds of {n} calls; ratio {a / b:.2f})")
