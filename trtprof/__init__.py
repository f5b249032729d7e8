"""trtprof: see where Torch-TensorRT inference spends its time (allocation, engines, fallbacks).

Public API::

    trtprof.profile(out=...)   # context manager: capture inside your own process
    trtprof.load(path)         # a capture folder's timeline as a pandas DataFrame
    trtprof.load_capture(path) # the same with its metadata (Capture.timeline, .meta, .path)
"""
__version__ = "0.1.0"

from trtprof.model.store import Capture, CaptureError, load, load_capture  # noqa: E402
from trtprof.session import Session, profile  # noqa: E402

__all__ = ["Capture", "CaptureError", "Session", "load", "load_capture", "profile", "__version__"]
