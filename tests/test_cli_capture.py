"""`trtprof capture` end to end in real child processes: argv, -m, exit codes, errors, signals."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import trtprof

ROOT = Path(__file__).resolve().parent.parent


def _run(args, cwd, env, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "trtprof", "capture", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


def _script(tmp_path, body, name="job.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


MODEL = """
import sys
sys.path.insert(0, {tests!r})
import torch
from cpu_models import partitioned
m = partitioned("python")
for _ in range(3):
    m(torch.randn(2, 8))
"""


def test_argv_path_and_name(tmp_path, fake_env):
    s = _script(tmp_path, """
        import json, sys
        json.dump({"argv": sys.argv, "path0": sys.path[0], "name": __name__}, open(sys.argv[1], "w"))
    """)
    out = tmp_path / "o.json"
    r = _run(["-o", str(tmp_path / "cap"), str(s), str(out), "--flag", "-x"], tmp_path, fake_env)
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got == {"argv": [str(s), str(out), "--flag", "-x"], "path0": str(tmp_path), "name": "__main__"}
    assert "capture written" in r.stderr


def test_module_mode(tmp_path, fake_env):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "job.py").write_text("import sys, json\njson.dump([__name__, sys.argv[1:]], open('m.json', 'w'))\n")
    r = _run(["-o", "cap", "-m", "mypkg.job", "a", "b"], tmp_path, fake_env)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text()) == ["__main__", ["a", "b"]]


@pytest.mark.parametrize("body,code,text", [
    ("import sys; sys.exit(7)", 7, None),
    ("import sys; sys.exit('bad input')", 1, "bad input"),
    ("raise SystemExit", 0, None),
])
def test_exit_codes(tmp_path, fake_env, body, code, text):
    s = _script(tmp_path, body)
    r = _run(["-o", str(tmp_path / "cap"), str(s)], tmp_path, fake_env)
    assert r.returncode == code
    if text:
        assert text in r.stderr
    assert trtprof.load_capture(tmp_path / "cap").meta["exit_code"] == code


@pytest.mark.fake_trt
def test_script_exception_one_line_and_capture_kept(tmp_path, fake_env):
    s = _script(tmp_path, MODEL.format(tests=str(ROOT / "support")) + "\nraise RuntimeError('engine exploded')\n")
    r = _run(["-o", str(tmp_path / "cap"), str(s)], tmp_path, fake_env)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    line = [ln for ln in r.stderr.splitlines() if "engine exploded" in ln]
    assert len(line) == 1 and f"{s.name}:" in line[0] and "RuntimeError" in line[0]
    cap = trtprof.load_capture(tmp_path / "cap")
    assert cap.meta["status"] == "incomplete"
    assert (cap.timeline.event == "exec").sum() == 6


@pytest.mark.fake_trt
def test_summary_and_default_folder(tmp_path, fake_env):
    s = _script(tmp_path, MODEL.format(tests=str(ROOT / "support")))
    r = _run([str(s)], tmp_path, fake_env)
    assert r.returncode == 0, r.stderr
    folders = list((tmp_path / "reports").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("job-")
    assert "_run_on_acc_0" in r.stderr and "_run_on_gpu_1" in r.stderr
    cap = trtprof.load_capture(folders[0])
    assert cap.meta["runtime_classes"]["python"].endswith("PythonTorchTensorRTModule")
    r = _run(["-q", str(s)], tmp_path, fake_env)
    assert r.returncode == 0 and r.stderr == ""


def test_missing_script_and_taken_folder(tmp_path, fake_env):
    r = _run(["nope.py"], tmp_path, fake_env)
    assert r.returncode == 3 and r.stderr.strip().endswith("script not found: nope.py")
    assert "Traceback" not in r.stderr
    r = _run(["-m", "no_such_mod_xyz"], tmp_path, fake_env)
    assert r.returncode == 3 and "no module named" in r.stderr
    s = _script(tmp_path, "pass")
    assert _run(["-o", "cap", str(s)], tmp_path, fake_env).returncode == 0
    r = _run(["-o", "cap", str(s)], tmp_path, fake_env)
    assert r.returncode == 4 and "already holds a capture" in r.stderr
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "f").write_text("")
    r = _run(["-o", "ro/f/cap", str(s)], tmp_path, fake_env)
    assert r.returncode == 4 and "Traceback" not in r.stderr


def test_without_torch_tensorrt_says_so(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    s = _script(tmp_path, "print('ran')")
    r = _run(["-o", "cap", str(s)], tmp_path, env)
    if "torch_tensorrt" in r.stderr and "not importable" not in r.stderr:
        pytest.skip("a real torch_tensorrt is installed")
    assert r.returncode == 0 and "ran" in r.stdout
    notes = [ln for ln in r.stderr.splitlines() if "could not record" in ln]
    assert len(notes) == 1 and "torch_tensorrt is not importable" in notes[0]
    assert "no engine can be recorded" in notes[0]


@pytest.mark.fake_trt
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_keeps_capture(tmp_path, fake_env, sig, code):
    body = MODEL.format(tests=str(ROOT / "support")) + textwrap.dedent("""
        open("ready", "w").close()
        import time
        while True:
            m(torch.randn(2, 8))
            time.sleep(0.001)
    """)
    s = _script(tmp_path, body)
    # SIGINT as a terminal gives it: a suite started in the background (`cmd &`) runs with SIGINT
    # ignored, which children inherit and Python then leaves ignored
    p = subprocess.Popen([sys.executable, "-m", "trtprof", "capture", "-o", "cap", str(s)], cwd=tmp_path,
                         env=fake_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not (tmp_path / "ready").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "Traceback" not in err
    cap = trtprof.load_capture(tmp_path / "cap")
    assert cap.meta["status"] == "incomplete"
    assert (cap.timeline.event == "inference").sum() >= 3
