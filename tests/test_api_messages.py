"""`trtprof.profile()` as a Python user meets it: a warning (once) for what it cannot record, a clear
`instrument()` contract, messages that name arguments rather than CLI flags, exceptions recorded."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import trtprof
from cpu_models import partitioned
from trtprof.errors import ExitCode
from trtprof.record.session import api_words

ROOT = Path(__file__).resolve().parent.parent


def test_without_torch_tensorrt_profile_warns_once(tmp_path):
    """A fresh process without torch_tensorrt (not even the stand-in): one warning for two blocks."""
    code = textwrap.dedent(f"""
        import warnings, trtprof
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as seen:
            for i in range(2):
                with trtprof.profile(out={str(tmp_path)!r} + f"/p{{i}}") as cap:
                    assert cap.instrument(object()) is False  # nothing can be recorded here: no error
        print(len(seen), seen[0].category.__name__, seen[0].filename)
        print(seen[0].message)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    count, msg = r.stdout.splitlines()
    assert count == "1 TrtprofWarning <string>"  # once, pointing at the caller's line
    assert "torch_tensorrt is not importable" in msg and msg.startswith("trtprof.profile() cannot record")


@pytest.mark.fake_trt
def test_instrument_contract(tmp_path):
    with trtprof.profile(out=tmp_path / "c") as cap:
        assert cap.instrument(partitioned("python")) is True
        with pytest.raises(trtprof.TrtprofError, match="holds no Torch-TensorRT engine") as e:
            cap.instrument(torch.nn.Linear(2, 2))
        assert e.value.exit_code == ExitCode.USAGE


def test_errors_name_arguments_not_flags(tmp_path):
    with trtprof.profile(out=tmp_path / "c"):
        pass
    with pytest.raises(trtprof.TrtprofError) as e:
        with trtprof.profile(out=tmp_path / "c"):
            pass
    assert "with out=" in str(e.value) and "with -o" not in str(e.value)
    with pytest.raises(ValueError) as e:
        with trtprof.profile(out=tmp_path / "d", prealloc="alternate", sample=4):
            pass
    assert "sample=N" in str(e.value) and "--" not in str(e.value)
    with pytest.raises(ValueError) as e:
        with trtprof.profile(out=tmp_path / "e", prealloc="sometimes"):
            pass
    assert "prealloc=" in str(e.value) and "--prealloc" not in str(e.value)
    with pytest.raises(trtprof.TrtprofError) as e:  # not a TypeError about an internal class
        with trtprof.profile(out=tmp_path / "f", levl="full"):
            pass
    assert "unknown option levl" in str(e.value) and "level" in str(e.value) and e.value.exit_code == ExitCode.USAGE
    assert api_words("--no-cpp-allocs and --level minimal") == "cpp_allocs=False and level= minimal"


def test_exception_in_the_block_is_recorded_with_its_message(tmp_path):
    with pytest.raises(KeyError):
        with trtprof.profile(out=tmp_path / "c"):
            raise KeyError("batch 7 missing")
    meta = trtprof.load_capture(tmp_path / "c").meta
    assert meta["status"] == "incomplete"
    assert meta["incomplete_reason"] == "KeyError: 'batch 7 missing' raised inside trtprof.profile()"
