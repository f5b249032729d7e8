"""`trtprof compare`: a known shift between two synthetic captures is found with the right sign and a
CI holding the true value; identical runs show no difference; subgraphs that appear or disappear;
what is compared (mode, shapes, excluded rows); hostile strings escaped; CLI exit codes; and an
end-to-end pair of CPU captures made through the stand-in runtime."""
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from synthetic import frame, hostile, timeline, write_capture
from test_report import ALLOWED_TAGS, _one_line_error, check_page, figure_scripts
from trtprof.errors import ExitCode, UsageError
from trtprof.analysis import compare
from trtprof.cli import main
from trtprof.cli.compare import default_output
from trtprof.timeline.store import load_capture
from trtprof.render import compare_text, figures

US = 1_000
EVIL = ["<script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>"]


def engines(n=300, gpu_us=None, seed=0, model="m", prealloc=None, shapes=None, exclude=None, noise=0.1, scale=None):
    """n inferences, each running the given engines one after another on the GPU.

    Host work per engine is short (25 us) next to its GPU time, so latency = 5 us + the sum of the
    engines' GPU times: scaling every engine by f scales (latency - 5 us) by exactly f. `scale`: a
    factor per inference on every GPU time.
    """
    gpu_us = gpu_us or {"_run_on_acc_0": 200.0}
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t = 10**9 + i * 10**7
        pre = None if prealloc is None else bool(prealloc[i])
        shp = "(1,128)" if shapes is None else shapes[i]
        ex = bool(exclude[i]) if exclude is not None else None
        h, gpu = t, t + 5 * US
        for name, g in gpu_us.items():
            dur = int(g * US * rng.lognormal(0.0, noise) * (1.0 if scale is None else scale[i]))
            common = dict(model=model, inference=i, call=i, subgraph=name, prealloc=pre, input_shapes=shp,
                          subgraph_kind="fallback" if "_gpu_" in name else "engine",
                          runtime="torch" if "_gpu_" in name else "python", exclude=ex)
            if "_gpu_" in name:
                rows.append(dict(common, event="fallback", host=(h, h + 20 * US), gpu=(gpu, gpu + dur)))
            else:
                rows.append(dict(common, event="call", host=(h, h + 20 * US)))
                rows.append(dict(common, event="alloc", host=(h + US, h + 3 * US), bytes=4096, alloc_phase="before_exec"))
                rows.append(dict(common, event="exec", host=(h + 4 * US, h + 15 * US), gpu=(gpu, gpu + dur)))
            gpu += dur
            h += 25 * US
        rows.append(dict(model=model, inference=i, call=i, subgraph=model, subgraph_kind="model", runtime="torch",
                         event="inference", input_shapes=shp, host=(t, h), gpu=(t + 5 * US, gpu), exclude=ex))
    return frame(rows)


# -- analysis -------------------------------------------------------------------------------------------
def test_ten_percent_faster_engine_is_found_with_its_true_size():
    a = engines(300, {"_run_on_acc_0": 200.0}, seed=1)
    b = engines(300, {"_run_on_acc_0": 180.0}, seed=2)
    res = compare.compare_timelines(a, b)
    d = res.models[0].latency
    true_ms = -0.1 * 200 * US / 1e6  # medians: 5 us + 200 us vs 5 us + 180 us
    true_pct = 100 * -20 / 205
    assert d.significant and d.diff < 0 and d.n_a == d.n_b == 300
    assert d.ci[0] <= true_ms <= d.ci[1] and d.ci[1] < 0
    assert d.ci_pct[0] <= true_pct <= d.ci_pct[1]
    assert res.verdict.startswith("B is ") and "faster per inference than A" in res.verdict
    # swapping the captures flips the sign, not the size
    back = compare.compare_timelines(b, a).models[0].latency
    assert back.significant and back.diff == pytest.approx(-d.diff) and "slower" in compare.verdict(back)
    sub = res.subgraphs.set_index("subgraph").loc["_run_on_acc_0"]
    assert sub["gpu_significant"] and sub["gpu_ci_lo_pct"] <= -10 <= sub["gpu_ci_hi_pct"]
    assert sub["status"] == "both" and sub["calls_a"] == sub["calls_b"] == 300


