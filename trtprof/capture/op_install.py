"""Installing and removing the op path (capture/ops.py): what is patched, where, and undone.

- `torch.ops.tensorrt.execute_engine` -> `ops.OpProxy` (runtime modules of every version);
- `torch.export.ExportedProgram.module` -> adopts the GraphModule it returns when it calls the op
  (`torch_tensorrt.load(...).module()`); graphs alive at start are adopted by a scan, and
  `trtprof.instrument(model)` adopts one on request;
- the Python `TRTEngine`'s class when first seen (python_engine.py), and the Python runtime
  module's `DynamicOutputAllocator` (2.11/2.12) at start.
Why a version it has not seen still works: all of it is found, not assumed; what is missing is said
in `notes`.
"""
from __future__ import annotations

import functools
import sys

from trtprof.capture import op_graphs, ops
from trtprof.capture.python_engine import PythonEngineHooks


class OpCapture:
    def __init__(self, ins):
        self.ins = ins
        self.packet = None
        self.python = PythonEngineHooks()
        self.graphs: list = []  # (graph module, saved targets, markers, ModelInfo)
        self.pinned: list = []  # engines kept alive because they cannot be weakly referenced
        self._saved: list = []  # (object, attribute, original)
        self.notes: list[str] = []

    def install(self) -> bool:
        """Replace the op on its namespace; False (and a note) if this process has no such op."""
        import torch

        try:
            ns = torch.ops.tensorrt
            packet = ns.execute_engine
        except (AttributeError, RuntimeError) as e:
            self.notes.append(f"no torch.ops.tensorrt.execute_engine ({type(e).__name__}): engines that "
                              "run through the op are not recorded")
            return False
        if isinstance(packet, ops.OpProxy):  # left over by a capture that did not stop
            packet = packet._trtprof_packet
        self.packet = packet
        ops._REAL = packet.default
        self._set(ns, "execute_engine", ops.OpProxy(packet))
        self.ins.op = self
        ep = getattr(getattr(torch, "export", None), "ExportedProgram", None)
        orig = getattr(ep, "module", None) if ep is not None else None
        if callable(orig):
            self._set(ep, "module", _adopting(orig))
        return True

    def hook_python_runtime(self, cls) -> None:
        """2.11/2.12's PythonTorchTensorRTModule: its output allocator class, if it has one."""
        self.python.hook_allocator(getattr(sys.modules.get(cls.__module__), "DynamicOutputAllocator", None))

    def hook_python_engine(self, cls) -> None:
        self.python.hook_engine(cls)

    def adopt(self, gm):
        return op_graphs.adopt(self.ins, gm)

    def scan(self) -> int:
        return op_graphs.scan(self.ins)

    def _set(self, obj, name, value) -> None:
        self._saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def uninstall(self) -> None:
        op_graphs.restore(self.graphs)
        self.python.restore()
        for obj, name, orig in reversed(self._saved):
            setattr(obj, name, orig)
        self._saved.clear()
        self.pinned.clear()
        ops._REAL = None
        self.ins.op = None


def _adopting(orig):
    @functools.wraps(orig)
    def module(self, *args, **kwargs):
        gm = orig(self, *args, **kwargs)
        from trtprof.capture import state
        ins = state.ACTIVE
        if ins is not None and ins.op is not None:
            ins.op.adopt(gm)
        return gm
    return module
