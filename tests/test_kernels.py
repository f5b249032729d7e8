"""Kernel truth on the CPU: attribution of hand-built kernel records to row windows (several streams,
edge kernels, empty windows, kernels outside every window), the busy/span math, kernels.parquet, the
clock offset, and KernelActivity without cupti-python, with CUPTI taken, and against a stand-in."""
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trtprof.capture import kernels as CK
from trtprof.timeline import kernels as K

ROOT = Path(__file__).resolve().parent.parent


def _k(*recs, kinds=None):
    """Kernel records from (start, end, stream) triples."""
    a = np.array(recs, dtype=np.int64).reshape(-1, 3)
    out = {"start_ns": a[:, 0], "end_ns": a[:, 1], "stream": a[:, 2]}
    if kinds is not None:
        out["kind"] = np.array(kinds, dtype=object)
    return out


def _w(*wins):
    """Windows from (seq, stream, start, end) tuples."""
    return pd.DataFrame(wins, columns=["seq", "stream", "start_ns", "end_ns"])


# -- busy -----------------------------------------------------------------------------------------
def test_busy_union_not_sum_and_not_span():
    # [0,10) and [5,8) nested, [9,20) overlapping the first, [30,35) apart: union 20 + 5
    s, e = [30, 9, 5, 0], [35, 20, 8, 10]
    assert K.busy(s, e) == 25
    assert K.busy(s, e) < max(e) - min(s) == 35       # busy < span when there are gaps
    assert K.busy([], []) == 0
    assert K.busy([5], [5]) == 0


def test_busy_matches_brute_force():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 10_000, 400)
    e = s + rng.integers(0, 300, 400)
    covered = np.zeros(11_000, dtype=bool)
    for a, b in zip(s, e):
        covered[a:b] = True
    assert K.busy(s, e) == covered.sum()


# -- attribution by stream --------------------------------------------------------------------------
def test_same_stream_edges_between_and_outside():
    w = _w((0, 7, 100, 200), (1, 7, 300, 400))
    k = _k((100, 110, 7),    # on the start edge: seq 0
           (150, 260, 7),    # starts inside seq 0, ends after it: still seq 0, lengthens its last end
           (200, 205, 7),    # on the end edge (inclusive): seq 0
           (250, 260, 7),    # between the windows of its stream: unattributed
           (50, 60, 7),      # before every window
           (399, 401, 7))    # seq 1
    a = K.attribute(k, w)
    assert a.index.tolist() == [0, 0, 0, -1, -1, 1]
    assert a.how.tolist() == [1, 1, 1, 0, 0, 1]
    assert a.seq.tolist() == [0, 0, 0, pd.NA, pd.NA, 1]
    r = a.rows.set_index("seq")
    assert r.loc[0, "kernel_count"] == 3 and r.loc[0, "kernel_first_ns"] == 100
    assert r.loc[0, "kernel_last_ns"] == 260 > 200      # past the window end: the edge kernel's end
    assert r.loc[0, "kernel_busy_ns"] == 10 + 110       # [100,110) + [150,260), [200,205) inside it
    assert r.loc[1, "kernel_busy_ns"] == 2
    assert a.counts == {"total": 6, "by_stream": 4, "by_time": 0, "between": 2, "ambiguous": 0,
                        "outside": 0}


def test_touching_windows_later_one_wins():
    a = K.attribute(_k((200, 210, 7)), _w((0, 7, 100, 200), (1, 7, 200, 300)))
    assert a.seq.tolist() == [1]


def test_several_streams_keep_to_their_own_windows():
    # two streams whose windows overlap in time: each kernel goes to its own stream's window
    w = _w((0, 7, 100, 200), (1, 13, 150, 250))
    a = K.attribute(_k((160, 170, 7), (160, 170, 13), (210, 220, 7), (210, 220, 13)), w)
    assert a.seq.tolist() == [0, 1, pd.NA, 1]
    assert a.counts["between"] == 1 and a.counts["by_time"] == 0


def test_overlapping_windows_on_one_stream_are_refused():
    with pytest.raises(ValueError, match="overlap on stream 7"):
        K.attribute(_k((120, 130, 7)), _w((0, 7, 100, 200), (1, 7, 150, 160)))


