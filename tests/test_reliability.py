"""Reliability: crashes keep what was recorded, bad inputs get one line and an exit code, captures
never clobber each other, and loading a capture never runs anything from its folder.

Child processes are real (`python -m trtprof capture`) and synchronise through files the script
writes, never through sleeps, so nothing here depends on timing.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import trtprof
from trtprof.capture import records as R
from trtprof.timeline import store
from trtprof.timeline.store import CaptureError, CaptureWriter

ROOT = Path(__file__).resolve().parent.parent
TESTS = str(ROOT / "support")

MODEL = f"""
import os, sys
sys.path.insert(0, {TESTS!r})
import torch
from cpu_models import partitioned
m = partitioned("python")
"""


def _script(tmp_path, body, name="job.py"):
    p = tmp_path / name
    p.write_text(MODEL + textwrap.dedent(body))
    return p


def _capture(args):
    return [sys.executable, "-m", "trtprof", "capture", *args]


def _run(args, cwd, env, timeout=120):
    return subprocess.run(_capture(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _wait_for(path: Path, proc, limit=90):
    """Wait until the child created `path` (a sync point, not a timing assumption)."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "child never reached the sync point"
        time.sleep(0.02)


def _error_lines(stderr):
    """trtprof's own lines, less the progress line and the note that a CPU machine has no CUDA."""
    return [ln for ln in stderr.splitlines() if ln.startswith("trtprof:")
            and "capturing" not in ln and "could not record" not in ln]


def _rec(i):
    r = R.blank()
    for k, v in dict(seq=i, pid=1, thread=2, model="model0", inference=i, subgraph="_run_on_acc_0",
                     subgraph_kind="engine", runtime="python", event="exec", call=i, host_start_ns=10 * i,
                     host_end_ns=10 * i + 5).items():
        r[R.INDEX[k]] = v
    return r


# -- crashes -------------------------------------------------------------------------------------------
@pytest.mark.fake_trt
def test_sigkill_keeps_every_spilled_batch(tmp_path, fake_env):
    """SIGKILL cannot be caught: what is on disk is every batch spilled before it, a gapless prefix."""
    s = _script(tmp_path, """
        for _ in range(40):
            m(torch.randn(2, 8))
        open("ready", "w").close()
        while True:
            m(torch.randn(2, 8))
    """)
    env = dict(fake_env, TRTPROF_BATCH_ROWS="16")
    p = subprocess.Popen(_capture(["-o", "cap", str(s)]), cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "ready", p)
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    cap = trtprof.load_capture(tmp_path / "cap")
    assert cap.meta["status"] == "incomplete" and not cap.complete
    assert "ended before finishing" in cap.meta["incomplete_reason"]
    df = cap.timeline
    assert list(df.seq) == list(range(len(df)))  # nothing lost in the middle
    # 40 inferences ran before "ready"; at most one batch (16 rows) plus one inference waits in memory
    assert (df.event == "exec").sum() >= 2 * 35


@pytest.mark.fake_trt
def test_os_exit_writes_the_capture(tmp_path, fake_env):
    s = _script(tmp_path, """
        for _ in range(5):
            m(torch.randn(2, 8))
        os._exit(3)
    """)
    r = _run(["-o", "cap", str(s)], tmp_path, fake_env)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    cap = trtprof.load_capture(tmp_path / "cap")
    assert cap.meta["status"] == "incomplete" and cap.meta["exit_code"] == 3
    assert "os._exit(3) at job.py:" in cap.meta["incomplete_reason"]
    assert (cap.timeline.event == "exec").sum() == 10  # the rows still in memory were written
    assert not (tmp_path / "cap" / store.SPILL).exists() and not (tmp_path / "cap" / store.LOCK).exists()


@pytest.mark.fake_trt
def test_os_exit_in_a_forked_child_leaves_the_capture_alone(tmp_path, fake_env):
    s = _script(tmp_path, """
        m(torch.randn(2, 8))
        pid = os.fork()
        if pid == 0:
            os._exit(0)  # like a multiprocessing worker: must not write the parent's capture
        os.waitpid(pid, 0)
        m(torch.randn(2, 8))
    """)
    r = _run(["-o", "cap", str(s)], tmp_path, fake_env)
    assert r.returncode == 0, r.stderr
    cap = trtprof.load_capture(tmp_path / "cap")
    assert cap.complete and (cap.timeline.event == "exec").sum() == 4


