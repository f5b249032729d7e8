"""Every command's output options the same way: one -o rule (FILE, FILE/sub, DIR), -q silences
progress but never the result, `report --open` without a browser says in one line how to open it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthetic import timeline, write_capture
from trtprof.cli import main
from trtprof.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {"report": "report.html", "export": "trace.json", "compare": "compare-a-vs-b.html"}


@pytest.fixture(scope="module")
def caps(tmp_path_factory):
    d = tmp_path_factory.mktemp("caps")
    return write_capture(timeline(30, seed=1), d / "a"), write_capture(timeline(30, seed=2), d / "b")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _args(cmd, caps):
    return [cmd, *caps] if cmd == "compare" else [cmd, caps[0]]


@pytest.mark.parametrize("cmd", sorted(DEFAULTS))
def test_one_output_rule(cmd, caps, tmp_path):
    file = tmp_path / "taken"
    file.write_text("old")
    res = cli(*_args(cmd, caps), "-o", file, "-q")
    assert res.exit_code == 0, res.output
    assert file.read_text() != "old"  # FILE: that file, replaced
    res = cli(*_args(cmd, caps), "-o", file / "sub.x", "-q")
    assert res.exit_code == ExitCode.BAD_OUTPUT
    assert res.stderr.strip() == f"trtprof: cannot write {file / 'sub.x'}: {file} is a file, not a folder"
    folder = tmp_path / "dir"
    folder.mkdir()
    res = cli(*_args(cmd, caps), "-o", folder, "-q")
    assert res.exit_code == 0, res.output
    assert (folder / DEFAULTS[cmd]).is_file()  # DIR: the default name inside it


def _capture(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "trtprof", "capture", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_capture_follows_the_same_rule(tmp_path, fake_env):
    (tmp_path / "job.py").write_text("pass\n")
    file = tmp_path / "taken"
    file.write_text("")
    for out in (file, file / "sub"):
        r = _capture(["-o", out, "job.py"], tmp_path, fake_env)
        assert r.returncode == ExitCode.BAD_OUTPUT
        assert r.stderr.strip().splitlines() == [f"trtprof: cannot write {out}: {file} is a file, not a folder"]
    (tmp_path / "dir").mkdir()
    r = _capture(["-o", tmp_path / "dir", "job.py"], tmp_path, fake_env)
    assert r.returncode == 0 and (tmp_path / "dir" / "meta.json").is_file()  # DIR: the capture folder


def test_quiet_silences_progress_never_the_result(caps, tmp_path, fake_env):
    res = cli("compare", *caps, "-q", "--no-html")
    assert res.exit_code == 0 and res.stdout.startswith("A: ") and "_run_on_acc_0" in res.stdout and res.stderr == ""
    res = cli("compare", *caps, "-q", "-o", tmp_path / "c.html")
    assert res.exit_code == 0 and res.stdout.startswith("A: ") and "_run_on_acc_0" in res.stdout and res.stderr == "" and (tmp_path / "c.html").is_file()
    for cmd, out in (("report", "r.html"), ("export", "t.json")):
        res = cli(cmd, caps[0], "-q", "-o", tmp_path / out)
        assert res.exit_code == 0 and res.output == "" and (tmp_path / out).stat().st_size > 0
    (tmp_path / "job.py").write_text("print('the script speaks')\n")
    r = _capture(["-q", "-o", tmp_path / "cap", "job.py"], tmp_path, fake_env)
    assert r.returncode == 0 and r.stdout == "the script speaks\n" and r.stderr == ""
    assert (tmp_path / "cap" / "timeline.parquet").is_file()


def _noisy_xdg_open(bin_dir: Path, code: int) -> None:
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "xdg-open"
    exe.write_text(f"#!/bin/sh\necho \"$1\" > {bin_dir}/opened\n"
                   + "".join(f"echo 'xdg-open: noise line {i}' >&2\n" for i in range(7)) + f"exit {code}\n")
    exe.chmod(0o755)


@pytest.mark.parametrize("display,code,opened", [(None, 0, False), (":0", 4, False), (":0", 0, True)])
def test_report_open_without_a_browser_is_one_line(caps, tmp_path, display, code, opened):
    bin_dir = tmp_path / "bin"
    _noisy_xdg_open(bin_dir, code)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PYTHONPATH=str(ROOT), **({"DISPLAY": display} if display else {}))
    out = tmp_path / "r.html"
    r = subprocess.run([sys.executable, "-m", "trtprof", "report", caps[0], "-o", out, "--open"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert "noise" not in r.stderr and lines[0].startswith("report written")
    if opened:
        assert len(lines) == 1 and (bin_dir / "opened").read_text().strip() == out.resolve().as_uri()
    else:
        assert len(lines) == 2 and lines[1] == (f"trtprof: no browser to open the report here: open {out.resolve()} "
                                                "in a browser (copy the file to a machine that has one)")
    assert (bin_dir / "opened").exists() == (display is not None)  # no display: xdg-open never runs


@pytest.mark.parametrize("cmd", ["capture", "report", "export", "compare", "nsys-import"])
def test_every_help_has_an_example(cmd):
    res = cli(cmd, "--help")
    assert res.exit_code == 0 and "Example:" in res.output and f"trtprof {cmd}" in res.output
    top = cli("--help")
    assert "Example:" in top.output and cmd in top.output


@pytest.mark.parametrize("args, what", [
    (["capture", "--prealloc", "maybe", "x.py"], "Invalid value for '--prealloc'"),
    (["export", "CAP", "--format", "xml"], "'xml' is not one of"),
    (["report"], "Missing argument 'CAPTURE'"),
    (["--bogus"], "No such option '--bogus'"),
    (["frob"], "No such command 'frob'"),
])
def test_a_usage_error_is_one_line(args, what, caps):
    """click's usage error is four lines (usage, hint, blank, error): here one `trtprof:` line that
    says where the help is, exit 2."""
    res = CliRunner().invoke(main, [str(caps[0]) if a == "CAP" else a for a in args])
    lines = res.output.strip().splitlines()
    assert res.exit_code == ExitCode.USAGE and len(lines) == 1, res.output
    assert lines[0].startswith("trtprof: ") and what in lines[0] and "--help'" in lines[0]


def test_trtprof_alone_still_shows_the_help():
    res = CliRunner().invoke(main, [], prog_name="trtprof")
    assert "Usage: trtprof [OPTIONS] COMMAND" in res.output and "capture" in res.output
