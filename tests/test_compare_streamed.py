"""`trtprof compare` of captures read chunk by chunk (`analysis.compare_streamed`): the comparison of
the timelines loaded whole, figure for figure, on synthetic and committed captures and folders of ranks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import synthetic
from trtprof.analysis import chunks, compare, compare_streamed
from trtprof.analysis.bootstrap import diff_medians
from trtprof.analysis.counts import Counted
from trtprof.render import compare_text
from trtprof.timeline import scan
from trtprof.timeline.store import load_capture

REPORTS = Path(__file__).parent.parent / "reports"


def _synthetic(tmp_path, name, seed, model="model0", offset=0) -> Path:
    rng = np.random.default_rng(seed)
    shapes = list(np.where(rng.random(300) < 0.2, "(4,128)", "(8,128)"))
    df = synthetic.timeline(300, shapes=shapes, seed=seed, model=model)
    for c in ("host_start_ns", "host_end_ns", "gpu_start_ns", "gpu_end_ns"):
        df[c] = (df[c] + offset).astype(df[c].dtype)
    return synthetic.write_capture(df, tmp_path / name)


def _same(a: Path, b: Path, mode: str, shape: str = "common") -> None:
    ca, cb = load_capture(a), load_capture(b)
    whole = compare.compare_captures(ca, cb, mode=mode, shape=shape)
    part = compare.finish(compare_streamed.compare_sides([(scan.open_timeline(a), 0)], [(scan.open_timeline(b), 0)],
                                                         mode=mode, shape=shape, chunk_rows=300), ca, cb)
    assert compare_text.render(part, a, b, ca.meta, cb.meta) == compare_text.render(whole, a, b, ca.meta, cb.meta)
    pd.testing.assert_frame_equal(part.subgraphs, whole.subgraphs, check_dtype=False, check_exact=True)
    for m, n in zip(part.models, whole.models):
        assert m.latency == n.latency
        pd.testing.assert_frame_equal(m.by_shape, n.by_shape, check_dtype=False)
    assert part.warnings == whole.warnings and part.runtimes_a == whole.runtimes_a


@pytest.mark.parametrize("mode", ["all", "on", "off"])
def test_chunked_synthetic_comparison_is_the_whole_one(tmp_path, mode):
    a, b = _synthetic(tmp_path, "a", 1), _synthetic(tmp_path, "b", 2)
    assert len(chunks.plan(scan.open_timeline(a), 300, 150).chunks) >= 3  # read in several chunks
    _same(a, b, mode)
    _same(a, b, mode, shape="all")


@pytest.mark.parametrize("pair", [("cases/small-cpp", "cases/small-python"), ("cases/shapes-cpp", "cases/small-python"),
                                  ("cases/breaks-cpp", "cases/small-cpp"), ("bert/cpp", "cases/small-cpp")])
def test_chunked_comparison_of_committed_captures_is_the_whole_one(pair):
    _same(REPORTS / pair[0], REPORTS / pair[1], "all")
    if pair[0].startswith("cases/shapes"):
        _same(REPORTS / pair[0], REPORTS / pair[1], "on")


def test_counted_values_give_the_figures_of_the_values():
    rng = np.random.default_rng(5)
    for n in (1, 2, 5, 6, 101, 2000):
        a = np.round(rng.exponential(3, n), 1)
        b = np.round(rng.exponential(3.3, n + 3), 1)
        a[::7] = np.nan

        def counted(x):
            v, c = np.unique(x[~np.isnan(x)], return_counts=True)
            return Counted(v[::-1], c[::-1])  # any order in, sorted inside
        for q in (0.5, 0.9, 0.25):
            assert diff_medians(counted(a), counted(b), q=q) == diff_medians(a, b, q=q)


def test_compare_command_reads_long_captures_in_chunks(tmp_path, monkeypatch):
    from trtprof.cli import common, main

    a, b = _synthetic(tmp_path, "a", 3), _synthetic(tmp_path, "b", 4)
    whole = CliRunner().invoke(main, ["compare", str(a), str(b), "--no-html"])
    monkeypatch.setattr(common, "STREAM_ROWS", 500)
    monkeypatch.setattr(compare_streamed.streamed, "CHUNK_ROWS", 400)
    called = []
    real = compare_streamed.compare_sides
    monkeypatch.setattr(compare_streamed, "compare_sides", lambda *x, **k: called.append(1) or real(*x, **k))
    part = CliRunner().invoke(main, ["compare", str(a), str(b), "--no-html"])
    assert whole.exit_code == part.exit_code == 0, part.output
    assert called and part.output == whole.output


def test_compare_of_long_ranks_is_the_whole_one(tmp_path, monkeypatch):
    """Two folders of two ranks each, rank by rank and merged, the same text either way."""
    from trtprof.cli import common, main

    runs = []
    for run in ("x", "y"):
        root = tmp_path / run
        for r in range(2):
            _synthetic(root, f"rank{r}", 10 + r + (5 if run == "y" else 0))
        runs.append(root)
    whole = CliRunner().invoke(main, ["compare", str(runs[0]), str(runs[1]), "--no-html"])
    monkeypatch.setattr(common, "STREAM_ROWS", 500)
    called = []
    real = compare_streamed.compare_sides
    monkeypatch.setattr(compare_streamed, "compare_sides", lambda *x, **k: called.append(len(x[0])) or real(*x, **k))
    part = CliRunner().invoke(main, ["compare", str(runs[0]), str(runs[1]), "--no-html"])
    assert whole.exit_code == 0, whole.output
    assert "== rank 1 ==" in whole.output and "all ranks merged" in whole.output
    assert called == [1, 1, 2] and part.output == whole.output


def _damaged(folder: Path, df: pd.DataFrame) -> Path:
    """A capture whose last row group of one column is garbage: opened lazily, found when read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trtprof.timeline.schema import ARROW_SCHEMA

    synthetic.write_capture(df, folder)
    path = folder / "timeline.parquet"
    pq.write_table(pa.Table.from_pandas(df, schema=ARROW_SCHEMA, preserve_index=False), path, row_group_size=400,
                   compression="snappy")
    md = pq.ParquetFile(path).metadata
    cc = md.row_group(md.num_row_groups - 1).column(md.schema.names.index("subgraph_kind"))
    off = cc.dictionary_page_offset or cc.data_page_offset
    b = bytearray(path.read_bytes())
    b[off:off + cc.total_compressed_size] = b"\xab" * cc.total_compressed_size
    path.write_bytes(bytes(b))
    return folder