# -- attribution by time ("window on any stream") ----------------------------------------------------
def test_engine_stream_kernels_go_by_time():
    # events on the caller stream 7, the engine runs on pool stream 21 (C++ runtime, TRT 2.11)
    w = _w((0, 7, 100, 200), (1, 7, 300, 400))
    k = _k((120, 130, 21), (190, 240, 21), (310, 320, 21), (250, 260, 21), (305, 308, 7))
    a = K.attribute(k, w)
    assert a.seq.tolist() == [0, 0, 1, pd.NA, 1]
    assert a.how.tolist() == [2, 2, 2, 0, 1]
    assert a.counts["outside"] == 1 and a.counts["by_time"] == 3
    r = a.rows.set_index("seq")
    assert r.loc[0, "kernel_last_ns"] == 240 and r.loc[0, "kernel_busy_ns"] == 60
    assert r.loc[1, "kernel_count"] == 2 and r.loc[1, "kernel_busy_ns"] == 13
    off = K.attribute(k, w, by_time=False)
    assert off.seq.tolist() == [pd.NA, pd.NA, pd.NA, pd.NA, 1]


def test_by_time_ambiguous_when_windows_of_two_streams_contain_it():
    w = _w((0, 7, 100, 200), (1, 13, 150, 250), (2, 7, 260, 280))
    a = K.attribute(_k((160, 170, 21), (120, 125, 21), (210, 215, 21), (270, 271, 21)), w)
    assert a.seq.tolist() == [pd.NA, 0, 1, 2]
    assert a.counts["ambiguous"] == 1 and a.counts["outside"] == 0 and a.counts["by_time"] == 3


def test_unknown_window_stream_matches_by_time_only():
    w = _w((0, -1, 100, 200))
    a = K.attribute(_k((150, 160, 7), (250, 260, 7)), w)
    assert a.seq.tolist() == [0, pd.NA] and a.counts["outside"] == 1


# -- empty and missing ------------------------------------------------------------------------------
def test_empty_window_missing_window_and_no_kernels():
    w = pd.DataFrame({"seq": [5, 6, 7], "stream": [7, 7, 7],
                      "gpu_start_ns": pd.array([100, None, 300], dtype="Int64"),
                      "gpu_end_ns": pd.array([200, None, 400], dtype="Int64")})
    a = K.attribute(_k((350, 360, 7)), w)
    r = a.rows.set_index("seq")
    assert r.loc[5, "kernel_count"] == 0 and r.loc[5, "kernel_busy_ns"] == 0      # watched, none ran
    assert pd.isna(r.loc[5, "kernel_first_ns"]) and pd.isna(r.loc[5, "kernel_last_ns"])
    assert all(pd.isna(r.loc[6, c]) for c in K.ROW_COLUMNS)                       # no window
    assert r.loc[7, "kernel_count"] == 1
    none = K.attribute(_k(), w)
    assert none.counts["total"] == 0 and none.rows.kernel_count.tolist() == [0, pd.NA, 0]
    nowin = K.attribute(_k((1, 2, 7)), _w())
    assert nowin.seq.tolist() == [pd.NA] and nowin.counts["outside"] == 1 and len(nowin.rows) == 0


def test_copies_apart_from_kernels():
    w = _w((0, 7, 100, 200))
    a = K.attribute(_k((110, 120, 7), (130, 150, 7), (140, 160, 7),
                       kinds=["kernel", "memcpy", "memset"]), w)
    r = a.rows.iloc[0]
    assert (r.kernel_count, r.kernel_busy_ns, r.copy_count, r.copy_ns) == (1, 10, 2, 30)


