"""Hostile or damaged capture folders and outputs: planted links, -o naming a capture's own files,
spreadsheet formulas, control characters in every printed line, the right exit code for each failure,
and nsys exports that never end or whose clock was moved.
"""
import json
import lzma
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import trtprof
from synthetic import timeline, write_capture
from trtprof.cli import main
from trtprof.errors import NsysError
from trtprof.timeline import store

DATA = Path(__file__).parent / "data" / "nsys"
HOSTILE = "\x1b[2J\u202eevil"


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def _cap(tmp_path, name="cap", **kw):
    return write_capture(timeline(12, **kw), tmp_path / name)


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# -- planted links ---------------------------------------------------------------------------------------
PLANTED = ["trace.json.tmp", "timeline.csv.tmp", "nsys.parquet.tmp", "nsys.json.tmp", "meta.tmp",
           "timeline.parquet.tmp", "kernels.parquet.tmp", "report.html.tmp", "timeline.arrows"]


def _plant(folder: Path, victim: Path, names=PLANTED):
    for n in names:
        (folder / n).symlink_to(victim)


def test_planted_links_are_never_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    cap = _cap(tmp_path)
    _plant(cap, victim, [n for n in PLANTED if n != "timeline.arrows"])
    assert cli("export", cap).exit_code == 0
    assert cli("export", cap, "-f", "csv").exit_code == 0
    fresh = tmp_path / "fresh"  # a capture into a folder that holds the links, except the spill's
    fresh.mkdir()
    _plant(fresh, victim, [n for n in PLANTED if n != "timeline.arrows"])
    with trtprof.profile(fresh):
        pass
    assert victim.read_text() == "precious"
    assert (cap / "trace.json").is_file() and not (cap / "trace.json").is_symlink()


def test_a_planted_spill_link_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / store.SPILL).symlink_to(victim)
    with pytest.raises(trtprof.errors.TrtprofError):
        trtprof.Session(tmp_path / "c").start()
    assert victim.read_text() == "precious" and not (tmp_path / "c" / store.LOCK).exists()


def test_random_temporaries_skip_a_name_that_exists(tmp_path, monkeypatch):
    """The temporary's name is random and created exclusively: even a link planted under the very
    name it would have drawn is skipped, never opened."""
    from trtprof import _files

    victim = tmp_path / "victim"
    victim.write_text("precious")
    names = iter(["planted", "planted", "free"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    (tmp_path / ".out.json.planted.tmp").symlink_to(victim)
    _files.write_text(tmp_path / "out.json", "new")
    assert victim.read_text() == "precious" and (tmp_path / "out.json").read_text() == "new"


# -- -o naming a capture's own files --------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("export", "{cap}", "-f", "csv", "-o", "{cap}/timeline.parquet"),
    ("export", "{cap}", "-o", "{cap}/meta.json"),
    ("export", "{cap}", "-o", "{cap}/kernels.parquet"),
    ("export", "{cap}", "-o", "{cap}/nsys_kernels.parquet"),
    ("export", "{cap}", "-o", "{cap}/nsys.nsys-rep"),
    ("compare", "{cap}", "{cap}", "-o", "{cap}/meta.json"),
    ("report", "{cap}", "-o", "{cap}/timeline.parquet"),
])
def test_outputs_never_replace_a_captures_files(tmp_path, args):
    pytest.importorskip("plotly")
    cap = _cap(tmp_path)
    before = _snapshot(cap)
    r = cli(*[a.format(cap=cap) for a in args])
    assert r.exit_code == 4 and "part of the capture" in r.output, r.output
    assert _snapshot(cap) == before


# -- spreadsheets and terminals ---------------------------------------------------------------------------
def test_csv_cells_that_a_spreadsheet_would_run_are_defused(tmp_path):
    cap = write_capture(timeline(6, model='=HYPERLINK("http://x","y")', engines=("+cmd", "@SUM(A1)"),
                                 fallback="-2+3"), tmp_path / "cap")
    assert cli("export", cap, "-f", "csv").exit_code == 0
    df = pd.read_csv(cap / "timeline.csv", dtype=str, keep_default_na=False)
    text = df[["model", "subgraph"]].to_numpy().ravel()
    assert not [t for t in text if t[:1] in "=+-@"]
    assert "'=HYPERLINK(\"http://x\",\"y\")" in set(df.model)
    assert pd.to_numeric(df.host_start_ns).notna().all()  # numbers stay numbers


def test_every_printed_line_is_escaped(tmp_path, fake_env):
    pytest.importorskip("plotly")
    import subprocess
    d = tmp_path / f"dir{HOSTILE}"
    d.mkdir()
    script = d / f"job{HOSTILE}.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent.parent / "support")!r})
import torch
from cpu_models import partitioned
m = partitioned("python")
m._run_on_acc_0.name = {HOSTILE!r}
for _ in range(3):
    m(torch.randn(2, 8))
