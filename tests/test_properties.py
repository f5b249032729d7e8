"""Property-based tests: whatever a capture folder holds, loading it ends in a Capture or a one-line
CaptureError, never another exception; whatever a timeline holds, the summary does not raise.

Why hypothesis: the failure modes of a loader are in inputs nobody thinks to write by hand (a flipped
byte in a parquet footer, a JSON number where a dict was expected, a null in a non-null column).
Examples are few and the deadline is off so the module stays fast and steady on a 2-core CI box.
"""
import io
import json
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trtprof
from trtprof.analysis.subgraphs import COLUMNS as SUMMARY_COLUMNS
from trtprof.analysis.subgraphs import table as by_subgraph
from trtprof.capture import records as R
from trtprof.timeline import schema, store
from trtprof.timeline.store import CaptureError, CaptureWriter

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
META = json.dumps({"schema_version": schema.SCHEMA_VERSION, "command": ["x"]}).encode()

# -- timelines -----------------------------------------------------------------------------------------
EVENTS = ["inference", "call", "alloc", "exec", "fallback"]
KINDS = ["engine", "fallback", "model"]
SUBGRAPHS = ["model0", "_run_on_acc_0", "_run_on_gpu_1", "_run_on_acc_2", "weird_name", ""]
text = st.one_of(st.none(), st.text(max_size=12))
ns = st.integers(-(2 ** 62), 2 ** 62)


def _pick(values, null=True):
    return st.one_of(st.sampled_from(values), text if null else st.text(max_size=12))


def _value(name):
    t, dtype, _ = schema.COLUMNS[name]
    nullable = dtype[0].isupper() or dtype in ("string", "boolean")
    if name in ("host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns"):
        base = ns
    elif name == "event":
        return _pick(EVENTS, null=False)  # never null in a loadable timeline (store.NOT_NULL)
    elif name == "subgraph_kind":
        return _pick(KINDS, null=False)
    elif name in ("subgraph", "model"):
        return _pick(SUBGRAPHS, null=False)
    elif name == "runtime":
        return _pick(["python", "cpp", "torch"], null=False)
    elif name == "alloc_phase":
        return _pick(["before_exec", "after_enqueue"])
    elif name == "outputs":
        return _pick(["preallocated", "new"])
    elif pa.types.is_integer(t):
        base = st.integers(-(2 ** 40), 2 ** 40)
    elif pa.types.is_boolean(t):
        base = st.booleans()
    else:
        return text
    return st.one_of(st.none(), base) if nullable else base


record = st.fixed_dictionaries({name: _value(name) for name in R.FIELDS})


def _frame(rows) -> pd.DataFrame:
    recs = [[r[f] for f in R.FIELDS] for r in rows]
    return schema.to_frame(schema.records_to_table(recs))


@SETTINGS
@given(st.lists(record, max_size=40))
def test_summary_never_raises_on_random_timelines(rows):
    res = by_subgraph(_frame(rows))
    assert list(res.columns) == SUMMARY_COLUMNS
    assert len(res) <= len(rows)


@pytest.mark.parametrize("column", ["subgraph_kind", "subgraph"])
def test_summary_with_null_identity_columns(column):
    rec = {f: None for f in R.FIELDS}
    rec.update(seq=0, pid=1, thread=1, model="model0", inference=0, subgraph="_run_on_acc_0",
               subgraph_kind="engine", runtime="python", event="call", call=0, host_start_ns=0, host_end_ns=1)
    rec[column] = None
    out = by_subgraph(_frame([rec]))  # an in-memory frame may hold nulls (the loader refuses them)
    assert len(out) == 1 and out["calls"].iloc[0] == 1


def test_loader_refuses_null_identity_columns():
    rec = [0, 1, 1, "model0", 0, "_run_on_acc_0", None] + [None] * (len(R.FIELDS) - 7)
    rec[R.INDEX["runtime"]], rec[R.INDEX["event"]], rec[R.INDEX["call"]] = "python", "call", 0
    rec[R.INDEX["host_start_ns"]], rec[R.INDEX["host_end_ns"]] = 0, 1
    buf = io.BytesIO()
    pq.write_table(schema.records_to_table([rec]), buf)
    with pytest.raises(CaptureError, match="null values in subgraph_kind"):
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "meta.json").write_bytes(META)
            (Path(d) / "timeline.parquet").write_bytes(buf.getvalue())
            trtprof.load_capture(d)