def test_kill_during_close_leaves_a_loadable_folder(tmp_path):
    """close() writes parquet under a temporary name, then meta.json, then removes the spill: a kill
    between any two steps leaves a folder that loads, marked incomplete until meta.json says so."""
    w = CaptureWriter(tmp_path / "a", {})
    w.write([_rec(i) for i in range(7)])
    w._sink.flush()
    (tmp_path / "a" / "timeline.parquet.tmp").write_bytes(b"PAR1 half written")  # killed mid-parquet
    cap = trtprof.load_capture(tmp_path / "a")
    assert cap.meta["status"] == "incomplete" and len(cap.timeline) == 7

    w = CaptureWriter(tmp_path / "b", {})
    w.write([_rec(i) for i in range(7)])
    w._stream.close()
    store._spill_to_parquet(tmp_path / "b" / store.SPILL, tmp_path / "b" / store.TIMELINE)  # killed next
    cap = trtprof.load_capture(tmp_path / "b")
    assert cap.meta["status"] == "incomplete" and len(cap.timeline) == 7


def test_close_streams_row_groups_and_load_reads_them(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "ROW_GROUP", 5)
    w = CaptureWriter(tmp_path / "c", {})
    for i in range(0, 23, 3):
        w.write([_rec(j) for j in range(i, min(i + 3, 23))])
    w.close()
    f = pq.ParquetFile(tmp_path / "c" / store.TIMELINE)
    assert f.metadata.num_rows == 23 and f.metadata.num_row_groups == 4  # 6+6+6+5: whole spill batches
    assert list(trtprof.load(tmp_path / "c").seq) == list(range(23))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["meta.json", "timeline.parquet"]


def test_close_keeps_the_spill_when_parquet_fails(tmp_path, monkeypatch):
    def full(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(store, "_spill_to_parquet", full)
    w = CaptureWriter(tmp_path / "c", {})
    w.write([_rec(i) for i in range(4)])
    w.close(status="complete")
    cap = trtprof.load_capture(tmp_path / "c")
    assert cap.meta["status"] == "incomplete" and "No space left" in cap.meta["incomplete_reason"]
    assert len(cap.timeline) == 4


def test_killed_before_the_first_batch_loads_empty(tmp_path):
    CaptureWriter(tmp_path / "c", {})  # never written, never closed
    cap = trtprof.load_capture(tmp_path / "c")
    assert cap.meta["status"] == "incomplete" and cap.timeline.empty
    assert list(cap.timeline.columns) == list(trtprof.timeline.schema.COLUMNS)


# -- bad inputs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("files,script,where", [
    ({"job.py": "x = 1\ndef f(:\n    pass\n"}, "job.py", "job.py:2"),
    ({"job.py": "x = 1\n  y = 2\n"}, "job.py", "job.py:2"),
    ({"job.py": "a = 1\x00\n"}, "job.py", "job.py"),
    ({"job.py": "import sys\nsys.path.insert(0, 'lib')\nimport broken\n", "lib/broken.py": "def g(:\n"},
     "job.py", "lib/broken.py:1, imported at job.py:3"),
    ({"job.py": "import no_such_module_xyz\n"}, "job.py", "job.py:1"),
])
def test_script_that_fails_at_import(tmp_path, fake_env, files, script, where):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    r = _run(["-o", "cap", script], tmp_path, fake_env)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and f"(at {where})" in lines[0], r.stderr
    assert trtprof.load_capture(tmp_path / "cap").meta["status"] == "incomplete"


def test_unreadable_script(tmp_path, fake_env):
    (tmp_path / "adir.py").mkdir()
    r = _run(["adir.py"], tmp_path, fake_env)
    assert r.returncode == 3 and _error_lines(r.stderr) == [  # a folder runs only with a __main__.py, as in python
        "trtprof: adir.py is a folder without __main__.py: nothing to run"]
    s = tmp_path / "secret.py"
    s.write_text("pass\n")
    s.chmod(0)
    if os.access(s, os.R_OK):
        pytest.skip("running as root: a mode-000 file is still readable")
    r = _run(["secret.py"], tmp_path, fake_env)
    assert r.returncode == 3 and _error_lines(r.stderr) == ["trtprof: script not readable: secret.py"]


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_bad_batch_rows_setting(tmp_path, fake_env, value):
    (tmp_path / "job.py").write_text("pass\n")
    r = _run(["-o", "cap", "job.py"], tmp_path, dict(fake_env, TRTPROF_BATCH_ROWS=value))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(_error_lines(r.stderr)) == 1 and "TRTPROF_BATCH_ROWS" in r.stderr
    assert not (tmp_path / "cap").exists()