def test_a_million_kernels_match_a_direct_count_quickly():
    import time
    rng = np.random.default_rng(2)
    m, n = 20_000, 1_000_000
    ws = np.arange(m, dtype=np.int64) * 1000
    w = pd.DataFrame({"seq": np.arange(m), "stream": 7, "start_ns": ws, "end_ns": ws + 600})
    ks = rng.integers(0, m * 1000, n)
    t0 = time.perf_counter()
    a = K.attribute({"start_ns": ks, "end_ns": ks + 50, "stream": np.full(n, 7)}, w)
    assert time.perf_counter() - t0 < 10       # ~0.3 s here: vectorised, no Python loop per kernel
    inside = (ks % 1000) <= 600
    assert (a.index >= 0).sum() == inside.sum()
    assert np.array_equal(a.index[inside], ks[inside] // 1000)
    assert a.rows.kernel_count.sum() == inside.sum()


def test_row_busy_matches_busy_per_row():
    rng = np.random.default_rng(3)
    w = _w(*[(i, 7, i * 1000, i * 1000 + 900) for i in range(30)])
    ks = rng.integers(0, 30_000, 3000)
    ke = ks + rng.integers(0, 400, 3000)
    a = K.attribute({"start_ns": ks, "end_ns": ke, "stream": np.full(3000, 7)}, w)
    for i, row in a.rows.iterrows():
        sel = a.index == i
        assert row.kernel_busy_ns == K.busy(ks[sel], ke[sel])
        assert row.kernel_busy_ns <= row.kernel_last_ns - row.kernel_first_ns
    nested = K.attribute(_k((0, 100, 7), (10, 20, 7), (30, 40, 7)), _w((0, 7, 0, 50)))
    assert nested.rows.kernel_busy_ns.tolist() == [100]


# -- kernels.parquet ----------------------------------------------------------------------------------
def _records():
    return {"kind": np.array(["kernel", "memcpy"], dtype=object), "name": np.array(["gemm", None], dtype=object),
            "start_ns": np.array([10, 20]), "end_ns": np.array([15, 30]), "stream": np.array([7, 7]),
            "correlation": np.array([1, 2]), "device": np.array([0, 0])}


def test_table_round_trip(tmp_path):
    recs = _records()
    assert K.to_table(recs).schema == K.SCHEMA
    assert list(K.SCHEMA.names) == list(K.KERNEL_COLUMNS)
    K.write(tmp_path, recs, seq=pd.array([3, pd.NA], dtype="Int64"))
    df = K.read(tmp_path)
    assert df.name.tolist()[0] == "gemm" and pd.isna(df.name.iloc[1])
    assert df.kind.tolist() == ["kernel", "memcpy"] and df.start_ns.tolist() == [10, 20]
    assert df.seq.tolist() == [3, pd.NA]
    assert K.read(tmp_path / K.FILE).equals(df)
    K.write(tmp_path, recs, seq=np.array([-1, 4]))   # -1 means none
    assert K.read(tmp_path).seq.tolist() == [pd.NA, 4]


def test_a_kernels_file_without_launch_times_still_loads(tmp_path):
    """kernels.parquet from before `queued_ns`: read with the column null."""
    import pyarrow.parquet as pq
    K.write(tmp_path, dict(_records(), queued_ns=np.array([9, -1])))
    assert K.read(tmp_path).queued_ns.tolist() == [9, pd.NA]
    pq.write_table(pq.read_table(tmp_path / K.FILE).drop(["queued_ns"]), tmp_path / K.FILE)
    old = K.read(tmp_path)
    assert list(old.columns) == list(K.KERNEL_COLUMNS) and old.queued_ns.isna().all()


def test_read_absent_and_damaged(tmp_path):
    assert K.read(tmp_path) is None
    (tmp_path / K.FILE).write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="not a readable kernels table"):
        K.read(tmp_path)
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"name": ["x"]}), tmp_path / K.FILE)
    with pytest.raises(ValueError, match="no column kind"):
        K.read(tmp_path)


# -- the clock ----------------------------------------------------------------------------------------
def test_measure_offset_keeps_the_tightest_bracket():
    # host clock reads 1000 ns per call, except inside the third bracket (tight: 10 ns wide);
    # CUPTI reads host - 7_000 (like time.time_ns against perf_counter_ns, just a constant apart)
    host = iter([0, 1000, 2000, 3000, 4000, 4010, 5000, 6000])
    now = {"t": 0}

    def clock():
        now["t"] = next(host)
        return now["t"]

    def read():
        return now["t"] + 5 - 7_000
    off, err = CK.measure_offset(read, samples=4, clock=clock)
    assert (off, err) == (7_000, 5)


def test_measure_offset_on_real_clocks():
    off, err = CK.measure_offset(__import__("time").time_ns, samples=8)
    import time
    assert abs(time.perf_counter_ns() - (time.time_ns() + off)) < 5_000_000 and err >= 0


