"""After a demo capture that recorded no GPU work: render the report of a committed GPU capture.

Why: on a machine without CUDA or torch_tensorrt the demo's own capture holds no engine rows, so
there is nothing of the product to look at. This renders `reports/cases/small-python` (a real
capture, named with the machine and date from its meta.json) next to it and prints where both are.
    python3 examples/gpu_example.py CAPTURE_FOLDER
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path("reports/cases/small-python")
OUT = Path("reports/example-gpu-small-python.html")


def recorded_gpu(folder: Path) -> bool:
    import trtprof

    try:
        df = trtprof.load(folder)
    except Exception:  # noqa: BLE001 - no capture (the script failed early): nothing recorded
        return False
    return bool(len(df)) and bool(df["gpu_start_ns"].notna().any())


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else None
    if folder is not None and recorded_gpu(folder):
        return 0
    meta = json.loads((EXAMPLE / "meta.json").read_text())
    env = meta.get("environment", {})
    machine, date = env.get("gpu", "unknown GPU"), str(meta.get("start_time", "unknown date"))[:10]
    r = subprocess.run(["trtprof", "report", str(EXAMPLE), "-o", str(OUT), "-q"])
    if r.returncode:
        print(f"trtprof: could not render the example GPU capture {EXAMPLE} (exit {r.returncode})", file=sys.stderr)
        return r.returncode
    print(f"no GPU work recorded here (no CUDA or no torch_tensorrt); this machine's capture: {folder}/. "
          f"A committed GPU capture ({EXAMPLE}, {machine}, {date}) is rendered instead: {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
