"""`trtprof capture` runs its target as python would: -m from the current folder without importing the
parent early, a folder with __main__.py, an absolute __file__, the command as typed, the script's
traceback kept, and whose exit code it was."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import trtprof
from trtprof.record import runner, script

ROOT = Path(__file__).resolve().parent.parent


def _trtprof(args, cwd, env, launcher="module", timeout=120):
    """Run trtprof as a user would: `python -P -m trtprof` (-P: the current folder is not put on
    sys.path by python itself, as with the console script) or through a console script named trtprof."""
    if launcher == "module":
        cmd = [sys.executable, "-P", "-m", "trtprof", *args]
    else:
        cmd = [str(_console_script(Path(cwd).parent / "bin")), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _console_script(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    exe = folder / "trtprof"
    exe.write_text(f"#!{sys.executable}\nimport sys\nfrom trtprof.cli import main\nsys.exit(main())\n")
    exe.chmod(0o755)
    return exe


def _package(where: Path) -> None:
    """mypkg/__init__.py notes, when imported, whether a capture was already recording."""
    pkg = where / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import json, sys
        from trtprof.capture import state
        json.dump({"argv": sys.argv[1:], "recording": state.OWNER is not None}, open("parent.json", "w"))
    """))
    (pkg / "infer.py").write_text("import json, sys\njson.dump([__name__, sys.argv[1:]], open('m.json', 'w'))\n")


@pytest.fixture
def work(tmp_path):
    w = tmp_path / "work"
    w.mkdir()
    return w


@pytest.mark.parametrize("launcher", ["module", "console"])
def test_module_in_the_current_folder_runs_and_its_parent_is_imported_while_recording(work, fake_env, launcher):
    _package(work)
    r = _trtprof(["capture", "-o", "cap", "-m", "mypkg.infer", "a", "b"], work, fake_env, launcher)
    assert r.returncode == 0, r.stderr
    assert json.loads((work / "m.json").read_text()) == ["__main__", ["a", "b"]]
    assert json.loads((work / "parent.json").read_text()) == {"argv": ["a", "b"], "recording": True}


def test_module_check_imports_nothing(work, monkeypatch):
    _package(work)
    monkeypatch.chdir(work)
    assert script.check_target("mypkg.infer", module=True) == "infer"
    assert "mypkg" not in sys.modules and not (work / "parent.json").exists()
    with pytest.raises(trtprof.TrtprofError, match="'mypkg' is a package"):
        script.check_target("mypkg", module=True)  # no mypkg/__main__.py, as python -m would say
    with pytest.raises(trtprof.TrtprofError, match="no module named 'mypkg.nothing'") as e:
        script.check_target("mypkg.nothing", module=True)
    assert e.value.exit_code == 3


PROBE = "import json, sys\njson.dump({{'file': __file__, 'path0': sys.path[0], 'argv': sys.argv}}, open({out!r}, 'w'))\n"


@pytest.mark.parametrize("kind", ["folder", "script"])
def test_target_runs_like_python(work, fake_env, kind):
    """`python DIR` and `python job.py` (a relative path): same __file__ (absolute), sys.path[0], argv."""
    target = "app" if kind == "folder" else "job.py"
    body = PROBE.format(out=str(work.parent / "probe.json"))
    if kind == "folder":
        (work / "app").mkdir()
        (work / "app" / "__main__.py").write_text(body)
    else:
        (work / "job.py").write_text(body)
    subprocess.run([sys.executable, target, "x"], cwd=work, env=fake_env, check=True)
    expected = json.loads((work.parent / "probe.json").read_text())
    r = _trtprof(["capture", "-o", "cap", target, "x"], work, fake_env)
    assert r.returncode == 0, r.stderr
    assert json.loads((work.parent / "probe.json").read_text()) == expected
    assert Path(expected["file"]).is_absolute()


def test_folder_without_main_is_one_line(work, fake_env):
    (work / "empty").mkdir()
    r = _trtprof(["capture", "empty"], work, fake_env)
    assert r.returncode == 3 and "without __main__.py" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("launcher,first", [("module", None), ("console", ["trtprof", "capture"])])
def test_meta_records_the_command_as_typed(work, fake_env, launcher, first):
    (work / "job.py").write_text("pass\n")
    r = _trtprof(["capture", "-o", "cap", "job.py", "--flag"], work, fake_env, launcher)
    assert r.returncode == 0, r.stderr
    command = trtprof.load_capture(work / "cap").meta["command"]
    expected = first or [sys.executable, "-P", "-m", "trtprof", "capture"]
    assert command == expected + ["-o", "cap", "job.py", "--flag"]


def test_traceback_is_kept_in_the_capture_folder(work, fake_env):
    (work / "job.py").write_text("def inner():\n    raise ValueError('boom')\n\ndef outer():\n    inner()\n\nouter()\n")
    r = _trtprof(["capture", "-o", "cap", "job.py"], work, fake_env)
    assert r.returncode == 1
    line = [x for x in r.stderr.splitlines() if "the script stopped" in x]
    assert len(line) == 1 and "ValueError: boom (at job.py:2)" in line[0] and "cap/traceback.txt" in line[0]
    tb = (work / "cap" / "traceback.txt").read_text()
    assert tb.startswith("Traceback (most recent call last):") and tb.rstrip().endswith("ValueError: boom")
    assert "in outer" in tb and "in inner" in tb and "runpy" not in tb and "trtprof" not in tb
    meta = trtprof.load_capture(work / "cap").meta
    assert meta["traceback"] == "traceback.txt" and meta["exit_code_from"] == "script"


@pytest.mark.parametrize("code", [3, 4, 8])
def test_script_exit_codes_that_look_like_trtprofs_are_told_apart(work, fake_env, code):
    (work / "job.py").write_text(f"import sys\nsys.exit({code})\n")
    r = _trtprof(["capture", "-o", "cap", "job.py"], work, fake_env)
    assert r.returncode == code  # passed through
    assert f"the script exited with {code}, its own code" in r.stderr
    meta = trtprof.load_capture(work / "cap").meta
    assert meta["exit_code"] == code and meta["exit_code_from"] == "script"
    q = _trtprof(["capture", "-q", "-o", "cap2", "job.py"], work, fake_env)
    assert q.returncode == code and q.stderr == ""


def test_interrupted_exit_code_is_trtprofs():
    assert script.exit_code_from(runner.RunResult(130, "interrupted", interrupted=True)) == "trtprof"
    assert script.exit_code_from(runner.RunResult(1, "ValueError")) == "script"
