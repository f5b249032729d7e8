"""Reading captures in batches gives what loading them whole gives: selections through `trtprof.load`
(columns, filters, the lazy timeline), the streamed CSV export, and the per-model analyses that split
their tables once (`recommendations`, `compare_modes`) against each model analysed alone."""
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import synthetic
import trtprof
from trtprof.analysis.report import analyse
from trtprof.errors import CaptureError, ExitCode, UsageError
from trtprof.render.tabular import write_csv, write_csv_batches
from trtprof.timeline import scan, schema
from trtprof.timeline.store import CaptureWriter

CASES = sorted(p for p in (Path(__file__).parent.parent / "reports" / "cases").iterdir() if (p / "meta.json").is_file())


def _synthetic(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    shapes = list(np.where(rng.random(300) < 0.1, "(4,128)", "(8,128)"))
    df = synthetic.timeline(300, shapes=shapes, seed=2)
    early = df.index[df["gpu_start_ns"].notna()][:7]  # rows the loader must clamp (a rule repair)
    df.loc[early, "gpu_start_ns"] = df.loc[early, "host_start_ns"] - 5
    return synthetic.write_capture(df, tmp_path / "syn")


@pytest.fixture(params=["synthetic"] + [p.name for p in CASES])
def capture(request, tmp_path):
    return _synthetic(tmp_path) if request.param == "synthetic" else Path(CASES[0].parent / request.param)


def test_selection_is_the_full_load_selected(capture):
    full = trtprof.load(capture)
    cols = ["seq", "event", "subgraph", "gpu_start_ns", "host_start_ns", "kernel_busy_ns", "prealloc"]
    got = trtprof.load(capture, columns=cols, filter=pc.field("event") == "exec")
    pd.testing.assert_frame_equal(got, full.loc[full["event"] == "exec", cols].reset_index(drop=True))
    got = trtprof.load(capture, filter=[("inference", ">=", 3), ("event", "in", ["call", "alloc"])])
    want = full[(full["inference"] >= 3) & full["event"].isin(["call", "alloc"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    # a filter on a value the loader repairs sees the repaired value
    got = trtprof.load(capture, columns=["seq"], filter=pc.field("gpu_start_ns") < pc.field("host_start_ns"))
    assert got.empty
    assert got.attrs["trtprof"].get("repairs") == full.attrs["trtprof"].get("repairs")


def test_lazy_timeline_reads_batches_equal_to_the_full_load(capture):
    full = trtprof.load(capture)
    tl = trtprof.load(capture, lazy=True)
    assert isinstance(tl, scan.Timeline) and tl.num_rows == len(full)
    parts = list(tl.frames(batch_rows=997))
    assert len(parts) > 1 and all(len(p) <= 997 for p in parts)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), full)
    assert tl.meta.get("repairs") == full.attrs["trtprof"].get("repairs")
    assert tl.meta["status"] == full.attrs["trtprof"]["status"]


def test_streamed_csv_is_the_whole_frame_csv(capture):
    a, b = io.StringIO(), io.StringIO()
    write_csv(trtprof.load(capture), a)
    n = write_csv_batches(scan.open_timeline(capture).frames(batch_rows=1009), b)
    assert n == len(trtprof.load(capture)) and a.getvalue() == b.getvalue()


def test_spill_of_an_unfinished_capture_reads_in_batches(tmp_path):
    w = CaptureWriter(tmp_path / "c", {"command": ["x"]})
    for seed in (0, 1):
        df = synthetic.timeline(40, seed=seed).astype(object)
        w.write([list(r) for r in df.where(df.notna(), None).itertuples(index=False)])
    # the process "died": no close(), the rows are only in the spill
    full = trtprof.load(tmp_path / "c")
    tl = trtprof.load(tmp_path / "c", lazy=True)
    assert tl.meta["status"] == "incomplete" and "rows in its spill" in repr(tl)
    pd.testing.assert_frame_equal(pd.concat(list(tl.frames()), ignore_index=True), full)
    assert len(trtprof.load(tmp_path / "c", filter=[("event", "==", "exec")])) == int((full["event"] == "exec").sum())


def test_bad_selections_and_captures_are_one_line_errors(tmp_path):
    cap = _synthetic(tmp_path)
    for kw, text in [(dict(columns=["nope"]), "no timeline column 'nope'"),
                     (dict(filter=[("nope", "==", 1)]), "no timeline column 'nope'"),
                     (dict(filter=pc.field("event") == 3), "filter:"),
                     (dict(filter="event == 'exec'"), "filter must be"),
                     (dict(filter=[("event", "==")]), "is not a (column, op, value) tuple"),
                     (dict(lazy=True, columns=["seq"]), "takes no columns")]:
        with pytest.raises(UsageError) as e:
            trtprof.load(cap, **kw)
        assert text in str(e.value) and "\n" not in str(e.value) and e.value.exit_code == ExitCode.USAGE
    (cap / "timeline.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(CaptureError, match="not a readable parquet file"):
        trtprof.load(cap, lazy=True)
    cap = synthetic.write_capture(synthetic.timeline(5), tmp_path / "b")
    pq.write_table(pq.read_table(cap / "timeline.parquet").drop_columns(["event"]), cap / "timeline.parquet")
    with pytest.raises(CaptureError, match="missing columns event"):
        trtprof.load(cap, columns=["seq"])


def _models(n_models: int = 4) -> pd.DataFrame:
    """Several models in one timeline, each with its own pre-alloc pattern and shapes."""
    parts = []
    for k in range(n_models):
        rng = np.random.default_rng(k)
        n = 60 + 20 * k
        shapes = list(np.where(rng.random(n) < 0.2 * (k % 2), "(4,128)", "(8,128)"))
        pre = None if k % 3 != 2 else np.zeros(n, bool)  # one model never turns pre-allocation on
        parts.append(synthetic.timeline(n, model=f"model{k}", shapes=shapes, prealloc=pre, seed=10 + k,
                                        t0=10**12 + k * 10**10))
    df = pd.concat(parts, ignore_index=True)
    df["seq"] = np.arange(len(df))
    return df


def test_per_model_results_are_those_of_each_model_alone():
    """Splitting the tables by model once gives, for each model, what analysing it alone gives."""
    df = _models()
    r = analyse(df, n_boot=400)
    assert r.recommendations["model"].nunique() >= 2 and len(r.comparisons) == 4
    for model in sorted(df["model"].unique()):
        alone = analyse(df[df["model"] == model].reset_index(drop=True), n_boot=400)
        mine = [c for c in r.comparisons if c.model == model]
        assert mine == alone.comparisons
        got = r.recommendations[r.recommendations["model"] == model].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone.recommendations.reset_index(drop=True))


def test_schema_dtypes_of_a_selection(capture):
    got = trtprof.load(capture, columns=["gpu_end_ns", "model", "exclude"])
    assert {c: str(t) for c, t in got.dtypes.items()} == {c: schema.DTYPES[c] for c in got.columns}


def test_lazy_reading_imports_no_torch():
    import subprocess
    import sys

    case = CASES[0]
    code = ("import sys, trtprof; tl = trtprof.load(sys.argv[1], lazy=True); "
            "n = sum(t.num_rows for t in tl.batches(['seq'])); df = trtprof.load(sys.argv[1], columns=['seq']); "
            "assert n == len(df) > 0; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(case)], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, check=True)
    assert out.stdout.strip() == "False"


# -- the report of a capture read chunk by chunk ----------------------------------------------------------
BERT = sorted(p for p in (Path(__file__).parent.parent / "reports" / "bert").iterdir() if (p / "meta.json").is_file())


def _overlapping(tmp_path) -> Path:
    """Two models whose inferences interleave, each inference starting while the GPU still runs the
    one before (GPU work carried across a cut hides the next inference's allocations)."""
    parts = []
    for k, model in enumerate(("model0", "model1")):
        rng = np.random.default_rng(k)
        shapes = list(np.where(rng.random(400) < 0.15, "(4,128)", "(8,128)"))
        df = synthetic.timeline(400, model=model, shapes=shapes, seed=5 + k, t0=10**12 + k * 7_000)
        shift = df["inference"].to_numpy(np.int64) * 45_000  # each inference begins before the last one ended
        for c in ("host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns"):
            df[c] = (df[c] - shift).astype(df[c].dtype)
        parts.append(df)
    df = pd.concat(parts).sort_values("host_start_ns", kind="stable").reset_index(drop=True)
    df["seq"] = np.arange(len(df))
    return synthetic.write_capture(df, tmp_path / "overlap")


CG = sorted(p for p in (Path(__file__).parent.parent / "reports" / "cudagraphs").iterdir() if (p / "meta.json").is_file())


def _early_kernels(tmp_path) -> Path:
    """Kernel spans that start before their row's host start (CUPTI's clock against the host's): the
    start the hidden-allocation analysis takes, so the chunk plan must take it too."""
    df = synthetic.timeline(300, seed=4)
    ex = (df["event"] == "exec").to_numpy()
    first = df["host_start_ns"] - 2_000
    df["kernel_first_ns"] = first.where(ex).astype(df["kernel_first_ns"].dtype)
    df["kernel_last_ns"] = df["gpu_end_ns"].where(ex).astype(df["kernel_last_ns"].dtype)
    df["kernel_busy_ns"] = ((df["kernel_last_ns"] - df["kernel_first_ns"]) // 2).astype(df["kernel_busy_ns"].dtype)
    df["kernel_count"] = pd.Series(np.where(ex, 5, pd.NA), dtype=df["kernel_count"].dtype)
    return synthetic.write_capture(df, tmp_path / "early")


def _cut_short(tmp_path) -> Path:
    """Inferences without their `inference` row (a capture ended inside them): counted among the
    inferences, left out of the latencies; the chunks holding them keep a latency table of their own."""
    df = synthetic.timeline(300, seed=6)
    gone = (df["event"] == "inference").to_numpy() & np.isin(df["inference"].to_numpy(), [40, 41, 170])
    df = df[~gone].reset_index(drop=True)
    df["seq"] = np.arange(len(df))
    return synthetic.write_capture(df, tmp_path / "cut")


def _raised_first(tmp_path) -> Path:
    """The first inference raised (its rows left out with the raised note): the chunked report must
    read that note as the whole one does and give the same cold start."""
    from trtprof.capture.state import raised_note

    df = synthetic.timeline(300, seed=7)
    first = (df["inference"] == 0).to_numpy()
    df["exclude"] = df["exclude"].mask(first, True)
    df["note"] = df["note"].astype(object).mask(first, raised_note("RuntimeError"))
    return synthetic.write_capture(df, tmp_path / "raised")


def _spans_only(tmp_path) -> Path:
    """Kernel spans on exec/fallback rows without event brackets (the minimal level with kernel
    activity): the chunk plan and the GPU windows take the spans, whole and in chunks alike."""
    from test_kernel_rows import _spans_as_kernels

    return synthetic.write_capture(_spans_as_kernels(synthetic.timeline(300, seed=8), False), tmp_path / "spans")


def test_latency_kept_on_the_inference_columns_unless_a_row_is_missing(tmp_path):
    from trtprof.analysis import overlap, streamed
    from trtprof.analysis.latency import inference_latency
    from trtprof.timeline.store import load_capture

    for folder, shared in ((_synthetic(tmp_path), True), (_cut_short(tmp_path), False)):
        df = load_capture(folder).timeline
        infs = overlap.inferences(df)
        assert (len(streamed.latency_part(inference_latency(df, infs), infs)) == 1) is shared


@pytest.fixture(params=["synthetic", "overlapping", "early-kernels", "cut-short", "raised-first", "spans-only"] + [p.name for p in CASES]
                + [f"bert/{p.name}" for p in BERT] + [f"cudagraphs/{p.name}" for p in CG])
def any_capture(request, tmp_path):
    if request.param == "synthetic":
        return _synthetic(tmp_path)
    if request.param == "overlapping":
        return _overlapping(tmp_path)
    if request.param == "early-kernels":
        return _early_kernels(tmp_path)
    if request.param == "cut-short":
        return _cut_short(tmp_path)
    if request.param == "raised-first":
        return _raised_first(tmp_path)
    if request.param == "spans-only":
        return _spans_only(tmp_path)
    if "/" in request.param:
        return Path(__file__).parent.parent / "reports" / request.param
    return CASES[0].parent / request.param


def test_report_read_in_chunks_is_the_report_of_the_whole(any_capture):
    """Every statistic, table, figure and the timeline window of the page: the same bytes whether
    the capture is loaded whole or analysed in chunks of a few hundred rows."""
    from report_helpers import render

    from trtprof.analysis import chunks
    from trtprof.cli.common import streamed_html
    from trtprof.timeline.store import load_capture

    tl = scan.open_timeline(any_capture)
    plan = chunks.plan(tl, 400, 250)
    assert len(plan.chunks) >= 3  # cut, and more than once
    assert streamed_html(tl, chunk_rows=400, batch_rows=250) == render(load_capture(any_capture))


def test_medians_from_value_counts_are_the_medians_of_the_values():
    from trtprof.analysis import counts

    rng = np.random.default_rng(7)
    df = pd.DataFrame({"g": rng.integers(0, 6, 5000), "x": rng.integers(0, 40, 5000).astype(float),
                       "y": rng.integers(-5, 5, 5000) * 1000.0})
    df.loc[rng.random(5000) < 0.2, "x"] = np.nan
    df.loc[df["g"] == 5, "x"] = np.nan  # a group with no value: no median
    halves = [counts.value_counts(df.iloc[:1234], ["g"], ["x", "y"]), counts.value_counts(df.iloc[1234:], ["g"], ["x", "y"])]
    got = counts.medians(counts.combine(halves, ["g"]), ["g"])
    want = df.groupby("g")[["x", "y"]].median()
    pd.testing.assert_series_equal(got["y"].sort_index(), want["y"], check_names=False, check_index_type=False)
    pd.testing.assert_series_equal(got["x"].reindex(want.index), want["x"], check_names=False)


def test_report_command_reads_a_long_capture_in_chunks(tmp_path, monkeypatch):
    """`trtprof report` takes the chunked path past `STREAM_ROWS` and writes the page the whole load writes."""
    from report_helpers import render
    from click.testing import CliRunner

    from trtprof.analysis import streamed
    from trtprof.cli import common, main
    from trtprof.timeline.store import load_capture

    cap = _overlapping(tmp_path)
    monkeypatch.setattr(common, "STREAM_ROWS", 1500)
    monkeypatch.setattr(streamed, "CHUNK_ROWS", 1500)
    called = []
    real = streamed.analyse
    monkeypatch.setattr(streamed, "analyse", lambda *a, **k: called.append(real(*a, **k)) or called[-1])
    out = CliRunner().invoke(main, ["report", str(cap), "-o", str(tmp_path / "r.html"), "-q"])
    assert out.exit_code == 0, out.output
    assert called and len(called[0].plan.chunks) >= 3
    assert (tmp_path / "r.html").read_text() == render(load_capture(cap))