def test_only_the_engine_that_changed_moves():
    a = engines(300, {"_run_on_acc_0": 100.0, "_run_on_gpu_1": 30.0, "_run_on_acc_2": 200.0}, seed=3)
    b = engines(300, {"_run_on_acc_0": 100.0, "_run_on_gpu_1": 30.0, "_run_on_acc_2": 180.0}, seed=4)
    s = compare.compare_timelines(a, b).subgraphs.set_index("subgraph")
    assert list(s.index) == ["_run_on_acc_0", "_run_on_gpu_1", "_run_on_acc_2"]
    assert s.loc["_run_on_acc_2", "gpu_significant"]
    assert s.loc["_run_on_acc_2", "gpu_ci_lo_pct"] <= -10 <= s.loc["_run_on_acc_2", "gpu_ci_hi_pct"]
    for same in ("_run_on_acc_0", "_run_on_gpu_1"):
        assert not s.loc[same, "gpu_significant"]
        assert s.loc[same, "gpu_ci_lo_pct"] < 0 < s.loc[same, "gpu_ci_hi_pct"]
    assert s.loc["_run_on_gpu_1", "kind"] == "fallback"
    assert s.loc["_run_on_acc_0", "allocs_per_inf_a"] == s.loc["_run_on_acc_0", "allocs_per_inf_b"] == 1.0
    assert s.loc["_run_on_acc_0", "bytes_per_inf_a"] == 4096.0
    assert np.isnan(s.loc["_run_on_gpu_1", "allocs_per_inf_a"]) or s.loc["_run_on_gpu_1", "allocs_per_inf_a"] == 0


def test_identical_runs_show_no_difference():
    a = engines(200, seed=5)
    same = compare.compare_timelines(a, a).models[0].latency
    assert same.diff == 0 and not same.significant and same.ci[0] < 0 < same.ci[1]
    rerun = compare.compare_timelines(a, engines(200, seed=7))  # (at 95 %, one pair of seeds in 20 differs)
    d = rerun.models[0].latency
    assert not d.significant and d.ci[0] < 0 < d.ci[1]
    assert rerun.verdict.startswith("no significant difference")
    # a realistic synthetic run (allocations, fallback, both modes): same generator, another seed
    syn = compare.compare_timelines(timeline(300, seed=1), timeline(300, seed=2))
    assert not syn.models[0].latency.significant and not syn.subgraphs["gpu_significant"].any()


def test_ci_coverage_and_false_alarms_over_many_runs():
    """Over 60 pairs of runs: the 95 % CI holds the true shift in most, and equal runs rarely differ."""
    rng = np.random.default_rng(23)
    n, hits, alarms = 150, 0, 0
    for k in range(60):
        a = 1.0 + rng.lognormal(0.0, 0.1, n)
        b = 0.9 + rng.lognormal(0.0, 0.1, n)  # true median shift -0.1
        same = 1.0 + rng.lognormal(0.0, 0.1, n)
        hits += compare.diff_medians(a, b, n_boot=1000, seed=k).ci[0] <= -0.1 <= compare.diff_medians(a, b, n_boot=1000, seed=k).ci[1]
        alarms += compare.diff_medians(a, same, n_boot=1000, seed=k).significant
    assert hits >= 51 and alarms <= 8  # about 57 and 3 expected; a too narrow or shifted CI fails


