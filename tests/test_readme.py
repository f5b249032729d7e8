"""Every shell command of the README runs as written on a CPU machine.

The README's ```bash blocks are read line by line; a line ending in `# needs a GPU` or `# needs
nsys` is skipped (docs/development.md says so), and `bash scripts/test.sh` is this suite itself.
The commands run in order, in a scratch copy of the files they use, through a `trtprof` console
script of this checkout, without the torch_tensorrt stand-in: what a user on a CPU machine gets.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = ("# needs a GPU", "# needs nsys")
ITSELF = "bash scripts/test.sh"


def readme_commands(text: str) -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def runnable(commands: list[str]) -> list[str]:
    return [c for c in commands if not c.endswith(SKIP) and not c.startswith(ITSELF)]


def test_the_readme_marks_what_it_skips():
    commands = readme_commands((ROOT / "README.md").read_text())
    assert ITSELF in " ".join(commands) and "bash examples/demo.sh" in " ".join(commands)
    skipped = [c for c in commands if c.endswith(SKIP)]
    assert skipped and all("--nsys" in c or "nsys-import" in c or "bert_cases" in c or "reports/ranks" in c
                             for c in skipped)
    assert len(runnable(commands)) >= 6


@pytest.fixture
def scratch(tmp_path):
    for d in ("examples", "reports/cases/small-cpp", "reports/cases/small-python", "reports/cudagraphs/small-cpp"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__", "report.html"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "trtprof"
    exe.write_text(f"#!{sys.executable}\nimport sys\nfrom trtprof.cli import main\nsys.exit(main())\n")
    exe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PYTHONPATH=str(ROOT), TRTPROF_DEMO_NO_INSTALL="1")
    return tmp_path, env


def test_every_readme_command_runs_as_written(scratch):
    folder, env = scratch
    for cmd in runnable(readme_commands((ROOT / "README.md").read_text())):
        r = subprocess.run(["bash", "-c", cmd], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stderr, f"{cmd}\n{r.stderr}"
        if cmd.startswith("bash examples/demo.sh"):  # a CPU machine: the committed GPU capture is shown
            line = [x for x in r.stderr.splitlines() if "committed GPU capture" in x]
            assert len(line) == 1 and "NVIDIA H200, 2026-12-04" in line[0], r.stderr
            assert (folder / "reports" / "example-gpu-small-python.html").stat().st_size > 100_000
            assert "could not record everything" in r.stderr
    assert (folder / "reports" / "infer" / "meta.json").is_file()
    assert all((folder / "reports" / "ranks" / f"rank{r}" / "meta.json").is_file() for r in (0, 1))  # torchrun
    assert (folder / "reports" / "small-cpp.csv").is_file() and (folder / "reports" / "small-cpp.html").is_file()
