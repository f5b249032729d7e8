"""A folder of ranks analysed a rank at a time, the long ranks chunk by chunk (`analysis.ranks_streamed`),
gives the merged report of the whole load (`analysis.ranks.analyse_ranks`): every table and the page.

The folder is built from the simulator (support/synthetic): three ranks of two interleaved models,
two on one machine and one on another (its clock shifted onto rank 0's), the third short enough to
stay whole while the other two are cut into many chunks; the compact straggler is checked against
the frame-based one it replaced, on random latencies with ties, duplicates and exclusions."""
import json

import numpy as np
import pandas as pd
import pytest

import synthetic
from trtprof.analysis import ranks as analysis, ranks_streamed, streamed
from trtprof.render import ranks_html, ranks_timeline
from trtprof.timeline import ranks as timeline_ranks

HOSTS = {0: ("boot-a", "gpu-1", 0), 1: ("boot-a", "gpu-1", 0), 2: ("boot-b", "gpu-2", 3_000_000)}


def _rank(n: int, seed: int, pid: int, t0: int) -> pd.DataFrame:
    """Two models whose inferences interleave, with shape changes and the pre-alloc switch (an
    excluded inference) of the simulator."""
    parts = []
    for k, model in enumerate(("model1", "model0")):  # not in name order: the merged tables sort them
        rng = np.random.default_rng(seed + k)
        shapes = list(np.where(rng.random(n) < 0.15, "(4,128)", "(8,128)"))
        parts.append(synthetic.timeline(n, model=model, shapes=shapes, seed=seed + k, pid=pid, t0=t0 + k * 7_000))
    df = pd.concat(parts).sort_values("host_start_ns", kind="stable").reset_index(drop=True)
    df["seq"] = np.arange(len(df))
    return df


def _folder(tmp_path, sizes=(300, 300, 40)):
    """DIR/rank0..rank2 as `torchrun ... trtprof capture -o DIR` writes them (the rank block of meta.json)."""
    root = tmp_path / "run"
    wall = 1_700_000_000 * 10**9
    for r, n in enumerate(sizes):
        boot, host, skew = HOSTS[r]
        perf = 10**12 - skew  # rank 2's monotonic clock reads `skew` less at the same wall time
        meta = {"pid": 100 + r, "rank": {"rank": r, "world_size": len(sizes), "local_rank": r % 2, "host": host,
                                         "launcher": "torchrun", "clock": {"boot_id": boot, "perf_counter_ns": perf,
                                                                           "time_ns": wall}}}
        synthetic.write_capture(_rank(n, seed=7 * r, pid=100 + r, t0=10**12 - skew), root / f"rank{r}", meta)
    return root


def test_folder_of_ranks_in_chunks_is_the_whole_report(tmp_path):
    root = _folder(tmp_path)
    whole = timeline_ranks.load_ranks(root)
    want = analysis.analyse_ranks(whole, n_boot=100)
    opened = timeline_ranks.open_ranks(root)
    assert opened.offsets == whole.offsets and opened.offsets[2] == 3_000_000 and opened.clock == whole.clock
    got = ranks_streamed.analyse(opened, {0, 1}, n_boot=100, chunk_rows=400, batch_rows=250)
    for r in (0, 1):  # cut, and more than once; rank 2 loaded whole
        assert isinstance(got.readers[r].__self__, streamed.Streamed)
        assert len(got.readers[r].__self__.plan.chunks) >= 3
    assert not isinstance(getattr(got.readers[2], "__self__", None), streamed.Streamed)
    # what the merged page shows is not trivial here: two models compared across three ranks on one clock
    assert set(want.straggler["model"]) == {"model0", "model1"} and (want.straggler["ranks"] == 3).any()
    assert want.straggler["finish_skew_ms"].notna().all() and want.straggler["spread_ms"].gt(0).any()
    pd.testing.assert_frame_equal(got.straggler, want.straggler)
    pd.testing.assert_frame_equal(got.summary, want.summary)
    pd.testing.assert_frame_equal(got.latency, want.latency, check_dtype=False, check_categorical=False)
    pd.testing.assert_frame_equal(got.subgraphs.astype(object), want.subgraphs.astype(object))
    assert got.rows == want.rows == {r: len(c.timeline) for r, c in whole.captures.items()}
    assert got.notes == want.notes
    for r in whole.captures:  # the lazily read ends are the loaded ones
        e = ranks_streamed.ends(opened.captures[r].timeline, opened.offsets[r])
        assert e["model"].dtype == "category" and e["inference"].dtype == np.int32  # compact
        pd.testing.assert_frame_equal(e, analysis._ends(timeline_ranks.shifted(whole.captures[r].timeline,
                                                                                whole.offsets[r])).reset_index(drop=True),
                                      check_dtype=False, check_categorical=False)
    # the timeline: each rank's window rows, read again, are those of its loaded timeline
    _, _, wins = ranks_timeline.windows(want)
    assert sorted(wins) == [0, 1, 2]
    rows = ranks_streamed.window_rows(got, {r: k for r, (k, _) in wins.items()})
    for r, (keys, _) in wins.items():
        cap = whole.captures[r].timeline
        assert set(streamed.READ) <= set(rows[r][0].columns)  # a chunk holds the columns the analyses read
        pd.testing.assert_frame_equal(rows[r][0], cap.loc[timeline_ranks.in_keys(cap, keys), rows[r][0].columns]
                                      .reset_index(drop=True))
    page = ranks_html.render(opened, got, tmp_path, rows)
    assert "Timeline of 3 ranks" in page and "rank 2 \\u00b7 host" in page
    assert page == ranks_html.render(whole, want, tmp_path)