def test_appeared_and_disappeared_subgraphs():
    a = engines(50, {"_run_on_acc_0": 100.0, "_run_on_gpu_1": 20.0, "_run_on_acc_2": 100.0}, seed=7)
    b = engines(50, {"_run_on_acc_0": 100.0, "_run_on_acc_4": 150.0}, seed=8)
    res = compare.compare_timelines(a, b)
    status = dict(zip(res.subgraphs["subgraph"], res.subgraphs["status"]))
    assert status == {"_run_on_acc_0": "both", "_run_on_gpu_1": "disappeared", "_run_on_acc_2": "disappeared",
                      "_run_on_acc_4": "appeared"}
    gone = res.subgraphs.set_index("subgraph").loc["_run_on_acc_2"]
    assert gone["calls_b"] == 0 and np.isnan(gone["gpu_us_b"]) and gone["gpu_significant"] is pd.NA
    text = compare_text.render(res, "a", "b")
    assert "Subgraphs appeared in B (not in A): _run_on_acc_4" in text
    assert "disappeared (in A, not in B): _run_on_gpu_1, _run_on_acc_2" in text
    other = compare.compare_timelines(a, engines(50, seed=9, model="other"))
    assert other.models == [] and other.models_only_a == ["m"] and other.models_only_b == ["other"]
    assert "no model ran in both captures" in other.verdict


def _table_rows(page: str) -> list[list[str]]:
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
            for r in re.findall(r"<tr>(.*?)</tr>", page, re.S)]


def test_significance_does_not_apply_to_rows_in_one_capture():
    """A subgraph in one capture only has no difference to test: "-" (not "no") in the data, the page
    and the terminal."""
    from trtprof.render import compare_html
    from trtprof.timeline.store import Capture

    a = engines(50, {"_run_on_acc_0": 100.0, "_run_on_acc_2": 100.0}, seed=7)
    b = engines(50, {"_run_on_acc_0": 100.0, "_run_on_acc_4": 150.0}, seed=8)
    res = compare.compare_timelines(a, b)
    s = res.subgraphs.set_index("subgraph")
    for name in ("_run_on_acc_2", "_run_on_acc_4"):
        assert s.loc[name, "gpu_significant"] is pd.NA and s.loc[name, "host_significant"] is pd.NA
    assert s.loc["_run_on_acc_0", "gpu_significant"] in (True, False)
    page = compare_html.render(res, Capture(a, {"status": "complete"}), Capture(b, {"status": "complete"}))
    head = page.split("id='subgraphs'")[1].split("</thead>")[0]
    sig = [i for i, h in enumerate(re.findall(r"<th>(.*?)</th>", head)) if h == "significant"]
    assert len(sig) == 2
    rows = {r[1]: r for r in _table_rows(page.split("id='subgraphs'")[1].split("</table>")[0]) if len(r) > 1}
    assert [rows["_run_on_acc_2"][i] for i in sig] == [rows["_run_on_acc_4"][i] for i in sig] == ["-", "-"]
    assert {rows["_run_on_acc_0"][i] for i in sig} <= {"yes", "no"}
    text = compare_text.render(res, "a", "b")
    for name, status in (("_run_on_acc_2", "gone"), ("_run_on_acc_4", "new")):
        cells = next(x for x in text.splitlines() if x.strip().startswith(name)).split()
        assert cells[2] == status and "no" not in cells and not any("*" in c for c in cells)


def test_mode_selection_and_excluded_inferences():
    n = 200
    on = np.arange(n) % 40 >= 20  # alternate:20
    flip = np.r_[True, on[1:] != on[:-1]]
    # with pre-allocated outputs on, A's engine is 20 % faster; B's is the same in both modes
    a = engines(n, {"_run_on_acc_0": 100.0}, seed=12, prealloc=on, exclude=flip, scale=np.where(on, 0.8, 1.0))
    b = engines(n, {"_run_on_acc_0": 100.0}, seed=13, prealloc=on, exclude=flip)  # seeds: see coverage test
    kept = int((~flip & on).sum()), int((~flip & ~on).sum())
    r_on = compare.compare_timelines(a, b, mode="on")
    r_off = compare.compare_timelines(a, b, mode="off")
    r_all = compare.compare_timelines(a, b, mode="all")
    assert (r_on.models[0].latency.n_a, r_off.models[0].latency.n_a) == kept
    assert r_all.models[0].latency.n_a == sum(kept)  # the first inference after each flip is left out
    assert r_on.models[0].latency.significant and r_on.models[0].latency.diff > 0  # B lacks A's gain
    assert not r_off.models[0].latency.significant
    assert r_on.subgraphs.loc[0, "calls_a"] == kept[0]
    assert "pre-allocated outputs on" in r_on.selection.describe()
    with pytest.raises(ValueError):
        compare.compare_timelines(a, b, mode="sometimes")


