"""Forcing or alternating pre-allocated outputs from outside an unmodified script.

Why alternate in one process: block-to-block drift on a GPU machine is as large as the effect of
pre-allocation (the tutorial's single 10-run medians cannot tell them apart). Flipping the mode every
K inferences of one compiled model interleaves both modes under the same conditions, with one compile.
The mode is set through the runtime's own `set_pre_allocated_outputs` (the API the tutorial's context
manager uses); while a policy is in force the script's own calls to it are ignored and counted.
"""
from __future__ import annotations

from dataclasses import dataclass

MODES = ("as-is", "on", "off", "alternate")


@dataclass
class Policy:
    mode: str = "as-is"
    every: int = 0  # alternate: flip every `every` inferences
    ignored: int = 0  # the script's own mode changes ignored while forcing
    cg_ignored: int = 0  # --cudagraphs: the script's own set_cudagraphs_mode calls ignored

    @classmethod
    def parse(cls, text: str, option: str = "--prealloc") -> "Policy":
        """'on' | 'off' | 'as-is' | 'alternate[:K]' (K inferences per block, default 50); also the
        grammar of --cudagraphs (`option` names it in the message)."""
        name, _, k = text.partition(":")
        if name not in MODES or (k and name != "alternate"):
            raise ValueError(f"{option} must be one of on, off, as-is, alternate[:K]; got {text!r}")
        every = 50
        if k:
            if not k.isdigit() or int(k) < 1:
                raise ValueError(f"alternate:K needs a positive whole number of inferences, got {k!r}")
            every = int(k)
        return cls(name, every if name == "alternate" else 0)

    @property
    def forcing(self) -> bool:
        return self.mode != "as-is"

    def wanted(self, index: int) -> bool | None:
        """The mode for call/inference `index`: None leaves the script in charge.
        Alternation starts with pre-allocation off, so each 'on' block follows an 'off' one."""
        if self.mode == "on":
            return True
        if self.mode == "off":
            return False
        if self.mode == "alternate":
            return (index // self.every) % 2 == 1
        return None


def guard_setter(orig, policy: Policy):
    """Replacement for `set_pre_allocated_outputs` that ignores the script while a policy is in force."""
    def set_pre_allocated_outputs(self, enable):
        policy.ignored += 1
    set_pre_allocated_outputs.__wrapped__ = orig
    return set_pre_allocated_outputs
