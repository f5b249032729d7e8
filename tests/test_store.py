"""The data model: schema round trip, crash recovery from the spill stream, bad folders."""
import json

import pandas as pd
import pytest

import trtprof
from trtprof.capture import records as R
from trtprof.timeline import schema, store
from trtprof.timeline.store import CaptureError, CaptureWriter


def _rec(i, **kw):
    r = R.blank()
    vals = dict(seq=i, pid=1, thread=2, model="model0", inference=i, subgraph="_run_on_acc_0",
                subgraph_kind="engine", runtime="python", event="exec", call=i, host_start_ns=10 * i,
                host_end_ns=10 * i + 5, gpu_start_ns=10 * i + 1, gpu_end_ns=10 * i + 9, stream=77,
                input_shapes="(1,128)", prealloc=bool(i % 2), outputs="new", shape_changed=False)
    vals.update(kw)
    for k, v in vals.items():
        r[R.INDEX[k]] = v
    return r


def test_round_trip_types(tmp_path):
    w = CaptureWriter(tmp_path / "c", {"command": ["x"]})
    recs = [_rec(i) for i in range(10)] + [_rec(10, event="alloc", gpu_start_ns=None, gpu_end_ns=None,
                                                 bytes=1 << 40, alloc_phase="after_enqueue")]
    w.write(recs[:4])
    w.write(recs[4:])
    w.close()
    df = trtprof.load(tmp_path / "c")
    assert list(df.columns) == list(schema.COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == {c: d for c, (_, d, _) in schema.COLUMNS.items()}
    assert len(df) == 11 and df.bytes.iloc[10] == 1 << 40 and pd.isna(df.gpu_start_ns.iloc[10])
    assert df.attrs["trtprof"]["status"] == "complete"
    again = trtprof.load(tmp_path / "c" / "timeline.parquet")
    pd.testing.assert_frame_equal(df, again)


def test_crash_keeps_complete_batches(tmp_path):
    w = CaptureWriter(tmp_path / "c", {})
    w.write([_rec(i) for i in range(5)])
    w.write([_rec(i) for i in range(5, 9)])
    w._sink.flush()
    spill = tmp_path / "c" / store.SPILL
    data = spill.read_bytes()
    spill.write_bytes(data[:-40])  # the process died mid-batch: the last batch is cut
    cap = trtprof.load_capture(tmp_path / "c")
    assert cap.meta["status"] == "incomplete"
    assert list(cap.timeline.seq) == list(range(5))


@pytest.mark.parametrize("setup,msg", [
    (lambda d: None, "has no meta.json"),
    (lambda d: (d / "meta.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "meta.json").write_text("[1]"), "not trtprof metadata"),
    (lambda d: (d / "meta.json").write_text(json.dumps({"schema_version": 99})), "schema 99"),
    (lambda d: (d / "meta.json").write_text(json.dumps({"schema_version": 1})), "no timeline.parquet"),
    (lambda d: ((d / "meta.json").write_text(json.dumps({"schema_version": 1})),
                (d / "timeline.parquet").write_bytes(b"PAR1garbage")), "not a readable parquet"),
    (lambda d: ((d / "meta.json").write_text(json.dumps({"schema_version": 1})),
                pd.DataFrame({"a": [1]}).to_parquet(d / "timeline.parquet")), "missing columns"),
])
def test_bad_folders(tmp_path, setup, msg):
    d = tmp_path / "c"
    d.mkdir()
    setup(d)
    with pytest.raises(CaptureError, match=msg) as e:
        trtprof.load_capture(d)
    assert "\n" not in str(e.value)


def test_missing_and_taken(tmp_path):
    with pytest.raises(CaptureError, match="no capture at"):
        trtprof.load_capture(tmp_path / "nothing")
    w = CaptureWriter(tmp_path / "c", {})
    with pytest.raises(CaptureError, match="already holds a capture"):
        CaptureWriter(tmp_path / "c", {})
    w.close()


def test_readme_documents_the_schema():
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "docs" / "schema.md").read_text()
    assert schema.markdown_table() in readme
    assert schema.rules_markdown() in readme
    assert f"now {schema.SCHEMA_VERSION})" in readme


# -- row rules: captures say which they keep; older ones are repaired on load ------------------------------
def _early_capture(folder, version, declare=False):
    """A capture written by the recorder's writer, then made to look older: meta says `version` and
    rows 1, 4 and 7 have their GPU start before their host start (what schema-1 captures hold)."""
    w = CaptureWriter(folder, {"command": ["x"]})
    w.write([_rec(i, gpu_start_ns=10 * i - 3 if i in (1, 4, 7) else 10 * i + 1) for i in range(10)])
    w.close()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["rules"] == list(schema.RULES) and meta["schema_version"] == schema.SCHEMA_VERSION
    meta["schema_version"] = version
    if not declare:
        meta.pop("rules")
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("version", [1, 2])
def test_old_capture_is_clamped_and_says_so(tmp_path, version):
    cap = store.load_capture(_early_capture(tmp_path / "c", version))
    df = cap.timeline
    assert (df["gpu_start_ns"] >= df["host_start_ns"]).all()
    assert df["gpu_start_ns"].tolist() == [10 * i if i in (1, 4, 7) else 10 * i + 1 for i in range(10)]
    assert df["gpu_end_ns"].tolist() == [10 * i + 9 for i in range(10)]  # only the start is the rule's
    assert cap.meta["repairs"] == {"gpu_start_not_before_host_start": {"rows": 3, "declared": False}}
    (note,) = store.repair_notes(cap.meta)
    assert note.startswith("3 GPU start times clamped to the enqueue time") and "older trtprof" in note
    assert f"schema {version}" in note


def test_new_capture_declares_its_rules_and_needs_no_repair(tmp_path):
    w = CaptureWriter(tmp_path / "c", {"command": ["x"]})
    w.write([_rec(i) for i in range(5)])
    w.close()
    cap = store.load_capture(tmp_path / "c")
    assert cap.meta["rules"] == list(schema.RULES) and "repairs" not in cap.meta
    assert store.repair_notes(cap.meta) == []


def test_broken_declared_rule_is_still_enforced_and_named(tmp_path):
    cap = store.load_capture(_early_capture(tmp_path / "c", schema.SCHEMA_VERSION, declare=True))
    assert (cap.timeline["gpu_start_ns"] >= cap.timeline["host_start_ns"]).all()
    assert cap.meta["repairs"]["gpu_start_not_before_host_start"] == {"rows": 3, "declared": True}
    (note,) = store.repair_notes(cap.meta)
    assert "older" not in note and "says its recorder never writes" in note


def test_planted_repairs_in_meta_mean_nothing(tmp_path):
    w = CaptureWriter(tmp_path / "c", {"command": ["x"], "repairs": {"gpu_start_not_before_host_start":
                                                                      {"rows": 99, "declared": False}}})
    w.write([_rec(i) for i in range(3)])
    w.close()
    cap = store.load_capture(tmp_path / "c")
    assert "repairs" not in cap.meta and store.repair_notes(cap.meta) == []


def test_schema_1_captures_load_clamped(tmp_path):
    """A capture from before the recorder clamped GPU starts (schema 1, no rules in its meta; the
    H100 captures once committed under reports/cases had GPU starts up to microseconds before the
    enqueue): made here from a committed H200 capture by undoing the clamp, it loads clamped."""
    import json
    import shutil
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    src = Path(__file__).resolve().parent.parent / "reports" / "cases" / "small-python"
    folder = tmp_path / "old"
    shutil.copytree(src, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["schema_version"] = 1
    meta.pop("rules", None)
    (folder / "meta.json").write_text(json.dumps(meta))
    t = pq.read_table(folder / "timeline.parquet")
    gs = t.column("gpu_start_ns").to_numpy(zero_copy_only=False)
    hs = t.column("host_start_ns").to_numpy()
    early = pa.array([g - 2_000 if g == g and g is not None else None for g in gs.tolist()], pa.int64())
    t = t.set_column(t.schema.get_field_index("gpu_start_ns"), "gpu_start_ns", early)
    pq.write_table(t, folder / "timeline.parquet")
    before = int(sum(1 for g, h in zip(early.to_pylist(), hs) if g is not None and g < h))
    cap = store.load_capture(folder)
    df = cap.timeline
    assert cap.meta["schema_version"] == 1 and before > 0
    assert not (df["gpu_start_ns"] < df["host_start_ns"]).fillna(False).any()
    assert cap.meta["repairs"]["gpu_start_not_before_host_start"] == {"rows": before, "declared": False}

def test_the_direct_conversion_gives_the_frame_the_two_step_one_gave():
    """to_frame maps Arrow types straight onto the nullable dtypes (and may consume the table): the
    values, nulls and dtypes must be those of converting through pandas' defaults and casting after."""
    recs = [_rec(i) for i in range(6)] + [_rec(6, event="alloc", gpu_start_ns=None, gpu_end_ns=None, stream=None,
                                               bytes=1 << 40, prealloc=None, outputs=None, input_shapes=None)]
    table = schema.records_to_table(recs)
    old = table.to_pandas()
    for name, dtype in schema.DTYPES.items():
        old[name] = old[name].astype(dtype)
    assert old["gpu_start_ns"].isna().sum() == 1 and old["prealloc"].isna().sum() == 1
    pd.testing.assert_frame_equal(schema.to_frame(table), old)
    pd.testing.assert_frame_equal(schema.to_frame(schema.records_to_table(recs), consume=True), old)
