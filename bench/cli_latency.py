"""How long `import trtprof` and each light command take, and whether they import torch.

Why: every command except `capture` should answer fast (a user runs `report` and `compare` dozens of
times), so none of them may import torch, and the report must not pay for more than it draws. Each
figure is the median wall time of N fresh interpreters, measured side by side in one run.

    python3 bench/cli_latency.py [--runs 7] [--capture reports/cases/small-cpp] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(cmd: list[str], runs: int, env: dict) -> dict:
    walls, rc = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        walls.append(time.perf_counter() - t0)
        rc = p.returncode
    return {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3), "rc": rc}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--capture", default=str(ROOT / "reports/cases/small-cpp"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    py = sys.executable
    tmp = Path(tempfile.mkdtemp())
    probe = ("import sys, trtprof; print(int('torch' in sys.modules), int('pandas' in sys.modules))")
    leaked = subprocess.run([py, "-c", probe], capture_output=True, text=True, env=env).stdout.split()
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "import trtprof": [py, "-c", "import trtprof"],
        "trtprof --help": [py, "-m", "trtprof", "--help"],
        "trtprof report --help": [py, "-m", "trtprof", "report", "--help"],
        "trtprof report": [py, "-m", "trtprof", "report", a.capture, "-q", "-o", str(tmp / "r.html")],
        "trtprof compare --no-html": [py, "-m", "trtprof", "compare", a.capture, a.capture, "--no-html"],
        "trtprof compare": [py, "-m", "trtprof", "compare", a.capture, a.capture, "-q", "-o", str(tmp / "c.html")],
        "trtprof export": [py, "-m", "trtprof", "export", a.capture, "-q", "-o", str(tmp / "t.json")],
    }
    res = {"machine": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d"), "capture": os.path.relpath(a.capture, ROOT), "runs": a.runs,
           "import_trtprof_loads_torch": leaked[:1] == ["1"], "import_trtprof_loads_pandas": leaked[1:2] == ["1"],
           "commands": {}}
    for name, cmd in cases.items():
        res["commands"][name] = _time(cmd, a.runs, env)
        print(f"{name:<28} {res['commands'][name]['median_s']:.3f} s (rc {res['commands'][name]['rc']})",
              file=sys.stderr)
    text = json.dumps(res, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
