"""What the stream-capture check costs GpuClock.record on the hot path.

`record` reads one class attribute (`Captures.depth`, kept by the wrapped CUDAGraph.capture_begin /
capture_end) instead of asking CUDA (`torch.cuda.is_current_stream_capturing()`, a driver call per
record). This times record() on pure-Python events with and without the check, so the difference is
the check's own cost (CPU-only; the CUDA call it avoids is not available here).

    python bench/bench_capture_flag.py [N]
"""
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "support")]

from gpu_doubles import fake_torch  # noqa: E402
from trtprof.capture.events import GpuClock  # noqa: E402


class Unchecked(GpuClock):
    def record(self, stream=None):  # GpuClock.record less the capture check
        if self._ref is None:
            self.anchor()
        ev = self._pool.pop() if self._pool else self._Event(enable_timing=True)
        self._record(ev, stream if stream is not None else self.current_stream())
        return ev


def per_call(clock, n):
    stream = clock.current_stream()
    t = time.perf_counter_ns()
    for _ in range(n):
        clock.recycle(clock.record(stream))
    return (time.perf_counter_ns() - t) / n


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    clocks = GpuClock(fake_torch()), Unchecked(fake_torch())
    best = [float("inf")] * 2
    for _ in range(7):  # interleaved rounds, best of each: the pool and the caches warm alike
        for i, c in enumerate(clocks):
            best[i] = min(best[i], per_call(c, n))
    a, b = best
    print(f"record with the check {a:.0f} ns, without {b:.0f} ns: the check costs {a - b:.0f} ns per event")
