"""NVTX with a tool attached: a no-op injection library makes nvtx hand out real domains, so the
code path that runs under Nsight Systems is exercised on CPU (it differs from the dummy one)."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.fake_trt,
              pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")]


@pytest.fixture(scope="module")
def injection(tmp_path_factory):
    d = tmp_path_factory.mktemp("inj")
    (d / "inj.c").write_text("int InitializeInjectionNvtx2(const void *f) { (void)f; return 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(d / "libinj.so"), str(d / "inj.c")], check=True)
    return d / "libinj.so"


def test_capture_with_nvtx_tool_attached(tmp_path, fake_env, injection):
    s = tmp_path / "job.py"
    s.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'support')!r})
        import nvtx, torch, torch_tensorrt
        from cpu_models import partitioned
        assert type(nvtx.get_domain("trtprof")).__name__ == "Domain"  # a real one: a tool is attached
        m = partitioned("python")
        with torch_tensorrt.runtime.enable_pre_allocated_outputs(m):
            for _ in range(3):
                m(torch.randn(2, 8))
    """))
    env = dict(fake_env, NVTX_INJECTION64_PATH=str(injection))
    r = subprocess.run([sys.executable, "-m", "trtprof", "capture", "-o", "cap", str(s)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import trtprof
    cap = trtprof.load_capture(tmp_path / "cap")
    assert cap.meta["status"] == "complete" and (cap.timeline.event == "alloc").sum() >= 6