def test_report_command_reads_long_ranks_in_chunks(tmp_path, monkeypatch):
    """`trtprof report DIR` takes the chunked path once a rank is past `STREAM_ROWS` and writes the
    page and the lines the whole load writes."""
    from click.testing import CliRunner

    from trtprof.cli import common, main
    from trtprof.render import ranks_text

    root = _folder(tmp_path)
    whole = timeline_ranks.load_ranks(root)
    want = analysis.analyse_ranks(whole)
    monkeypatch.setattr(common, "STREAM_ROWS", len(whole.captures[2].timeline) + 1)  # ranks 0 and 1 past it
    monkeypatch.setattr(streamed, "CHUNK_ROWS", 500)
    called = []
    real = streamed.analyse
    monkeypatch.setattr(streamed, "analyse", lambda *a, **k: called.append(real(*a, **k)) or called[-1])
    out = CliRunner().invoke(main, ["report", str(root), "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    assert len(called) == 2 and all(len(s.plan.chunks) >= 3 for s in called)
    assert (tmp_path / "r.html").read_text() == ranks_html.render(whole, want, tmp_path)
    assert ranks_text.render(whole, want, subgraphs=False) in out.output


def test_a_short_folder_stays_whole(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from trtprof.cli import main

    root = _folder(tmp_path, sizes=(20, 20))
    monkeypatch.setattr(streamed, "analyse", lambda *a, **k: pytest.fail("a short folder was cut into chunks"))
    out = CliRunner().invoke(main, ["report", str(root), "-o", str(tmp_path / "r.html"), "-q"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "r.html").is_file()


def test_unreadable_rank_in_a_long_folder_is_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from trtprof.cli import common, main

    root = _folder(tmp_path)
    monkeypatch.setattr(common, "STREAM_ROWS", 10)
    (root / "rank1" / "timeline.parquet").write_bytes(b"PAR1 not parquet")
    out = CliRunner().invoke(main, ["report", str(root), "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    assert "rank 1 left out" in out.output and "not a readable parquet file" in out.output
    meta = json.loads((root / "rank0" / "meta.json").read_text())
    (root / "rank0" / "meta.json").write_text(json.dumps(dict(meta, rank=dict(meta["rank"], rank=2))))
    out = CliRunner().invoke(main, ["report", str(root), "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 0 and "rank 0 left out" in out.output


def _reference_straggler(latency: dict, ends: dict | None = None) -> pd.DataFrame:
    """The straggler as a merged, grouped frame (the implementation `analysis.ranks.straggler` replaced)."""
    parts = []
    for r, lat in latency.items():
        ok = lat[~lat["excluded"].astype(bool)] if len(lat) else lat
        if len(ok):
            parts.append(pd.DataFrame({"rank": np.int64(r), "model": ok["model"].to_numpy(object),
                                       "inference": ok["inference"].to_numpy(np.int64),
                                       "latency_ns": ok["latency_ns"].to_numpy(float)}))
    if not parts:
        return pd.DataFrame(columns=analysis.STRAGGLER_COLUMNS)
    d = pd.concat(parts, ignore_index=True).drop_duplicates(["rank", "model", "inference"])
    if ends:
        e = pd.concat([v.assign(rank=np.int64(r)) for r, v in ends.items() if len(v)], ignore_index=True)
        d = d.merge(e, on=["rank", "model", "inference"], how="left")
    else:
        d["end_ns"] = np.nan
    d = d.sort_values(["model", "inference", "rank"], kind="stable")
    d = d[d.groupby(["model", "inference"], sort=False)["rank"].transform("size") >= 2]
    if d.empty:
        return pd.DataFrame(columns=analysis.STRAGGLER_COLUMNS)
    g = d.groupby(["model", "inference"], sort=False)
    lo, hi = d.loc[g["latency_ns"].idxmin()], d.loc[g["latency_ns"].idxmax()]
    out = pd.DataFrame({"model": lo["model"].to_numpy(object), "inference": lo["inference"].to_numpy(np.int64),
                        "ranks": g.size().to_numpy(np.int64), "fastest_rank": lo["rank"].to_numpy(np.int64),
                        "slowest_rank": hi["rank"].to_numpy(np.int64), "fastest_ms": lo["latency_ns"].to_numpy(float) / 1e6,
                        "slowest_ms": hi["latency_ns"].to_numpy(float) / 1e6})
    out["spread_ms"] = out["slowest_ms"] - out["fastest_ms"]
    out["finish_skew_ms"] = (g["end_ns"].max() - g["end_ns"].min()).to_numpy(float) / 1e6
    return out[analysis.STRAGGLER_COLUMNS].reset_index(drop=True)


@pytest.mark.parametrize("block", [1, 3, 1 << 18])
@pytest.mark.parametrize("seed", range(6))
def test_compact_straggler_is_the_frame_straggler(seed, block):
    """Random ranks: latencies on a coarse grid (ties, broken by the lower rank), repeated rows (the
    first kept), excluded rows, inferences one rank ran, ends missing or NaN, models as strings on
    one rank and categories on another, ranks given out of order."""
    rng = np.random.default_rng(seed)
    models = ["b", "a", "m<x>"]
    latency, ends = {}, {}
    for r in rng.permutation(4):
        n = int(rng.integers(0, 60))
        lat = pd.DataFrame({"model": rng.choice(models, n), "inference": rng.integers(0, 25, n),
                            "excluded": rng.random(n) < 0.1, "latency_ns": rng.integers(1, 5, n) * 1e6})
        if r % 2:
            lat["model"] = pd.Categorical(lat["model"])
            lat["inference"] = lat["inference"].astype(np.int32)
        latency[int(r)] = lat
        m = int(rng.integers(0, 40))
        e = pd.DataFrame({"model": rng.choice(models, m), "inference": rng.integers(0, 25, m),
                          "end_ns": np.where(rng.random(m) < 0.2, np.nan, rng.integers(0, 10**6, m) * 1.0)})
        ends[int(r)] = e.drop_duplicates(["model", "inference"])
    ref_lat = {r: v.astype({"model": object}) for r, v in latency.items()}
    want = _reference_straggler(ref_lat, ends)
    got = analysis.straggler(latency, ends, block=block)  # merged a block of keys at a time
    assert len(want) > 0 or seed > 3
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    pd.testing.assert_frame_equal(analysis.straggler(latency, block=block), _reference_straggler(ref_lat),
                                  check_dtype=False)


def test_a_rank_damaged_inside_its_file_is_left_out_with_a_note_on_both_paths(tmp_path, monkeypatch):
    """Rows damaged in a column the opening does not read: the whole load leaves the rank out with a
    note; the bounded path meets the damage only when its analysis reads the rank, and does the same."""
    import pyarrow.parquet as pq

    from trtprof.cli import common, ranks as cli

    root = _folder(tmp_path)
    path = root / "rank1" / "timeline.parquet"
    md = pq.ParquetFile(path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    col = md.row_group(0).column(names.index("subgraph"))
    data = bytearray(path.read_bytes())
    at = col.data_page_offset
    data[at + 8:at + 64] = b"\xff" * 56  # the page's values, past its header's first bytes
    path.write_bytes(bytes(data))
    whole = cli.load(root)
    assert 1 not in whole.captures and any(n.startswith("rank 1 left out") for n in whole.notes)
    monkeypatch.setattr(common, "STREAM_ROWS", 10)
    ranks, res = cli.load_and_analyse(root)
    assert 1 not in ranks.captures and 1 not in res.per_rank
    assert any(n.startswith("rank 1 left out") for n in ranks.notes)
    assert set(res.per_rank) == set(whole.captures)
