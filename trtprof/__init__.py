"""trtprof: see where Torch-TensorRT inference spends its time (allocation, engines, fallbacks).

Public API::

    trtprof.profile(out=...)   # context manager: capture inside your own process
    trtprof.load(path)         # a capture folder's timeline as a pandas DataFrame
    trtprof.load(path, columns=[...], filter=...)  # part of it, read batch by batch
    trtprof.load(path, lazy=True)                  # a timeline read only when asked (scan.Timeline)
    trtprof.load_capture(path) # the same with its metadata (Capture.timeline, .meta, .path)

The names are resolved on first use (module `__getattr__`), so `import trtprof` loads neither torch
nor pandas: the commands that only read captures start fast, and the analysis can be used on a
machine without torch.
"""
from trtprof._version import __version__

_LAZY = {
    "profile": "trtprof.record.session", "Session": "trtprof.record.session",
    "CaptureOptions": "trtprof.capture.options",
    "load": "trtprof.timeline.store", "load_capture": "trtprof.timeline.store", "Capture": "trtprof.timeline.store",
    "CaptureError": "trtprof.errors", "TrtprofError": "trtprof.errors",
}
__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trtprof' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