def test_two_captures_at_once_into_one_folder(tmp_path, fake_env):
    """Both start together; exactly one writes, the other exits 4 and touches nothing."""
    (tmp_path / "job.py").write_text(textwrap.dedent("""
        import os, sys, time
        open(f"started-{os.getpid()}", "w").close()
        while not os.path.exists("go"):
            time.sleep(0.01)
    """))
    procs = [subprocess.Popen(_capture(["-o", "cap", "job.py"]), cwd=tmp_path,
                              env=fake_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob("started-*")) and any(p.poll() is None for p in procs):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    loser = [p for p in procs if p.poll() is not None]  # one is refused while the other runs
    while not loser:
        assert time.monotonic() < deadline
        time.sleep(0.02)
        loser = [p for p in procs if p.poll() is not None]
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 4], outs
    err = outs[procs.index(loser[0])][1]
    assert "Traceback" not in err and len(_error_lines(err)) == 1 and "already holds a capture" in err
    winner = procs[1 - procs.index(loser[0])]
    cap = trtprof.load_capture(tmp_path / "cap")
    assert cap.complete and cap.meta["pid"] == winner.pid
    assert [p.name for p in tmp_path.glob("started-*")] == [f"started-{winner.pid}"]


def test_writer_lock_is_taken_before_the_folder_is_checked(tmp_path):
    a = CaptureWriter(tmp_path / "c", {"who": "a"})
    for _ in range(2):  # a refused writer must not release the lock it does not own
        with pytest.raises(CaptureError, match="already holds a capture"):
            CaptureWriter(tmp_path / "c", {"who": "b"})
    assert (tmp_path / "c" / store.LOCK).read_text() == str(os.getpid())
    a.write([_rec(0)])
    a.close()
    with pytest.raises(CaptureError, match="already holds a capture"):
        CaptureWriter(tmp_path / "c", {"who": "b"})
    assert not (tmp_path / "c" / store.LOCK).exists()
    assert trtprof.load_capture(tmp_path / "c").meta["who"] == "a"


def test_output_path_that_is_a_file(tmp_path):
    """(The CLI refuses it as bad usage first; `trtprof.profile(out=...)` reaches the writer.)"""
    (tmp_path / "taken").write_text("")
    with pytest.raises(CaptureError, match="^cannot write the capture folder .*taken: a file of that name exists$"):
        CaptureWriter(tmp_path / "taken", {})


def _capture_folder(d: Path, meta=None):
    w = CaptureWriter(d, meta or {})
    w.write([_rec(i) for i in range(3)])
    w.close()
    return d


@pytest.mark.parametrize("damage,msg", [
    (lambda d: (d / "timeline.parquet").write_bytes((d / "timeline.parquet").read_bytes()[:300]),
     "not a readable parquet"),
    (lambda d: (d / "timeline.parquet").write_bytes(b""), "not a readable parquet"),
    (lambda d: (d / "meta.json").write_text((d / "meta.json").read_text()[:20]), "not valid JSON"),
    (lambda d: (d / "meta.json").write_bytes(b"\xff\xfe{}"), "not valid JSON"),
    (lambda d: (d / "meta.json").write_text("[" * 100000 + "]" * 100000), "not valid JSON"),
    (lambda d: (d / "meta.json").write_text(json.dumps({"schema_version": True})), "schema True"),
    (lambda d: (d / "meta.json").write_text(json.dumps({"schema_version": "1\n2" * 50})), "schema '1"),
    (lambda d: ((d / "timeline.parquet").unlink(), (d / "meta.json").unlink(),
                (d / "notes.txt").write_text("hello")), "has no meta.json"),
    (lambda d: (d / "timeline.parquet").write_bytes(_foreign_parquet()), "missing columns"),
])
def test_corrupt_truncated_foreign_folders(tmp_path, damage, msg):
    d = _capture_folder(tmp_path / "c")
    damage(d)
    with pytest.raises(CaptureError, match=msg) as e:
        trtprof.load_capture(d)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def _foreign_parquet() -> bytes:
    import io

    import pandas as pd
    buf = io.BytesIO()
    pd.DataFrame({"ts": [1, 2], "name": ["a", "b"]}).to_parquet(buf)
    return buf.getvalue()


def test_error_messages_stay_one_line_for_odd_folder_names(tmp_path):
    with pytest.raises(CaptureError) as e:
        trtprof.load_capture(tmp_path / "one\ntwo\u2028three\x85four\x1b[31m")
    assert len(str(e.value).splitlines()) == 1 and "one\\x0atwo\\u2028three\\x85four\\x1b[31m" in str(e.value)


# -- nothing in a capture folder runs ------------------------------------------------------------------
HOSTILE = ["__import__('os').system('touch PWNED')", "$(touch PWNED)", "`touch PWNED`",
           "<script>alert(1)</script>", "{0.__class__.__mro__}", "%s%s%n", "\x1b]0;title\x07",
           "'; DROP TABLE x; --", "../../etc/passwd", "\u202e\u0000"]