@SETTINGS
@given(st.lists(record, min_size=1, max_size=30))
def test_any_valid_timeline_round_trips(rows):
    df = _frame(rows)
    with tempfile.TemporaryDirectory() as d:
        w = CaptureWriter(Path(d) / "c", {})
        w.write([[r[f] for f in R.FIELDS] for r in rows])
        w.close()
        back = trtprof.load(Path(d) / "c")
    back.attrs = {}
    fixed = schema.enforce_rules(df)  # the loader keeps the row rules: rows breaking one come back repaired
    assert (back["gpu_start_ns"] >= back["host_start_ns"]).fillna(True).all()
    assert fixed.get("gpu_start_not_before_host_start", 0) == int((_frame(rows)["gpu_start_ns"] < df["host_start_ns"]).fillna(False).sum())
    pd.testing.assert_frame_equal(back, df)


# -- capture folders -----------------------------------------------------------------------------------
def _valid_bytes() -> tuple[bytes, bytes]:
    """(timeline.parquet, timeline.arrows) of a small real capture, several row groups and batches."""
    rows = [[i, 1, 2, "model0", i // 4, "_run_on_acc_0", "engine", "python", EVENTS[i % 5], i, 10 * i,
             10 * i + 5, None, None, 7, "(1,8)", "(1,8)", 64, True, "before_exec", "new", False, False,
             None, False, "n"] for i in range(40)]
    with tempfile.TemporaryDirectory() as d:
        w = CaptureWriter(Path(d) / "c", {})
        for i in range(0, 40, 10):
            w.write(rows[i:i + 10])
        w._sink.flush()
        spill = (Path(d) / "c" / store.SPILL).read_bytes()
        buf = io.BytesIO()
        pq.write_table(schema.records_to_table(rows), buf, row_group_size=16)
    return buf.getvalue(), spill


PARQUET, SPILL = _valid_bytes()


def _load_folder(files: dict[str, bytes]):
    """Load a folder holding exactly `files`: a Capture, or None when it raised CaptureError (one line).
    Any other exception propagates and fails the property."""
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        try:
            cap = trtprof.load_capture(d)
        except CaptureError as e:
            assert "\n" not in str(e) and str(e)
            return None
    assert list(cap.timeline.columns) == list(schema.COLUMNS)
    assert {c: str(t) for c, t in cap.timeline.dtypes.items()} == {c: d for c, (_, d, _) in schema.COLUMNS.items()}
    return cap


def _damage(data: bytes):
    """Strategy: `data` truncated, with bytes overwritten, inserted or deleted."""
    n = len(data)
    pos = st.integers(0, n - 1)
    trunc = pos.map(lambda i: data[:i])
    flip = st.lists(st.tuples(pos, st.integers(0, 255)), min_size=1, max_size=8).map(
        lambda fs: bytes(_apply(bytearray(data), fs)))
    insert = st.tuples(pos, st.binary(min_size=1, max_size=16)).map(lambda t: data[:t[0]] + t[1] + data[t[0]:])
    delete = st.tuples(pos, st.integers(1, 64)).map(lambda t: data[:t[0]] + data[t[0] + t[1]:])
    return st.one_of(trunc, flip, insert, delete)


def _apply(buf: bytearray, flips) -> bytearray:
    for i, b in flips:
        buf[i] = b
    return buf


@SETTINGS
@given(_damage(PARQUET))
def test_damaged_parquet_is_a_capture_error_or_loads(data):
    _load_folder({"meta.json": META, "timeline.parquet": data})


@SETTINGS
@given(_damage(SPILL))
def test_damaged_spill_is_a_capture_error_or_loads_incomplete(data):
    cap = _load_folder({"meta.json": META, "timeline.arrows": data})
    if cap is not None:
        assert cap.meta["status"] == "incomplete" and len(cap.timeline) <= 40


def _bad_utf8_name(data: bytes) -> bytes:
    """`data` with the first byte of each copy of a column name made 0x80: a field name that is not
    UTF-8 (CI's hypothesis found this one: pyarrow raises UnicodeDecodeError on reading the names)."""
    buf, name = bytearray(data), b"host_start_ns"
    i = data.find(name)
    assert i >= 0
    while i >= 0:
        buf[i] = 0x80
        i = data.find(name, i + 1)
    return bytes(buf)


@pytest.mark.parametrize("name", ["timeline.parquet", "timeline.arrows"])
def test_a_column_name_that_is_not_utf8_is_a_capture_error(name):
    data = PARQUET if name == "timeline.parquet" else SPILL
    assert _load_folder({"meta.json": META, name: _bad_utf8_name(data)}) is None


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(["timeline.parquet", "timeline.arrows"]))
def test_random_bytes_as_a_timeline(data, name):
    _load_folder({"meta.json": META, name: data})


json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                          lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
                          max_leaves=20)