raise RuntimeError({HOSTILE!r})
""")
    out = tmp_path / f"cap{HOSTILE}"
    r = subprocess.run([sys.executable, "-m", "trtprof", "capture", "-o", str(out), str(script), HOSTILE],
                       cwd=tmp_path, env=fake_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    texts = [r.stdout + r.stderr]
    meta = json.loads((out / "meta.json").read_text())
    assert HOSTILE in meta["incomplete_reason"]  # stored as it was, escaped only when printed
    for args in (("export", out), ("export", out, "-f", "csv"), ("report", out), ("compare", out, out, "--no-html"),
                 ("report", tmp_path / f"missing{HOSTILE}")):
        res = CliRunner().invoke(main, [*map(str, args)])
        texts.append(res.stdout + res.stderr)
    for t in texts:
        assert "\x1b" not in t and "\u202e" not in t, t
    assert "\\x1b[2J\\u202eevil" in texts[0]


# -- exit codes -------------------------------------------------------------------------------------------
def test_a_random_bytes_spill_is_not_a_capture(tmp_path):
    cap = _cap(tmp_path)
    (cap / "timeline.parquet").unlink()
    (cap / store.SPILL).write_bytes(os.urandom(4096))
    for args in (("export", cap), ("report", cap), ("compare", cap, cap, "--no-html")):
        r = cli(*args)
        assert r.exit_code == 5 and "not a readable Arrow stream" in r.output, (args, r.output)


def test_an_empty_spill_is_an_empty_capture(tmp_path):
    cap = _cap(tmp_path)
    (cap / "timeline.parquet").unlink()
    (cap / store.SPILL).write_bytes(b"")
    assert cli("export", cap).exit_code == 6


def test_an_unreadable_folder_is_exit_5_on_every_command(tmp_path, monkeypatch):
    """As root nothing is unreadable: what click and the loader see is played instead."""
    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # click's readable check
    real = Path.read_bytes

    def denied(self):
        if self.name == "meta.json":
            raise PermissionError(13, "Permission denied")
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", denied)
    cap = _cap(tmp_path)
    for args in (("report", "{d}"), ("export", "{d}"), ("compare", "{d}", "{d}"), ("nsys-import", "{d}")):
        for d in (tmp_path / "locked", cap):
            r = cli(*[a.format(d=d) for a in args])
            assert r.exit_code == 5, (args, r.output)
            if d == cap:
                assert "cannot read" in r.output and "Permission denied" in r.output and "JSON" not in r.output


def test_nan_in_meta_json(tmp_path):
    cap = _cap(tmp_path)
    meta = json.loads((cap / "meta.json").read_text())
    meta.update(duration_s=float("nan"), gpu_anchor_error_ns=float("inf"))
    (cap / "meta.json").write_text(json.dumps(meta))
    for fmt in ("perfetto", "csv"):
        r = cli("export", cap, "-f", fmt)
        assert r.exit_code == 0, r.output
    assert trtprof.load_capture(cap).meta["duration_s"] is None


# -- nsys exports -----------------------------------------------------------------------------------------
def test_a_recursive_view_does_not_hang_the_reader(tmp_path, monkeypatch):
    from trtprof.nsys import reader
    monkeypatch.setattr(reader, "READ_TIMEOUT_S", 0.5)
    db = tmp_path / "loop.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE VIEW NVTX_EVENTS AS WITH RECURSIVE r(start, end, text, textId, globalTid, domainId, "
                "eventType) AS (SELECT 0, 1, 'trtprof', 0, 1, 0, 75 UNION ALL SELECT start + 1, end, text, "
                "textId, globalTid, domainId, eventType FROM r) SELECT * FROM r")
    con.commit()
    con.close()
    with pytest.raises(NsysError, match="took more than 0.5 s"):
        reader.read_sqlite(db)


def test_a_shifted_nvtx_clock_is_refused(tmp_path):
    from trtprof.nsys import join, reader
    db = tmp_path / "shifted.sqlite"
    db.write_bytes(lzma.decompress((DATA / "two_engines.sqlite.xz").read_bytes()))
    con = sqlite3.connect(db)
    con.execute("UPDATE NVTX_EVENTS SET start = start + 100000000000, end = end + 100000000000")
    con.commit()
    con.close()
    cap = trtprof.load_capture(DATA / "two_engines_capture")
    with pytest.raises(NsysError, match="implausible"):
        join.join(cap.timeline, reader.read_sqlite(db), cap.meta)


# -- inferences that raised -------------------------------------------------------------------------------
@pytest.mark.fake_trt
@pytest.mark.parametrize("runtime", ["python", "cpp"])
def test_an_inference_that_raised_is_left_out_of_timing(tmp_path, runtime):
    from cpu_models import partitioned
    from trtprof.analysis import latency
    m = partitioned(runtime)
    with trtprof.profile(tmp_path / "c", cpp_allocs=False) as cap:
        cap.instrument(m)
        for i in range(5):
            try:
                m(torch.randn(2, 8 if i != 2 else 5))  # the third raises inside the first engine
            except RuntimeError:
                pass
    df = cap.timeline
    bad = df[df.inference == 2]
    top = bad[bad.event == "inference"]
    assert len(top) == 1 and top.exclude.all() and top.note.str.contains("raised RuntimeError").all()
    calls = bad[bad.event == "call"]
    assert len(calls) == 1 and calls.exclude.all()
    assert not df[~df.inference.isin([0, 2])].exclude.fillna(False).any()  # 0: the cold start
    assert df[df.inference == 0].note.str.contains("cold start").all()
    lat = latency.inference_latency(df)
    assert bool(lat.set_index("inference").loc[2, "excluded"])
    assert latency.latency_summary(lat)["n"].sum() == 3
