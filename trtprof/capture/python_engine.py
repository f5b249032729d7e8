"""Hooks inside engines that run TensorRT from Python: the 2.13+ `TRTEngine` and the output allocator.

Why on their classes: a PYTHON_ONLY build's `TRTEngine` (`dynamo/runtime/_TRTEngine.py`, v2.13.0)
does what 2.11's `PythonTorchTensorRTModule.forward` did, inside the op: `create_output_tensors()`
before the enqueue (or after it, for the next call, with pre-allocated outputs on) and
`context.execute_async_v3(self._engine_stream.cuda_stream)`. The same hooks as for the Python
runtime module apply (`engines.python_create_outputs`, `engines.ContextProxy`), keyed by the engine:
the op path's call frames hold the engine, so `current_call(engine)` finds them. Its context is made
lazily by the `context` property (`_create_execution_context()`), so the factory is wrapped too.

Output-allocator mode (data-dependent shapes): TensorRT calls the allocator's
`reallocate_output_async` inside the enqueue; a new buffer made there is an `output_allocator` alloc
row of the current call. The copies of the outputs made after the enqueue (`buffer.clone()`) are
torch calls no hook sees: not recorded (docs/recording.md).
"""
from __future__ import annotations

import sys

from trtprof.capture import engines, state
from trtprof.capture.engines import ContextProxy
from trtprof.capture.recorder import now


class PythonEngineHooks:
    """Patches installed on first sight of a class, removed by `restore`."""

    def __init__(self):
        self.saved: list = []  # (class, attribute, original)
        self.classes: set = set()
        self.engines: list = []  # engines whose context was proxied (weak refs would do; few live)

    def _patch(self, cls, name, wrapper) -> None:
        orig = cls.__dict__.get(name)
        if orig is None:
            return
        self.saved.append((cls, name, orig))
        setattr(cls, name, wrapper(orig))

    def hook_engine(self, cls) -> None:
        if cls in self.classes:
            return
        self.classes.add(cls)
        self._patch(cls, "create_output_tensors", engines.python_create_outputs)
        self._patch(cls, "_create_execution_context", self._context_factory)
        self.hook_allocator(getattr(sys.modules.get(cls.__module__), "DynamicOutputAllocator", None))

    def hook_allocator(self, cls) -> None:
        """Wrap a DynamicOutputAllocator class (2.11/2.12's Python runtime module has its own)."""
        if cls is None or cls in self.classes:
            return
        self.classes.add(cls)
        self._patch(cls, "reallocate_output_async", _reallocate)

    def _context_factory(self, orig):
        hooks = self

        def _create_execution_context(engine, *args, **kwargs):
            ctx = orig(engine, *args, **kwargs)
            if state.ACTIVE is not None:
                hooks.engines.append(engine)
                return ContextProxy(ctx, engine)
            return ctx
        _create_execution_context.__wrapped__ = orig
        return _create_execution_context

    def prepare(self, ins, engine) -> None:
        """Before a call: an engine whose context exists already gets it proxied."""
        ctx = engine.__dict__.get("_context")
        if ctx is not None and type(ctx) is not ContextProxy:
            engine.__dict__["_context"] = ContextProxy(ctx, engine)
            self.engines.append(engine)

    def restore(self) -> None:
        for cls, name, orig in reversed(self.saved):
            setattr(cls, name, orig)
        self.saved.clear()
        self.classes.clear()
        for engine in self.engines:
            ctx = engine.__dict__.get("_context")
            if type(ctx) is ContextProxy:
                engine.__dict__["_context"] = ctx._trt_context
        self.engines.clear()


def _reallocate(orig):
    def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
        ins = state.ACTIVE
        calls = ins.stacks.calls if ins is not None else None
        if not calls:
            return orig(self, tensor_name, memory, size, alignment, stream)
        frame = calls[-1]
        before = self.buffers.get(tensor_name)
        t0 = now()
        try:
            return orig(self, tensor_name, memory, size, alignment, stream)
        finally:
            t1 = now()
            buf = self.buffers.get(tensor_name)
            if buf is not None and buf is not before:  # a new buffer, not the one kept from before
                frame.output_allocator = True
                full = ins.level == "full"
                frame.allocs.append(("output_allocator", t0, t1, (buf.shape,) if full else None,
                                     buf.numel() * buf.element_size() if full else None))
    reallocate_output_async.__wrapped__ = orig
    return reallocate_output_async