LOADER = """
import json, os, sys
import trtprof
load = trtprof.load_capture  # resolves the lazy face (imports pandas, pyarrow) as `import trtprof` once did
folder = os.path.realpath(sys.argv[1])
os.chdir(folder)
sys.path.insert(0, folder)  # the worst case: the capture folder on the import path while loading
events = []
sys.addaudithook(lambda ev, args: events.append((ev, os.fsdecode(args[0]) if ev == "open" else str(args[0])))
                 if ev in ("open", "import", "exec", "compile") and isinstance(args[0], (str, bytes)) else None)
cap = load(".")
text = str(cap.meta) + repr(cap.timeline) + repr(cap.timeline.describe(include="all"))
from trtprof.analysis.subgraphs import table as by_subgraph
by_subgraph(cap.timeline)
opened = sorted({os.path.basename(p) for ev, p in events
                 if ev == "open" and os.path.realpath(p).startswith(folder + os.sep)})
files = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
mods = sorted(n for n, f in files.items()  # torch.ops and torch.classes have a bare name as __file__
              if isinstance(f, str) and os.path.isabs(f) and os.path.realpath(f).startswith(folder + os.sep))
print(json.dumps({"opened": opened, "mods": mods, "rows": len(cap.timeline), "command": cap.meta["command"],
                  "imports": sorted({a for ev, a in events if ev == "import"})}))
"""


def test_loading_never_imports_or_runs_anything_from_the_folder(tmp_path, fake_env):
    """Hostile metadata stays data, and no file of the folder is imported, even with the folder on
    sys.path: every module the loader imports lazily is planted there as a trap."""
    d = _capture_folder(tmp_path / "cap", {"command": HOSTILE, "options": {h: h for h in HOSTILE},
                                           "cwd": HOSTILE[0], "notes": HOSTILE})
    meta = json.loads((d / "meta.json").read_text())
    meta.update({"__class__": HOSTILE[0], "__reduce__": HOSTILE[0], "py/object": "os.system"})
    (d / "meta.json").write_text(json.dumps(meta))
    trap = "open({!r}, 'w').close()\n"
    names = ["evil", "__init__", "conftest", "substrait", "pandas_compat", "dateutil", "zoneinfo", "pytz",
             "bottleneck", "numexpr", "fsspec", "jinja2", "tabulate", "pyarrow_hotfix"]
    for name in names:
        (d / f"{name}.py").write_text(trap.format(str(tmp_path / f"RAN-{name}")))
    (d / "evilpkg").mkdir()
    (d / "evilpkg" / "__init__.py").write_text(trap.format(str(tmp_path / "RAN-evilpkg")))
    r = subprocess.run([sys.executable, "-c", LOADER, str(d)], cwd=tmp_path, env=fake_env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["opened"] == ["meta.json"]  # parquet is opened by Arrow's C++ reader, not Python's open
    assert got["mods"] == [] and got["rows"] == 3
    assert got["command"] == HOSTILE  # hostile strings come back as plain data
    lazily = {m.split(".")[0] for m in got["imports"]} - {"trtprof", "pandas", "pyarrow", "numpy"}
    assert lazily <= set(names), f"plant a trap for every module loading imports lazily: {lazily}"
    assert not list(tmp_path.glob("RAN-*")) and not list(tmp_path.rglob("PWNED"))


@pytest.mark.fake_trt
def test_a_failure_at_the_end_of_capture_keeps_the_rows_in_memory(tmp_path):
    """The end of a capture waits for the GPU before the allocator log's final harvest; when that
    fails (a GPU gone), the rows still waiting in memory are written all the same, the classes are
    restored, and the capture says why."""
    import torch
    from cpu_models import partitioned

    class Gone:  # the GPU clock of a capture whose device has failed
        def synchronize(self):
            raise RuntimeError("CUDA error: device-side assert triggered")

    class RunningLog:  # the allocator log, on, and failing to stop as well
        active, dropped, paused = True, False, False

        def harvest(self, calls):
            return {}

        def stop(self):
            raise RuntimeError("CUDA error: device-side assert triggered")

    m = partitioned("cpp")
    s = trtprof.Session(tmp_path / "cap").start()
    s.instrument(m)
    for _ in range(5):
        m(torch.randn(2, 8))
    ins = s.instrumenter.ins
    ins.alloc_log, ins.rec.gpu = RunningLog(), Gone()
    cap = s.stop()
    assert cap.meta["status"] == "incomplete" and "device-side assert" in cap.meta["incomplete_reason"]
    assert (cap.timeline.event == "inference").sum() == 5 and (cap.timeline.event == "call").sum() == 10
    assert any("could not be stopped" in n for n in cap.meta["notes"])
    again = trtprof.Session(tmp_path / "again").start()  # the patched classes were given back
    again.stop()
