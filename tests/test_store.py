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
