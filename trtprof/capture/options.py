"""What a capture records, as one object: validated once, turned into argv and into meta.json.

Why one object: the same choices arrive from click options (`trtprof capture`), from keyword
arguments (`trtprof.profile()`), and must be handed on to a child process (`capture --nsys` runs the
capture again under nsys) and recorded in the capture's metadata. Spelled out in one place, they
cannot drift apart. Imports nothing heavy: the CLI validates options before torch is loaded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from trtprof.capture.prealloc import Policy
from trtprof.errors import UsageError

# What is recorded (docs/recording.md, "Levels"): full = every range with CUDA events, output
# allocations with shapes and bytes, the C++ allocator log; minimal = every range on the host clock,
# CUDA events only around each inference, allocations without shapes, no allocator log. Either level
# can record 1 inference in N (`sample`), plus every one whose input shapes change and the one after.
# `brackets=False` (full level): no CUDA events around each engine and fallback call, only around each
# inference; their GPU side comes from the kernels they launched (CUPTI launch times), which needs kernel
# activity with launch times: where that does not run, the brackets stay and the capture says why.
LEVELS = ("full", "minimal")


@dataclass(frozen=True)
class CaptureOptions:
    prealloc: str = "as-is"  # on | off | as-is | alternate[:K]
    cudagraphs: str = "as-is"  # on | off | as-is | alternate[:K]: per-engine CUDA graphs (cg_policy.py)
    cpp_allocs: bool = True  # the C++ runtime's allocations from the caching allocator's log
    level: str = "full"
    sample: int = 1  # record 1 inference in N
    nvtx: bool = True
    gpu: bool | None = None  # None: CUDA events when CUDA is there
    kernels: bool = True  # CUPTI kernel activity, where cupti-python is installed and CUPTI is free
    brackets: bool = True  # full level: CUDA events around every subgraph call (see LEVELS)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """UsageError (one line, speaking of the option's name) for values that cannot work."""
        if not isinstance(self.brackets, bool):
            raise UsageError(f"brackets must be True or False, got {self.brackets!r}")
        if self.level not in LEVELS:
            raise UsageError(f"unknown level {self.level!r}: choose one of {', '.join(LEVELS)}")
        if isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < 1:
            raise UsageError(f"sample must be a whole number >= 1 (record 1 inference in N), got {self.sample!r}")
        try:
            policy = Policy.parse(self.prealloc)
        except ValueError as e:
            raise UsageError(str(e)) from None
        try:
            cg = Policy.parse(self.cudagraphs, "--cudagraphs")
        except ValueError as e:
            raise UsageError(str(e)) from None
        for name, p in (("prealloc", policy), ("cudagraphs", cg)):
            if self.sample > 1 and p.mode == "alternate":
                # the first call after each flip must be seen (and excluded): sampling would skip it
                raise UsageError(f"{name} alternate records every inference: it cannot be combined with "
                                 "--sample (sample=N)")
        if policy.mode == "alternate" and cg.mode == "alternate":
            raise UsageError("--prealloc alternate and --cudagraphs alternate cannot run together (their blocks "
                             "would confound the two effects): alternate one, set the other on or off")

    @property
    def policy(self) -> Policy:
        return Policy.parse(self.prealloc)

    @property
    def cg_policy(self) -> Policy:
        return Policy.parse(self.cudagraphs, "--cudagraphs")

    def to_argv(self) -> list[str]:
        """The `trtprof capture` options that give these choices (for a child capture)."""
        return ["--prealloc", self.prealloc, "--cudagraphs", self.cudagraphs, "--cpp-allocs" if self.cpp_allocs else "--no-cpp-allocs",
                "--level", self.level, "--sample", str(self.sample),
                "--kernels" if self.kernels else "--no-kernels", "--brackets" if self.brackets else "--no-brackets"]

    def as_meta(self) -> dict:
        return asdict(self)