@SETTINGS
@given(st.one_of(
    json_value.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(), json_value, max_size=5).map(
        lambda m: json.dumps({**m, "schema_version": schema.SCHEMA_VERSION}).encode()),
    json_value.map(lambda v: json.dumps({"schema_version": v, "status": v}).encode()),
    _damage(META),
    st.binary(max_size=200),
))
def test_random_metadata(meta):
    cap = _load_folder({"meta.json": meta, "timeline.parquet": PARQUET})
    if cap is not None:
        assert len(cap.timeline) == 40 and cap.meta["schema_version"] == schema.SCHEMA_VERSION


def _column(n):
    return st.one_of(
        st.lists(st.one_of(st.none(), st.integers(-(2 ** 63), 2 ** 63 - 1)), min_size=n, max_size=n).map(
            lambda v: pa.array(v, pa.int64())),
        st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=n, max_size=n).map(pa.array),
        st.lists(st.one_of(st.none(), st.floats()), min_size=n, max_size=n).map(lambda v: pa.array(v, pa.float64())),
        st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n).map(lambda v: pa.array(v, pa.bool_())),
        st.lists(st.lists(st.integers(0, 9), max_size=2), min_size=n, max_size=n).map(pa.array),
    )


@st.composite
def foreign_tables(draw):
    """Tables named like a timeline (some columns missing, renamed, duplicated or extra) with random types."""
    n = draw(st.integers(0, 6))
    names = list(schema.COLUMNS)
    keep = draw(st.lists(st.sampled_from(names), unique=True, min_size=len(names) - 2, max_size=len(names)))
    keep += draw(st.lists(st.sampled_from(names + ["extra", "ts"]), max_size=2))
    retype = set(draw(st.lists(st.sampled_from(keep), max_size=3)))
    cols = []
    for name in keep:
        if name in retype or name not in schema.COLUMNS:
            cols.append(draw(_column(n)))
        else:  # a valid column: the damage is only in the retyped, missing or extra ones
            t = schema.COLUMNS[name][0]
            cols.append(pa.array([0 if pa.types.is_integer(t) else "x" if pa.types.is_string(t) else None] * n, t))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(cols, names=keep), buf)
    return buf.getvalue()


@SETTINGS
@given(foreign_tables())
def test_foreign_parquet_tables(data):
    _load_folder({"meta.json": META, "timeline.parquet": data})


def test_the_corpus_covers_both_outcomes():
    """The properties above are not vacuous: the undamaged inputs load, and damage is refused."""
    assert len(_load_folder({"meta.json": META, "timeline.parquet": PARQUET}).timeline) == 40
    assert len(_load_folder({"meta.json": META, "timeline.arrows": SPILL}).timeline) == 40
    assert _load_folder({"meta.json": META, "timeline.parquet": PARQUET[: len(PARQUET) // 2]}) is None
    with pytest.raises(CaptureError):
        trtprof.load_capture("/nonexistent/trtprof/capture")


# -- the nsys reader -----------------------------------------------------------------------------------
def _nsys_export() -> bytes:
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    import nsys_synth
    from test_nsys import _cpu_like
    with tempfile.TemporaryDirectory() as d:
        return nsys_synth.build(Path(d) / "s.sqlite", _cpu_like(4)).read_bytes()


NSYS = _nsys_export()
NSYS_DAMAGE = [  # SQL-level damage a foreign or edited export can hold
    "DROP TABLE StringIds", "DELETE FROM ENUM_NSYS_EVENT_TYPE", "UPDATE NVTX_EVENTS SET start = NULL",
    "UPDATE NVTX_EVENTS SET end = 'x'", "UPDATE NVTX_EVENTS SET globalTid = -1",
    "ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL RENAME TO K", "UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET correlationId = 1e300",
    "DROP TABLE NVTX_EVENTS", "UPDATE NVTX_EVENTS SET text = NULL, textId = 999999",
]


def _read_nsys(data: bytes, sql=()):
    """read_sqlite on `data` (after `sql`): an NsysTrace or an NsysError, nothing else."""
    import sqlite3

    from trtprof.errors import NsysError
    from trtprof.nsys import reader
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.sqlite"
        p.write_bytes(data)
        if sql:
            con = sqlite3.connect(p)
            for s in sql:
                try:
                    con.execute(s)
                except sqlite3.Error:
                    pass
            con.commit()
            con.close()
        try:
            return reader.read_sqlite(p)
        except NsysError as e:
            assert "\n" not in str(e)
            return None


@SETTINGS
@given(_damage(NSYS))
def test_damaged_nsys_export_is_an_nsys_error_or_reads(data):
    _read_nsys(data)


@SETTINGS
@given(st.lists(st.sampled_from(NSYS_DAMAGE), max_size=3, unique=True))
def test_edited_nsys_export_is_an_nsys_error_or_reads(sql):
    _read_nsys(NSYS, sql)
