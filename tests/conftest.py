"""Test set-up: the CPU stand-in for torch_tensorrt, the helpers' import path, and the gpu marker's skip rule."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

FAKE_TRT = Path(__file__).parent.parent / "support" / "fake_trt"
REAL_TRT = importlib.util.find_spec("torch_tensorrt") is not None


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


HAVE_GPU = _cuda() and REAL_TRT
# the helpers beside the tests (report_helpers, nsys_synth) for tests in sub-folders (tests/gpu), and
# what the tests share with the benchmarks and the GPU scripts (support/: the timeline simulator
# synthetic/, the small CPU models, the pure-Python CUDA doubles, the GPU workloads in support/gpu)
sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent / "support")]
if not REAL_TRT:  # CPU CI: the stand-in plays torch_tensorrt
    sys.path.insert(0, str(FAKE_TRT))


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA and torch_tensorrt (run scripts/gpu_tests.sh on a GPU)")
    skip_cpu = pytest.mark.skip(reason="uses the CPU stand-in for torch_tensorrt; the real one is installed")
    for item in items:
        if "gpu" in item.keywords and not HAVE_GPU:
            item.add_marker(skip_gpu)
        if "fake_trt" in item.keywords and REAL_TRT:
            item.add_marker(skip_cpu)


@pytest.fixture
def fake_env():
    """Environment for a child process that should import the stand-in torch_tensorrt."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE_TRT), str(Path(__file__).parent.parent)] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env
