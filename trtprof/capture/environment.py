"""What ran: versions of the stack and the GPU, recorded in every capture's metadata.

Why here and not in the writer: only the capturing process can tell which TensorRT (full TensorRT or
TensorRT-RTX) torch_tensorrt really loaded. Each probe is guarded: a missing piece is recorded as
null, never an error.
"""
from __future__ import annotations

import importlib
import platform
import shutil
import subprocess
import sys


def _version(module: str):
    m = sys.modules.get(module)
    if m is None:
        try:
            m = importlib.import_module(module)
        except Exception:
            return None
    v = getattr(m, "__version__", None)
    if v is None:
        try:
            from importlib.metadata import version
            v = version(module)
        except Exception:
            pass
    return v


def _driver_version():
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def describe(import_tensorrt: bool = False) -> dict:
    """Versions and hardware. Imports TensorRT only if asked (or already imported by the script)."""
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nvtx": _version("nvtx"),
        "torch_tensorrt": None,
        "tensorrt": None,
        "tensorrt_backend": None,
        "gpu": None,
        "gpu_capability": None,
        "driver": None,
    }
    if import_tensorrt or "torch_tensorrt" in sys.modules:
        info["torch_tensorrt"] = _version("torch_tensorrt")
    for mod, backend in (("tensorrt_rtx", "TensorRT-RTX"), ("tensorrt", "TensorRT")):
        if mod in sys.modules or (import_tensorrt and _version(mod)):
            v = _version(mod)
            if v:
                info["tensorrt"], info["tensorrt_backend"] = v, backend
                break
    if torch.cuda.is_available():
        try:
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        except Exception:
            pass
        info["driver"] = _driver_version()
    return info