def test_mode_mix_that_differs_is_warned_about():
    n = 100
    a = engines(n, seed=12, prealloc=np.zeros(n, bool))
    b = engines(n, seed=13, prealloc=np.ones(n, bool))
    assert any("different proportions" in w for w in compare.compare_timelines(a, b).warnings)
    with pytest.raises(UsageError, match=r"--mode off: B has no inference with pre-allocated outputs off"):
        compare.compare_timelines(a, b, mode="off")


def test_only_common_input_shapes_are_compared_by_default():
    n = 100
    a = engines(n, seed=14, shapes=["(1,128)", "(1,96)"] * (n // 2))
    b = engines(n, seed=15, shapes=["(1,128)"] * n)
    res = compare.compare_timelines(a, b)
    sel = res.selection
    assert sel.shapes == ["(1,128)"] and (sel.dropped_shapes_a, sel.dropped_shapes_b) == (n // 2, 0)
    assert res.models[0].latency.n_a == n // 2 and res.subgraphs.loc[0, "calls_a"] == n // 2
    assert "input shapes (1,128) (those run in both captures)" in sel.describe() and "50 inferences of A" in sel.describe()
    every = compare.compare_timelines(a, b, shape="all")
    assert every.models[0].latency.n_a == n and every.selection.shapes == []
    assert set(every.models[0].by_shape["input_shapes"]) == {"(1,128)", "(1,96)"}
    one = compare.compare_timelines(a, b, shape="(1,96)")
    assert one.models[0].latency.n_b == 0 and "too few inferences" in one.verdict


def _partition_warnings(res):
    return [w for w in res.warnings if "different partitions" in w]


def test_same_partition_gives_no_partition_warning(tmp_path):
    res = compare.compare_timelines(timeline(80, seed=1), timeline(80, seed=2))
    assert res.partition == [] and _partition_warnings(res) == []
    text = compare_text.render(res, "a", "b")
    assert "partition" not in text


@pytest.mark.parametrize("change, phrase", [
    (dict(engines=("_run_on_acc_0", "_run_on_acc_3")),
     "model0: subgraphs only in A: _run_on_acc_2; subgraphs only in B: _run_on_acc_3"),
    (dict(engines=("_run_on_acc_0", "_run_on_gpu_1"), fallback="_run_on_acc_2"),
     "model0: kind changed: _run_on_gpu_1 (fallback \u2192 engine), _run_on_acc_2 (engine \u2192 fallback)"),
    # 39 of the 79 compared inferences (inference 40, the first after the switch, is left out)
    ("half the fallbacks", "model0: fallback calls per inference 1 \u2192 0.494"),
])
def test_different_partitions_are_warned_about_in_text_and_page(change, phrase, tmp_path):
    a = timeline(80, seed=1)
    if change == "half the fallbacks":  # same names and kinds; the fallback runs in every other inference
        b = timeline(80, seed=2)
        b = b[~((b["subgraph_kind"] == "fallback") & (b["inference"] % 2 == 1))].reset_index(drop=True)
    else:
        b = timeline(80, seed=2, **change)
    res = compare.compare_timelines(a, b)
    assert res.partition == [phrase]
    (warning,) = _partition_warnings(res)
    assert phrase in warning and "matched by name" in warning
    text = compare_text.render(res, "a", "b")
    assert "warning: the captures have different partitions" in text
    fa, fb = write_capture(a, tmp_path / "a"), write_capture(b, tmp_path / "b")
    out = tmp_path / "c.html"
    r = cli(fa, fb, "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert "warning: the captures have different partitions" in r.stdout
    assert f'<div class="card warn">{html.escape(warning)}</div>' in out.read_text()


def test_partition_warning_escapes_hostile_names(tmp_path):
    a = hostile(40)
    b = hostile(40)
    b["subgraph"] = b["subgraph"].where(b["subgraph_kind"] != "fallback", "<i>\x1b[2Jnew</i>")
    res = compare.compare_timelines(a, b)
    assert res.partition and "<i>\x1b[2Jnew</i>" in res.partition[0]
    text = compare_text.render(res, "a", "b")
    assert "\x1b" not in text and "\\x1b[2Jnew" in text
    fa, fb = write_capture(a, tmp_path / "a"), write_capture(b, tmp_path / "b")
    assert cli(fa, fb, "-o", tmp_path / "c.html", "--quiet").exit_code == 0
    page = (tmp_path / "c.html").read_text()
    assert "<i>" not in page and "&lt;i&gt;" in page


def test_runtime_and_gpu_time_differences_are_warned_about():
    a = engines(30, seed=16)
    b = engines(30, seed=17)
    b["runtime"] = b["runtime"].where(b["subgraph_kind"] != "engine", "cpp")
    assert any("python \u2192 cpp" in w for w in compare.compare_timelines(a, b).warnings)
    b[["gpu_start_ns", "gpu_end_ns"]] = None
    assert any("only A has GPU times" in w for w in compare.compare_timelines(a, b).warnings)


def test_environment_differences():
    env = compare.environment_diff({"environment": {"gpu": "H100", "torch": "2.11"}},
                                   {"environment": {"gpu": "H200", "torch": "2.11"}})
    assert env.values.tolist() == [["gpu", "H100", "H200"]]
    assert compare.environment_diff({}, {"environment": "junk"}).empty


def test_text_escapes_control_characters():
    a = engines(20, seed=18, model="m\x1b[31mred\nline")
    res = compare.compare_timelines(a, a)
    text = compare_text.render(res, "a\x1b[2J", "b")
    assert "\x1b" not in text and "\\x1b" in text
    assert all("\r" not in line for line in text.splitlines())


# -- HTML ------------------------------------------------------------------------------------------------
def test_hostile_strings_appear_only_escaped(tmp_path):
    meta = {"command": ["python", "x.py", *EVIL, "</script><script>alert(2)</script>"],
            "environment": {"gpu": EVIL[1], "torch": "<b>2</b>"}}
    fa = write_capture(hostile(40), tmp_path / "a<img src=x>", meta)
    b = hostile(40)
    b["subgraph"] = b["subgraph"].where(b["subgraph_kind"] != "fallback", "</script><i>new</i>")  # appeared
    fb = write_capture(b, tmp_path / "b<script>", dict(meta, environment={"gpu": "<i>g</i>"}))
    out = tmp_path / "c.html"
    res = CliRunner().invoke(main, ["compare", str(fa), str(fb), "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    for s in EVIL + ["alert(2)</script>", "<b>2</b>", "<i>g</i>", "<img src=x>", "<i>new</i>"]:
        assert s not in text
    p = check_page(text)
    assert {t for t, _ in p.tags} <= ALLOWED_TAGS
    assert not [a for _, attrs in p.tags for a in attrs if a.startswith("on")]
    assert text.count("<script") == text.count("</script>") == 2 + len(figure_scripts(text))
    for s in (EVIL[0], EVIL[1], "<i>g</i>", "</script><i>new</i>", str(fa), str(fb)):
        assert html.escape(s) in text  # shown, as text
    assert "<b>Appeared in B (not in A):</b> <code>" + html.escape("</script><i>new</i>") in text
    figs = " ".join(figure_scripts(text))
    dumped = json.dumps(json.loads("[" + ",".join(re.findall(r'trtprofPlot\("fig\d+", (\{.*?\})\);', figs, re.S)) + "]"))
    assert len(figure_scripts(text)) == 2 and figures.esc(EVIL[0]) in dumped  # subgraph names, for plotly
    assert "<img" not in dumped and EVIL[0] not in dumped


def test_page_shows_verdict_tables_and_figures(tmp_path):
    fa = write_capture(engines(100, {"_run_on_acc_0": 100.0, "_run_on_acc_2": 100.0}, seed=19), tmp_path / "a")
    fb = write_capture(engines(100, {"_run_on_acc_0": 80.0, "_run_on_acc_4": 100.0}, seed=20), tmp_path / "b")
    res = CliRunner().invoke(main, ["compare", str(fa), str(fb), "-o", str(tmp_path), "--quiet"])
    assert res.exit_code == 0 and res.stderr == "" and res.stdout.startswith("A: ")  # -q: the result only
    text = (tmp_path / "compare-a-vs-b.html").read_text()
    check_page(text)
    r = compare.compare_captures(load_capture(fa), load_capture(fb))
    assert html.escape(r.verdict) in text and 'class="verdict faster"' in text
    assert len(figure_scripts(text)) == 2 and "<code>_run_on_acc_4</code>" in text
    assert figures.esc("_run_on_acc_0") in " ".join(figure_scripts(text))


def test_every_table_scrolls_in_its_own_box(tmp_path):
    """The subgraph table is wider than the page: every table sits in an overflow-x:auto box."""
    fa = write_capture(engines(40, {"_run_on_acc_0": 100.0, "_run_on_acc_2": 50.0}, seed=24), tmp_path / "a")
    fb = write_capture(engines(40, {"_run_on_acc_0": 90.0, "_run_on_acc_4": 50.0}, seed=25), tmp_path / "b",
                       {"environment": {"gpu": "H200"}})
    out = tmp_path / "c.html"
    assert cli(fa, fb, "-o", out, "--quiet").exit_code == 0
    page = out.read_text()
    assert ".scroll{overflow-x:auto}" in page
    n = page.count("<table")
    assert n == 5  # sides, end to end, subgraphs, allocations, environment
    assert page.count('<div class="scroll"><table>') == page.count("</table></div>") == n


# -- CLI ------------------------------------------------------------------------------------------------
def cli(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


@pytest.fixture
def pair(tmp_path):
    return (write_capture(engines(60, seed=21), tmp_path / "run1", {"command": ["python", "a.py"]}),
            write_capture(engines(60, {"_run_on_acc_0": 150.0}, seed=22), tmp_path / "run2"))


def test_cli_prints_the_comparison_and_writes_the_page(pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli(*pair)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith("A: ") and "B is " in res.stdout and "faster" in res.stdout
    assert "_run_on_acc_0" in res.stdout and len(res.stdout.splitlines()) < 50
    assert "comparison written: compare-run1-vs-run2.html" in res.stderr
    assert (tmp_path / "compare-run1-vs-run2.html").stat().st_size > 3_000_000
    res = cli(*pair, "--no-html")
    assert res.exit_code == 0 and "comparison written" not in res.stderr and "B is " in res.stdout


def test_help_has_an_example():
    res = CliRunner().invoke(main, ["compare", "--help"])
    assert res.exit_code == 0 and "Example:" in res.output and "trtprof compare" in res.output
    assert "compare" in CliRunner().invoke(main, ["--help"]).output


def test_default_output_name():
    assert default_output("reports/cases/small-cpp", "reports/x/") == Path("compare-small-cpp-vs-x.html")
    assert default_output("a b/<c>", "d/timeline.parquet") == Path("compare-_c_-vs-d.html")


def test_a_mode_one_capture_never_ran_is_a_usage_error(tmp_path):
    n = 60
    off = write_capture(engines(n, seed=30, prealloc=np.zeros(n, bool)), tmp_path / "off")
    mixed = write_capture(engines(n, seed=31, prealloc=np.arange(n) >= n // 2), tmp_path / "mixed")
    res = cli(off, mixed, "--mode", "on", "--no-html")
    _one_line_error(res, ExitCode.USAGE)
    assert "--mode on: A has no inference with pre-allocated outputs on" in res.output
    assert "A: off (60); B: off (30), on (30)" in res.output and "appeared" not in res.output
    res = cli(mixed, off, "--mode", "on", "--no-html")
    _one_line_error(res, ExitCode.USAGE)
    assert "--mode on: B has no" in res.output
    both = cli(off, off, "--mode", "on", "--no-html")
    _one_line_error(both, ExitCode.USAGE)
    assert "A and B have no inference" in both.output
    assert cli(off, mixed, "--mode", "off", "--no-html").exit_code == 0


def test_a_shape_neither_capture_ran_is_a_usage_error(tmp_path):
    n = 60
    shapes = [f"(1,{8 * (i % 9 + 1)})" for i in range(n)]  # nine shapes in A
    fa = write_capture(engines(n, seed=32, shapes=shapes), tmp_path / "a")
    fb = write_capture(engines(n, seed=33, shapes=["(1,8)"] * n), tmp_path / "b")
    res = cli(fa, fb, "--shape", "(2,8)", "--no-html")
    _one_line_error(res, ExitCode.USAGE)
    out = res.output
    assert "--shape (2,8): no compared inference ran with this input shape" in out
    assert "in A: (1,8) (7), (1,16) (7)," in out and "and 3 more" in out and "in B: (1,8) (60)" in out
    ok = cli(fa, fb, "--shape", "(1, 16)", "--no-html")  # in A only, spaces ignored: compared, and says why not
    assert ok.exit_code == 0 and "too few inferences" in ok.stdout and "input shapes (1,16)" in ok.stdout
    evil = cli(fa, fb, "--shape", "\x1b[2J<b>", "--no-html")
    _one_line_error(evil, ExitCode.USAGE)
    assert "\x1b" not in evil.output and "\\x1b[2J<b>" in evil.output


def test_cli_errors_are_one_line(pair, tmp_path):
    good, _ = pair
    corrupt = write_capture(engines(5), tmp_path / "corrupt")
    (corrupt / "timeline.parquet").write_bytes(b"PAR1 not really")
    res = cli(good, corrupt)
    _one_line_error(res, ExitCode.BAD_CAPTURE)
    assert res.output.startswith("trtprof: B: ")
    _one_line_error(cli(tmp_path / "missing\nname", good), ExitCode.BAD_CAPTURE)
    empty = write_capture(timeline(0), tmp_path / "empty")
    res = cli(empty, good)
    _one_line_error(res, ExitCode.EMPTY_CAPTURE)
    assert "A: " in res.output and "no rows" in res.output
    (tmp_path / "file").write_text("")
    res = cli(*pair, "-o", tmp_path / "file" / "c.html", "--quiet")
    _one_line_error(res, ExitCode.BAD_OUTPUT)


def test_without_plotly_the_text_still_prints(pair, tmp_path):
    block = tmp_path / "block" / "plotly"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('No module named plotly (blocked by the test)')\n")
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "trtprof", "compare", *map(str, pair)], cwd=tmp_path,
                       env={"PYTHONPATH": f"{block.parent}:{root}", "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == ExitCode.MISSING_DEPENDENCY, r.stderr
    assert "B is " in r.stdout and "_run_on_acc_0" in r.stdout
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "plotly" in r.stderr
    assert not list(tmp_path.glob("*.html"))


# -- end to end on CPU captures ---------------------------------------------------------------------------
@pytest.mark.fake_trt
def test_cpu_capture_pair_python_vs_cpp_runtime(tmp_path, monkeypatch):
    import torch
    import torch_tensorrt

    import trtprof
    from cpu_models import partitioned

    x = torch.randn(2, 8)
    for runtime in ("python", "cpp"):
        m = partitioned(runtime)
        with trtprof.profile(out=tmp_path / runtime):
            for _ in range(12):
                m(x)
            with torch_tensorrt.runtime.enable_pre_allocated_outputs(m):
                for _ in range(12):
                    m(x)
    monkeypatch.chdir(tmp_path)
    res = cli(tmp_path / "python", tmp_path / "cpp")
    assert res.exit_code == 0, res.output
    r = compare.compare_captures(load_capture(tmp_path / "python"), load_capture(tmp_path / "cpp"))
    assert r.gpu_times_a is r.gpu_times_b is False
    assert set(r.subgraphs["status"]) == {"both"}
    assert r.subgraphs[["subgraph", "runtime_a", "runtime_b"]].values.tolist() == [
        ["_run_on_acc_0", "python", "cpp"], ["_run_on_gpu_1", "torch", "torch"], ["_run_on_acc_2", "python", "cpp"]]
    d = r.models[0].latency
    assert d.enough and d.n_a == d.n_b  # every inference but the excluded first after the flip, if any
    assert r.verdict in res.stdout and "python \u2192 cpp" in res.stdout
    on = compare.compare_captures(load_capture(tmp_path / "python"), load_capture(tmp_path / "cpp"), mode="on")
    assert on.models[0].latency.n_a < d.n_a
    assert (tmp_path / "compare-python-vs-cpp.html").is_file()


def test_page_renders_in_a_browser_with_hostile_names(tmp_path):
    """Headless Chromium, offline: both figures drawn, no console message, hostile names as text."""
    import test_report_browser as browser

    if browser.BROWSER is None:
        if browser.IN_CI:
            pytest.fail("CI=true but no chromium on PATH (scripts/test.sh installs it)", pytrace=False)
        pytest.skip("chromium is not installed (it is required in CI)")
    fa = write_capture(hostile(60), tmp_path / "a")  # the same hostile model in both: both figures drawn
    fb = write_capture(hostile(60), tmp_path / "b")
    out = tmp_path / "c.html"
    assert cli(fa, fb, "-o", out, "--quiet").exit_code == 0
    dom, tags, messages = browser.load(out, tmp_path)
    assert messages == []
    figs = [a for t, a in tags if t == "div" and "trtprof-fig" in a.get("class", "").split()]
    assert len(figs) == 2 and all("js-plotly-plot" in a["class"].split() for a in figs)
    assert "hidden" in next(a for t, a in tags if a.get("id") == "trtprof-errors")
    assert not [t for t, _ in tags if t in ("img", "iframe", "object", "embed")]
    assert EVIL[0] not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from test_stats import odd_rows  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_rows(), odd_rows(), st.sampled_from(compare.MODES))
def test_any_pair_of_timelines_compares_and_renders(a, b, mode):
    from trtprof.timeline.store import Capture
    from trtprof.render import compare_html

    try:
        res = compare.compare_timelines(a, b, mode=mode, n_boot=50)
    except UsageError as e:  # a mode one of them never ran: said in one line
        assert mode != "all" and str(e).startswith(f"--mode {mode}: ") and "\n" not in str(e)
        return
    assert set(res.subgraphs["status"]) <= {"both", "appeared", "disappeared"}
    assert len(res.subgraphs) == len(res.subgraphs[["model", "subgraph"]].drop_duplicates())
    for m in res.models:
        assert m.latency.n_a <= len(res.latency_a) and (not m.latency.significant or m.latency.enough)
    text = compare_text.render(res, "a", "b")
    assert res.verdict.splitlines()[0] in text
    page = compare_html.render(res, Capture(a, {"status": "complete"}), Capture(b, {}))
    assert "<b>x</b>" not in page and page.count("<script") == page.count("</script>")


def test_cold_start_kept_on_one_side_only_is_warned():
    """An older capture keeps its first inference in the statistics; a newer one leaves it out."""
    import pandas as pd
    from trtprof.analysis.compare import cold_mismatch

    def lat(first_excluded):
        return pd.DataFrame({"model": ["m"] * 3, "pid": [1] * 3, "inference": [0, 1, 2],
                             "excluded": [first_excluded, False, False], "latency_ns": [9e6, 1e6, 1e6]})
    w = cold_mismatch(lat(True), lat(False))
    assert w and w.startswith("A leaves its first inference out") and "B keeps it" in w
    assert cold_mismatch(lat(False), lat(True)).startswith("B leaves")
    assert cold_mismatch(lat(True), lat(True)) is None and cold_mismatch(lat(False), lat(False)) is None