def test_long_ranks_with_an_empty_or_a_damaged_rank(tmp_path, monkeypatch):
    """An empty rank compares as nothing ran (as loaded whole); a rank found damaged while read is
    left out with a line saying so, the rest compared; a side of empty ranks is one line, exit 6."""
    from trtprof.cli import common, main

    empty = synthetic.timeline(5, seed=1).iloc[:0]
    for run, seed in (("x", 1), ("y", 3)):
        synthetic.write_capture(synthetic.timeline(150, seed=seed, pid=100), tmp_path / run / "rank0")
        synthetic.write_capture(empty, tmp_path / run / "rank1")
    synthetic.write_capture(synthetic.timeline(150, seed=5, pid=100), tmp_path / "z" / "rank0")
    _damaged(tmp_path / "z" / "rank1", synthetic.timeline(150, seed=6, pid=101))
    for r in (0, 1):
        synthetic.write_capture(empty, tmp_path / "e" / f"rank{r}")
    monkeypatch.setattr(common, "STREAM_ROWS", 100)
    run = lambda *a: CliRunner().invoke(main, ["compare", *map(str, a), "--no-html"])  # noqa: E731
    out = run(tmp_path / "x", tmp_path / "y")
    assert out.exit_code == 0 and "(0 inferences compared" in out.output.split("== rank 1 ==")[1], out.output
    assert "no model ran in both captures" in out.output
    out = run(tmp_path / "x", tmp_path / "e")
    assert out.exit_code == 6 and out.output.count("\n") == 1 and "no rank in" in out.output
    out = run(tmp_path / "x", tmp_path / "z")
    assert out.exit_code == 0, out.output
    assert "== rank 1 ==\nnot compared:" in out.output and "rank1 left out" in out.output
    assert "all ranks merged" in out.output
