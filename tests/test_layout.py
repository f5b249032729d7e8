"""The package's layout as a contract: each stage imports only earlier ones, and only `capture`
loads torch.

Stages, in the order data flows (docs/development.md): the ground floor (`_version`, `errors`,
`_files`), the timeline contract, the hooks, running a capture, the analyses, the Nsight Systems
wing, the renderers, the CLI. Every import in every module counts, also those inside functions and
under TYPE_CHECKING (a type-only import still has to point down).
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "trtprof"
RANK = {"_version": 0, "errors": 0, "_files": 0, "timeline": 1, "capture": 2, "record": 3, "analysis": 4,
        "nsys": 5, "render": 6, "cli": 7}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "trtprof" else None


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for a in node.names:  # `from trtprof import errors`
                yield f"{node.module}.{a.name}", node.lineno


def _modules():
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        yield ".".join(rel.parts), p


def test_every_module_is_in_a_stage():
    for name, _ in _modules():
        stage = _stage(name)
        assert stage is None or stage in RANK or stage in ("__init__", "__main__"), f"{name}: no stage"


def test_no_stage_imports_a_later_one():
    bad = []
    for name, path in _modules():
        own = _stage(name)
        if own not in RANK:
            continue  # the package face and __main__ sit above every stage
        for target, line in _imports(path):
            t = _stage(target)
            if t in RANK and RANK[t] > RANK[own]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target} ({t})")
    assert not bad, "\n".join(bad)


def test_the_contract_imports_nothing_heavy_from_above():
    """timeline/columns.py and nvtx.py are read by the hooks: no pandas, pyarrow or numpy there."""
    for f in ("columns.py", "nvtx.py"):
        mods = {m.split(".")[0] for m, _ in _imports(PKG / "timeline" / f)}
        assert not mods & {"pandas", "pyarrow", "numpy", "torch"}, f


def _loaded_after(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps("
                          "{m: m in sys.modules for m in ('torch', 'pandas', 'plotly')}))"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_trtprof_loads_neither_torch_nor_pandas():
    assert _loaded_after("import trtprof") == {"torch": False, "pandas": False, "plotly": False}


def test_help_loads_no_torch_and_no_pandas():
    got = _loaded_after("from click.testing import CliRunner\nfrom trtprof.cli import main\n"
                        "assert CliRunner().invoke(main, ['--help']).exit_code == 0")
    assert got == {"torch": False, "pandas": False, "plotly": False}


@pytest.mark.parametrize("argv", [["report", "{cap}", "-q", "-o", "{tmp}/r.html"],
                                  ["compare", "{cap}", "{cap}", "--no-html"],
                                  ["export", "{cap}", "-q", "-o", "{tmp}/t.json"],
                                  ["export", "{cap}", "-q", "-f", "csv", "-o", "{tmp}/t.csv"]])
def test_commands_that_read_captures_load_no_torch(argv, tmp_path):
    cap = ROOT / "reports" / "cases" / "small-cpp"
    args = [a.format(cap=cap, tmp=tmp_path) for a in argv]
    got = _loaded_after("from click.testing import CliRunner\nfrom trtprof.cli import main\n"
                        f"r = CliRunner().invoke(main, {args!r})\nassert r.exit_code == 0, r.output")
    assert got["torch"] is False


def _tests_paths(p: Path) -> list[str]:
    """Where a file outside tests/ names the tests folder as a path: a Python string without spaces
    (a path, not prose) with a `tests` component or an import of it; a shell line (not a comment) that
    names tests/ other than to hand it to pytest (scripts/gpu_tests.sh runs the GPU tests)."""
    if p.suffix == ".py":
        tree = ast.parse(p.read_text(), str(p))
        hits = [f"{p.name}:{line} imports {m}" for m, line in _imports(p) if m.split(".")[0] == "tests"]
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and " " not in node.value \
                    and "tests" in node.value.replace("\\", "/").split("/"):
                hits.append(f"{p.name}:{node.lineno} {node.value!r}")
        return hits
    if p.suffix == ".sh":
        return [f"{p.name}:{i} {line.strip()}" for i, line in enumerate(p.read_text().splitlines(), 1)
                if "tests/" in line and not line.lstrip().startswith("#") and "pytest" not in line]
    return []


def test_scripts_do_not_reach_into_tests():
    """Benchmarks, scripts, examples and the shared support/ stand on their own: what tests and they
    share (the CPU stand-in, the CUDA doubles, the GPU workloads) lives in support/."""
    hits = [h for folder in ("scripts", "bench", "examples", "support")
            for p in sorted((ROOT / folder).rglob("*")) if p.is_file() for h in _tests_paths(p)]
    assert not hits, "\n".join(hits)


def test_the_check_for_tests_paths_can_fail(tmp_path):
    (tmp_path / "b.py").write_text('import sys\nsys.path.insert(0, str(ROOT / "tests"))\n')
    (tmp_path / "c.sh").write_text("python3 tests/gpu/x.py\n# tests/ in a comment\npytest tests/gpu\n")
    assert len(_tests_paths(tmp_path / "b.py")) == 1 and len(_tests_paths(tmp_path / "c.sh")) == 1