# -- KernelActivity: no cupti-python, CUPTI taken, and a stand-in -------------------------------------
def test_without_cupti(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupti", None)    # makes `from cupti import cupti` an ImportError
    ka = CK.KernelActivity()
    assert ka.available() is False
    assert "cupti-python is not installed" in ka.reason and "\n" not in ka.reason
    assert ka.start() is False and ka.pause() is False and ka.resume() is False
    out = ka.stop()
    assert set(out) == set(CK.FIELDS) and len(out["start_ns"]) == 0
    assert ka.info()["available"] is False


class FakeCupti:
    """Stand-in for cupti-python's `cupti.cupti` module, with its real names: ActivityKind members
    (values of CUpti_ActivityKind), cuptiError(status), subscribe(callback, userdata) /
    unsubscribe(subscriber), activity_register_callbacks(requested, completed) where requested() returns
    (buffer size, max records) and completed(activities) gets a list of records with kind, start, end,
    name, stream_id, correlation_id, device_id; activity_enable/disable(kind), activity_flush_all(flag),
    get_timestamp(), get_stream_id_ex(context, stream, per_thread_stream)."""
    class ActivityKind:
        MEMCPY, MEMSET, CONCURRENT_KERNEL, RUNTIME = 1, 2, 10, 5

    class cuptiError(Exception):
        pass

    def __init__(self, taken=False, offset=-1_000):
        self.taken, self.offset = taken, offset
        self.enabled, self.subscribers, self.callbacks, self.queue = set(), [], None, []

    def subscribe(self, callback, userdata):
        if self.taken == "subscribe-other":
            raise TypeError("subscribe() takes 1 positional argument")
        if self.taken:
            raise self.cuptiError("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED")
        self.subscribers.append(callback)
        return 42

    def unsubscribe(self, subscriber):
        assert subscriber == 42
        self.subscribers.pop()

    def activity_register_callbacks(self, requested, completed):
        if self.taken is True:      # "subscribe": only the subscription says so, as under torch.profiler
            raise self.cuptiError("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED")
        assert requested()[0] > 0
        self.callbacks = completed

    def activity_enable(self, kind):
        self.enabled.add(kind)

    def activity_disable(self, kind):
        self.enabled.discard(kind)

    def activity_enable_latency_timestamps(self, enable):  # cupti-python 13.0.1 (cupti.pyi)
        self.latency = enable

    def get_timestamp(self):
        import time
        return time.perf_counter_ns() - self.offset     # host = cupti + offset

    def get_stream_id_ex(self, context, stream, per_thread_stream):
        return {0: 7, 0xABC: 21}[stream]

    def launch(self, kind, start, end, name=None, stream=7, **extra):
        if kind in self.enabled:
            self.queue.append(types.SimpleNamespace(kind=kind, start=start, end=end, name=name,
                                                    stream_id=stream, correlation_id=len(self.queue),
                                                    device_id=0, **extra))

    def activity_flush_all(self, flag):
        batch, self.queue = self.queue, []
        self.callbacks(batch)


def _fake(monkeypatch, cupti):
    pkg = types.ModuleType("cupti")
    pkg.cupti = cupti
    monkeypatch.setitem(sys.modules, "cupti", pkg)


def test_cupti_taken_is_one_line_and_no_exception(monkeypatch):
    fake = FakeCupti(taken=True)
    fake.enabled = {10}                                # the other client's kernel activity
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity()
    assert ka.available() is True                     # imports; taken shows only at start
    assert ka.start() is False
    assert "already in use" in ka.reason and "MULTIPLE_SUBSCRIBERS" in ka.reason
    assert "\n" not in ka.reason and ka.available() is False
    assert fake.enabled == {10} and fake.callbacks is None     # left alone: not ours to disable
    assert len(ka.stop()["start_ns"]) == 0


def test_taken_seen_by_subscribe_alone_registers_nothing(monkeypatch):
    # registering would succeed and steal the other client's buffers: the subscription must stop it
    fake = FakeCupti(taken="subscribe")
    fake.enabled = {1, 10}
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity()
    assert ka.start() is False and "already in use" in ka.reason
    assert fake.callbacks is None and fake.enabled == {1, 10}
    ka.stop()
    assert fake.enabled == {1, 10}


def test_subscribe_failing_otherwise_does_not_stop_collection(monkeypatch):
    fake = FakeCupti(taken="subscribe-other")
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity()
    assert ka.start() is True and "TypeError" in ka.last_error and fake.enabled == {1, 10}  # kernel, memcpy: memset is not a default kind
    ka.stop()


def test_stand_in_collects_converts_pauses_and_stops(monkeypatch):
    fake = FakeCupti(offset=-1_000_000)
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity(kinds=("kernel", "memcpy", "memset"))
    assert ka.start() is True and fake.enabled == {1, 2, 10} and fake.subscribers
    assert abs(ka.clock["offset_ns"] - fake.offset) <= ka.clock["error_ns"] + 1_000
    fake.launch(10, 5_000_000, 5_000_400, name="gemm", stream=21, queued=4_999_000)
    fake.launch(1, 5_000_500, 5_000_600)
    fake.launch(5, 5_000_000, 5_000_100)               # a kind not asked for: ignored
    fake.launch(10, 0, 0, name="no timestamps")        # dropped, counted
    assert ka.pause() is True and fake.enabled == set()
    fake.launch(10, 6_000_000, 6_000_100, name="while paused")
    out = ka.flush()
    off = ka.clock["offset_ns"]
    assert out["kind"].tolist() == ["kernel", "memcpy"] and out["name"].tolist() == ["gemm", None]
    assert out["start_ns"].tolist() == [5_000_000 + off, 5_000_500 + off]
    assert out["stream"].tolist() == [21, 7] and ka.dropped == 1
    # the launch time on the host clock; a copy has none (-1), and CUPTI was asked for them first
    assert out["queued_ns"].tolist() == [4_999_000 + off, -1] and fake.latency == 1 and ka.launch_times is True
    assert ka.resume() is True and fake.enabled == {1, 2, 10}
    fake.launch(2, 7_000_000, 7_000_010)
    assert ka.stream_id(0xABC) == 21 and ka.stream_id(0) == 7
    last = ka.stop()
    assert last["kind"].tolist() == ["memset"] and fake.enabled == set() and not fake.subscribers
    assert fake.latency == 0  # switched off again with the kinds


def test_stop_and_callback_never_raise(monkeypatch):
    fake = FakeCupti()
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity()
    assert ka.start()
    fake.queue.append(types.SimpleNamespace(kind=10, start="garbage"))    # a record that breaks int()
    fake.launch(10, 10, 20, name="ok")
    fake.activity_flush_all(1)                         # the callback itself must not raise
    assert ka.callback_errors == 1 and "ValueError" in ka.last_error
    assert ka.flush()["name"].tolist() == ["ok"]       # the good record of that batch is kept
    ka._completed(None)                                # a batch that will not iterate: counted
    assert ka.callback_errors == 2

    def boom(*_):
        raise fake.cuptiError("CUPTI_ERROR_UNKNOWN")
    fake.activity_disable = boom
    fake.activity_flush_all = boom
    ka.stop()                                          # must not raise
    assert "CUPTI_ERROR_UNKNOWN" in ka.last_error


def test_modules_import_without_cupti_or_torch():
    # the modules by file: trtprof's own __init__ imports torch, these two must not need it
    code = ("import sys, importlib.util as u\n"
            "sys.modules['torch'] = None; sys.modules['cupti'] = None\n"
            "def load(name, path):\n"
            "    spec = u.spec_from_file_location(name, path); m = u.module_from_spec(spec)\n"
            "    sys.modules[name] = m; spec.loader.exec_module(m); return m\n"
            "m = load('ck', 'trtprof/capture/kernels.py'); load('tk', 'trtprof/timeline/kernels.py')\n"
            "ka = m.KernelActivity(); assert not ka.available() and ka.start() is False\n"
            "print('ok', ka.reason)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok kernel activity off: cupti-python is not installed")


def test_probe_summary_on_synthetic_calls():
    # scripts/probe_cupti.py runs on the GPU machine; its figures and checks are pure and run here
    import importlib.util
    spec = importlib.util.spec_from_file_location("probe_cupti", ROOT / "scripts" / "probe_cupti.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    recs = {"kind": np.array(["kernel", "kernel", "memcpy", "kernel", "kernel"], dtype=object),
            "name": np.array(["gemm", "relu", None, "gemm", "relu"], dtype=object),
            "start_ns": np.array([1_000, 5_000, 6_000, 21_000, 30_000]),
            "end_ns": np.array([4_000, 8_000, 7_000, 24_000, 33_000]),
            "stream": np.array([7, 7, 7, 7, 7])}
    win = {"seq": [0, 1], "stream": [7, 7], "start_ns": [0, 20_000], "end_ns": [10_000, 35_000]}
    ph = probe.summarise(recs, win, [(True, 9_000), (True, 9_000)], 7, "stream", 2.0)
    assert all(ph["checks"].values()), ph["checks"]
    c0 = ph["calls"][0]
    assert (c0["kernels"], c0["busy_us"], c0["span_us"], c0["bracket_us"], c0["lead_us"], c0["tail_us"]) == \
        (2, 6.0, 7.0, 10.0, 1.0, 2.0)
    assert ph["records"] == {"kernel": 4, "memcpy": 1, "memset": 0}
    assert ph["first_call_kernels"] == ["gemm", "relu"]
    late = dict(recs, end_ns=recs["end_ns"] + np.array([0, 0, 0, 0, 9_000]))   # ends 7 us past its bracket
    bad = probe.summarise(late, win, [(True, 0), (True, 0)], None, "stream", 2.0)
    assert bad["checks"]["span_inside_bracket"] is False and bad["checks"]["matched_by_stream"] is False


def test_flush_schedule_follows_the_record_rate(monkeypatch):
    """First forced flush after FIRST_FLUSH_NS; then when half a buffer is estimated to wait, at the
    rate since the last flush, kept within 0.1-30 s; a fixed FLUSH_PERIOD_NS overrides it."""
    fake = FakeCupti()
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity(buffer_bytes=CK.RECORD_BYTES * 2000)  # half a buffer: 1000 records
    assert not ka.due(0)                                        # not started: never due
    assert ka.start()
    t0 = ka._last_flush
    assert not ka.due(t0 + CK.FIRST_FLUSH_NS - 1) and ka.due(t0 + CK.FIRST_FLUSH_NS)
    ka._schedule(500, t0 + 1_000_000_000)                       # 500 records a second: 2 s to 1000
    assert ka._next_flush == t0 + 3_000_000_000
    ka._schedule(10 ** 9, t0 + 4_000_000_000)                   # a flood: no sooner than 0.1 s
    assert ka._next_flush - ka._last_flush == 100_000_000
    ka._schedule(1, ka._last_flush + 1_000_000_000)             # a trickle: no later than 30 s
    assert ka._next_flush - ka._last_flush == 30_000_000_000
    ka._schedule(0, ka._last_flush + 5)                         # nothing came: back to the first period
    assert ka._next_flush - ka._last_flush == CK.FIRST_FLUSH_NS
    monkeypatch.setattr(CK, "FLUSH_PERIOD_NS", 7)
    ka._schedule(500, ka._last_flush + 1_000)
    assert ka._next_flush - ka._last_flush == 7
    ka.stop()


def test_handover_is_counted_by_thread_and_noted(monkeypatch):
    """A buffer delivered inside activity_flush_all is ours (a safe point); one delivered outside it
    came on CUPTI's thread while something ran, and the note says so."""
    fake = FakeCupti()
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity()
    assert ka.start() and ka.handover_note() is None
    fake.launch(10, 10, 20, name="a")
    fake.launch(10, 30, 40, name="b")
    ka.flush()
    h = ka.handover
    assert (h["buffers"], h["records"], h["flushes"], h["buffers_on_cupti_thread"]) == (1, 2, 1, 0)
    note = ka.handover_note()
    assert "2 records" in note and "between inferences" in note and "inside" not in note
    ka._completed([types.SimpleNamespace(kind=10, start=50, end=60, name="c", stream_id=7,
                                         correlation_id=3, device_id=0)])  # a full buffer, CUPTI's thread
    assert h["buffers_on_cupti_thread"] == 1 and h["records"] == 3
    assert "1 buffer(s) filled first" in ka.handover_note() and "\n" not in ka.handover_note()
    assert ka.info()["handover"]["buffers"] == 2
    ka.stop()


def test_resume_refused_is_counted_and_noted(monkeypatch):
    # sampling switches the kinds on before each recorded inference: when CUPTI refuses, that
    # inference's rows have no kernels, which the capture's notes must say (not only last_error)
    class Refusing(FakeCupti):
        refuse = False

        def activity_enable(self, kind):
            if self.refuse:
                raise self.cuptiError("CUPTI_ERROR_NOT_READY")
            super().activity_enable(kind)
    fake = Refusing()
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity()
    assert ka.start() and ka.dropped_note() is None
    assert ka.pause()
    fake.refuse = True
    assert ka.resume() is False and ka.resume() is False
    fake.refuse = False
    assert ka.resume() is True and ka.resume() is True     # already on: not counted again
    assert ka.info()["resume_failures"] == 2
    note = ka.dropped_note()
    assert "could not be switched on for 2 recorded inference(s)" in note and "NOT_READY" in note
    assert "\n" not in note
    ka.stop()


def test_a_start_failure_names_no_raw_reason_when_cupti_python_was_asked_for(monkeypatch):
    fake = FakeCupti(taken=True)
    _fake(monkeypatch, fake)
    kp = CK.KernelActivity(handover="python")
    assert kp.start() is False and "already in use" in kp.reason
    assert kp.info()["handover"]["raw_reason"] is None and kp.info()["handover"]["path"] is None
    kr = CK.KernelActivity(handover="raw")
    assert kr.start() is False and kr.info()["handover"]["raw_reason"] == kr.reason


# -- attribution by launch time -------------------------------------------------------------------------
def _rows(*rows, thread=1):
    """Timeline rows from (seq, event, host_start, host_end, gpu_start, gpu_end[, thread]) tuples, stream 5."""
    rows = [r if len(r) == 7 else (*r, thread) for r in rows]
    df = pd.DataFrame(rows, columns=["seq", "event", "host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns",
                                     "thread"])
    df["stream"] = 5
    for c in ("host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns"):
        df[c] = df[c].astype("Int64")
    return df


def _launched(*recs):
    """Kernel records from (queued, start, end) triples on CUPTI stream 7 (queued -1: none)."""
    a = np.array(recs, dtype=np.int64).reshape(-1, 3)
    return {"kind": np.array(["kernel"] * len(a), dtype=object), "start_ns": a[:, 1], "end_ns": a[:, 2],
            "stream": np.full(len(a), 7), "queued_ns": a[:, 0]}


def test_launch_time_keeps_gpu_paced_kernels_in_their_own_rows():
    """GPU-paced: an engine (host 100-200) and a fallback (host 200-260) whose kernels run long after,
    back to back, and whose event windows sit 70 ns late against CUPTI's times (the drift found on the
    H100). By GPU window the engine takes the fallback's kernel; by launch each row gets its own."""
    rows = _rows((1, "exec", 100, 200, 1070, 1270), (2, "fallback", 200, 260, 1270, 1370),
                 (3, "inference", 90, 270, 1070, 1370))
    k = _launched((150, 1000, 1100), (160, 1100, 1200), (230, 1200, 1300))
    by_window, _, _ = K.attribute_timeline(rows, {c: v for c, v in k.items() if c != "queued_ns"})
    assert by_window.loc[1, "kernel_count"] == 2 and by_window.loc[1, "kernel_last_ns"] == 1300  # the wrong one
    table, kseq, counts = K.attribute_timeline(rows, k)
    assert table.loc[1, "kernel_count"] == 2 and table.loc[1, "kernel_last_ns"] == 1200
    assert table.loc[1, "kernel_busy_ns"] == 200 and table.loc[2, "kernel_first_ns"] == 1200
    assert table.loc[3, "kernel_count"] == 3 and kseq.tolist() == [1, 1, 2]
    assert counts["subgraph"]["by_launch"] == 3 and counts["inference"]["by_launch"] == 3


def test_launch_time_outside_every_row_is_given_to_none():
    """A kernel launched between two subgraph rows (the caller's own code) goes to no subgraph row,
    though it runs inside one's event window; its inference still counts it."""
    rows = _rows((1, "exec", 100, 200, 150, 400), (2, "fallback", 220, 260, 400, 500),
                 (3, "inference", 90, 270, 150, 500))
    table, kseq, counts = K.attribute_timeline(rows, _launched((210, 300, 310)))
    assert table.loc[1, "kernel_count"] == 0 and table.loc[2, "kernel_count"] == 0
    assert table.loc[3, "kernel_count"] == 1 and kseq.tolist() == [pd.NA]
    assert counts["subgraph"]["outside"] == 1 and counts["subgraph"]["by_launch"] == 0


def test_records_without_a_launch_time_and_ambiguous_ones_go_by_gpu_window():
    """A copy (no launch time) and a kernel launched while two threads' rows were open go by GPU window;
    the other by launch."""
    rows = _rows((1, "exec", 100, 200, 300, 400), (2, "exec", 150, 250, 500, 600))
    k = _launched((120, 310, 320), (170, 510, 520), (-1, 330, 340))
    k["kind"] = np.array(["kernel", "kernel", "memcpy"], dtype=object)
    table, kseq, counts = K.attribute_timeline(rows, k)
    assert kseq.tolist() == [1, 2, 1]
    assert table.loc[1, "kernel_count"] == 1 and table.loc[1, "copy_count"] == 1 and table.loc[2, "kernel_count"] == 1
    c = counts["subgraph"]
    assert c["by_launch"] == 1 and c["by_time"] == 2 and c["total"] == 3


def test_a_launch_time_after_the_start_is_not_trusted():
    """queued later than the kernel's start cannot be its launch: that record goes by GPU window."""
    rows = _rows((1, "exec", 100, 200, 300, 400), (2, "fallback", 200, 260, 400, 500))
    table, kseq, counts = K.attribute_timeline(rows, _launched((150, 310, 320), (450, 410, 420)))
    assert kseq.tolist() == [1, 2] and counts["subgraph"]["by_launch"] == 1 and counts["subgraph"]["by_time"] == 1


def test_launch_attribution_needs_no_gpu_window():
    """A row with host times and no events (none recorded) still gets the kernels it launched."""
    rows = _rows((1, "exec", 100, 200, None, None), (2, "fallback", 200, 260, None, None))
    table, kseq, _ = K.attribute_timeline(rows, _launched((150, 1000, 1100), (230, 1200, 1300)))
    assert table.kernel_count.tolist() == [1, 1] and kseq.tolist() == [1, 2]
    unwatched, _, _ = K.attribute_timeline(rows, _launched((150, 1000, 1100)), watched=[False, True])
    assert unwatched.index.tolist() == [2] and unwatched.loc[2, "kernel_count"] == 0


def test_a_host_only_row_gets_kernels_by_launch_and_no_false_copy_figures():
    """Copies go by GPU window only: a row without one shows its launched kernels, and null copies."""
    rows = _rows((1, "exec", 100, 200, None, None))
    k = _launched((150, 1000, 1100), (-1, 1200, 1300))
    k["kind"] = np.array(["kernel", "memcpy"], dtype=object)
    table, _, _ = K.attribute_timeline(rows, k)
    assert table.loc[1, "kernel_count"] == 1 and pd.isna(table.loc[1, "copy_count"]) and pd.isna(table.loc[1, "copy_ns"])


def test_a_reversed_window_is_no_window():
    """A GPU window whose end comes before its start (events early against the host clock) is no
    window: without launch times its row keeps null kernel columns, as before."""
    rows = _rows((1, "exec", 100, 200, 500, 400))
    table, _, _ = K.attribute_timeline(rows, _launched((-1, 450, 460)))
    assert table.empty or table.loc[1].isna().all()


def test_a_launch_while_two_threads_run_inferences_goes_by_gpu_window():
    """Thread 2 launches between its own rows while thread 1's engine row is open: the launch alone
    would give it to thread 1's row; both threads' inferences were open, so it goes by GPU window."""
    rows = _rows((1, "exec", 100, 200, 300, 400, 1), (2, "inference", 90, 210, 300, 400, 1),
                 (3, "exec", 50, 110, 500, 600, 2), (4, "inference", 40, 300, 500, 700, 2))
    table, kseq, counts = K.attribute_timeline(rows, _launched((150, 650, 660), (120, 310, 320)))
    assert kseq.tolist() == [pd.NA, 1] and table.loc[1, "kernel_count"] == 1
    assert counts["subgraph"]["by_launch"] == 0 and counts["subgraph"]["by_time"] == 1


def test_python_records_read_unknown_launch_times_as_minus_one():
    assert CK._stamp(2 ** 64 - 1) == -1 and CK._stamp(None) == 0 and CK._stamp(5) == 5
