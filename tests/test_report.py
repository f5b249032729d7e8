"""`trtprof report` and the HTML it writes: from a CPU capture and from synthetic GPU timelines,
escaping of hostile strings, bounded size, and one-line errors with the documented exit codes."""
import html
import json
import re
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from synthetic import hostile, timeline, write_capture
from trtprof.errors import ExitCode
from trtprof.analysis import report as analysis_report
from trtprof.cli import main
from trtprof.timeline.store import CaptureWriter, load_capture
from trtprof.render import figures, timeline_fig
from report_helpers import EmptyCaptureError, render, write_report

EVIL = ["<script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>"]
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "script", "body", "main", "div", "b", "ul", "li", "h1",
                "h2", "h3", "p", "dl", "dt", "dd", "code", "nav", "a", "table", "thead", "tbody", "tr", "th", "td",
                "ol", "br", "sup", "span"}


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of every <script>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(text: str) -> Tags:
    p = Tags()
    p.feed(text)
    return p


def run(*args):
    return CliRunner().invoke(main, ["report", *map(str, args)])


@pytest.fixture(scope="module")
def synth_capture(tmp_path_factory):
    df = timeline(300, shapes=["(8,128)"] * 250 + ["(4,128)", "(8,128)"] * 25, seed=11)
    return write_capture(df, tmp_path_factory.mktemp("synth") / "cap", {"command": ["python", "infer.py"]})


def figure_scripts(text):
    return [s for s in parse(text).scripts if s.startswith("trtprofPlot(")]


def check_page(text: str) -> Tags:
    """Structure every report must have: self-contained, every figure with its plot call."""
    p = parse(text)
    assert text.startswith("<!DOCTYPE html>")
    assert all("src" not in a and "href" not in a or tag == "a" for tag, a in p.tags), "external resource"
    assert len(text) > 3_000_000 and "Plotly" in p.scripts[1][:5000]  # plotly.js is inlined
    n = int(re.search(r'<meta name="trtprof-figures" content="(\d+)">', text).group(1))
    assert n == len(re.findall(r'class="trtprof-fig"', text)) == len(figure_scripts(text))
    for s in figure_scripts(text):
        m = re.fullmatch(r'trtprofPlot\("fig\d+", (\{.*\})\);', s, re.S)
        assert m, s[:200]
        fig = json.loads(m.group(1))
        assert fig["data"] is not None and "layout" in fig
    return p


# -- reports ----------------------------------------------------------------------------------------
@pytest.mark.fake_trt
def test_report_from_a_cpu_capture(tmp_path):
    import torch
    import torch_tensorrt

    import trtprof
    from cpu_models import partitioned

    m = partitioned("python")
    x = torch.randn(2, 8)
    with trtprof.profile(out=tmp_path / "cap") as cap:
        for _ in range(6):
            m(x)
        with torch_tensorrt.runtime.enable_pre_allocated_outputs(m):
            for _ in range(6):
                m(x)
            m(torch.randn(3, 8))
    res = run(tmp_path / "cap")
    assert res.exit_code == 0, res.output
    out = tmp_path / "cap" / "report.html"
    assert f"report written: {out}" in res.output
    text = out.read_text()
    check_page(text)
    assert "No GPU times" in text and "_run_on_acc_0" in text and "_run_on_gpu_1" in text
    assert "(2,8)" in text and "(3,8)" in text  # the shape change is listed
    r = analysis_report.analyse(cap.timeline)
    assert html.escape(r.comparisons[0].verdict) in text


def test_report_gives_the_cold_start_apart(tmp_path):
    """The first inference is left out of the statistics and given, measured, in section 4."""
    import torch

    import trtprof
    from cpu_models import partitioned
    from trtprof.analysis.latency import cold_starts

    m = partitioned("cpp")
    with trtprof.profile(out=tmp_path / "cap") as cap:
        cap.instrument(m)
        for _ in range(5):
            m(torch.randn(2, 8))
    text = render(load_capture(tmp_path / "cap"), n_boot=50)
    (c,) = cold_starts(analysis_report.analyse(cap.timeline).latency).itertuples(index=False)
    assert c.excluded and c.latency_ms > 0
    assert f"first inference {c.latency_ms:.3f} ms, against a median of {c.median_ms:.3f} ms" in text
    assert "left out of the statistics" in text.split("id='latency'")[1]


def test_a_first_inference_that_raised_is_no_cold_start(tmp_path):
    """A first inference that raised is left out for raising, and is no cold start: the engines it never
    reached are set up by the next inference, which the report gives as the cold start and compare's
    reading takes for the cold-start rule."""
    import torch

    import trtprof
    from cpu_models import partitioned
    from trtprof.analysis.latency import cold_starts, first_inference_kept

    m = partitioned("cpp")
    with trtprof.profile(out=tmp_path / "cap") as cap:
        cap.instrument(m)
        with pytest.raises(RuntimeError):
            m(torch.randn(2, 9))  # wrong width: the first Linear raises
        for _ in range(4):
            m(torch.randn(2, 8))
    lat = analysis_report.analyse(cap.timeline).latency
    (c,) = cold_starts(lat).itertuples(index=False)
    assert c.raised and c.inference == 1 and c.excluded and c.latency_ms > 0
    assert first_inference_kept(lat) == (True, False)
    text = render(load_capture(tmp_path / "cap"), n_boot=50)
    section = text.split("id='latency'")[1]
    assert (f"the first inference raised (left out); the first that did not, inference 1, took {c.latency_ms:.3f} ms, "
            f"against a median of {c.median_ms:.3f} ms") in section


def test_report_from_synthetic_gpu_timeline(synth_capture):
    cap = load_capture(synth_capture)
    path = write_report(cap)
    assert path == synth_capture / "report.html"
    text = path.read_text()
    check_page(text)
    r = analysis_report.analyse(cap.timeline)
    assert r.comparisons[0].significant
    assert html.escape(r.comparisons[0].verdict) in text
    for action in r.recommendations["action"]:
        assert html.escape(action) in text
    assert "No GPU times" not in text and "forced re-allocation" in text
    assert int(re.search(r'content="(\d+)"', text).group(1)) == 5  # 2 latency, timeline, overlap, gaps


def test_hostile_strings_appear_only_escaped(tmp_path):
    meta = {"command": ["python", "x.py", *EVIL, "</script><script>alert(2)</script>"],
            "notes": [EVIL[1]], "status": "incomplete", "incomplete_reason": EVIL[0],
            "environment": {"gpu": EVIL[1], "torch": "<b>2</b>"}}
    folder = write_capture(hostile(60), tmp_path / "x<y>", meta)
    res = run(folder)
    assert res.exit_code == 0, res.output
    text = (folder / "report.html").read_text()
    for s in EVIL + ["alert(2)</script>", "<b>2</b>", "<b>\"'>"]:
        assert s not in text
    p = check_page(text)
    tags = {t for t, _ in p.tags}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    assert not [a for _, attrs in p.tags for a in attrs if a.startswith("on")]
    assert sum(1 for t, _ in p.tags if t == "script") == 2 + len(figure_scripts(text))  # head js, plotly.js, figures
    assert text.count("<script") == text.count("</script>")
    assert html.escape(EVIL[0]) in text and html.escape(EVIL[1]) in text  # shown, as text
    # inside figures: plotly labels carry the escaped text, so plotly draws it instead of parsing it
    figs = " ".join(figure_scripts(text))
    decoded = json.loads("[" + ",".join(re.findall(r'trtprofPlot\("fig\d+", (\{.*?\})\);', figs, re.S)) + "]")
    dumped = json.dumps(decoded)
    assert figures.esc(EVIL[0]) in dumped and EVIL[0] not in dumped and "<img" not in dumped


def test_size_does_not_grow_with_the_capture():
    small = render(load_like(timeline(500, seed=1)), n_boot=200)
    big = render(load_like(timeline(20_000, seed=1)), n_boot=200)
    assert len(big) - len(small) < 300_000
    assert len(big) < 15_000_000
    assert "20,000" in big  # every inference counted even though 50 are drawn


def load_like(df):
    from trtprof.timeline.store import Capture
    return Capture(timeline=df, meta={"status": "complete"}, path=None)


def test_incomplete_capture_is_reported(tmp_path):
    df = timeline(20)
    w = CaptureWriter(tmp_path / "crashed", {"command": ["python", "x.py"]})
    w.write(df.astype(object).where(df.notna(), None).values.tolist())  # never closed: a crash
    res = run(tmp_path / "crashed")
    assert res.exit_code == 0, res.output
    assert "incomplete" in res.output
    assert "Incomplete capture" in (tmp_path / "crashed" / "report.html").read_text()


# -- CLI -----------------------------------------------------------------------------------------------
def test_help_has_an_example():
    res = CliRunner().invoke(main, ["report", "--help"])
    assert res.exit_code == 0 and "Example:" in res.output and "trtprof report" in res.output
    assert "report" in CliRunner().invoke(main, ["--help"]).output


def test_output_option_and_quiet(synth_capture, tmp_path):
    out = tmp_path / "sub" / "r.html"
    res = run(synth_capture, "-o", out, "--quiet")
    assert res.exit_code == 0 and res.output == "" and out.stat().st_size > 3_000_000


def _one_line_error(res, code):
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trtprof: ")


def test_corrupt_capture(tmp_path):
    folder = write_capture(timeline(5), tmp_path / "c")
    (folder / "timeline.parquet").write_bytes(b"PAR1 not really")
    _one_line_error(run(folder), ExitCode.BAD_CAPTURE)
    _one_line_error(run(tmp_path / "missing"), ExitCode.BAD_CAPTURE)
    (folder / "meta.json").write_text("{not json")
    _one_line_error(run(folder), ExitCode.BAD_CAPTURE)


def test_empty_capture(tmp_path):
    folder = write_capture(timeline(0), tmp_path / "empty")
    _one_line_error(run(folder), ExitCode.EMPTY_CAPTURE)
    assert not (folder / "report.html").exists()
    with pytest.raises(EmptyCaptureError):
        render(load_capture(folder))


def test_unwritable_output(synth_capture, tmp_path):
    (tmp_path / "file").write_text("")
    _one_line_error(run(synth_capture, "-o", tmp_path / "file" / "r.html"), ExitCode.BAD_OUTPUT)


def test_figure_json_cannot_close_its_script():
    """Second line of defence: even text that skipped figures.esc cannot end the <script> element."""
    import plotly.graph_objects as go

    from trtprof.render.page import Figures as _Figures

    raw = "</script><script>alert(1)</script><!--"
    out = _Figures()(go.Figure(go.Bar(x=[1], y=[raw], name=raw, hovertext=[raw])))
    assert out.count("</script>") == 1 and out.endswith("</script>") and "<!--" not in out
    assert json.loads(re.search(r"trtprofPlot\(\"fig1\", (\{.*\})\);", out, re.S).group(1))["data"][0]["name"] == raw


def test_error_stays_one_line_with_a_newline_in_the_path(tmp_path):
    _one_line_error(run(tmp_path / "a\nb"), ExitCode.BAD_CAPTURE)


from hypothesis import HealthCheck, given, settings  # noqa: E402

from test_stats import odd_rows  # noqa: E402


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_rows())
def test_any_timeline_renders_or_is_empty(df):
    cap = load_like(df)
    if df.empty:
        with pytest.raises(EmptyCaptureError):
            render(cap, n_boot=50)
        return
    text = render(cap, n_boot=50)
    assert "<b>x</b>" not in text and text.count("<script") == text.count("</script>")


def test_python_lane_is_the_rest_of_the_inference():
    from synthetic import frame

    rows = frame([dict(event="inference", subgraph="m", subgraph_kind="model", host=(0, 100)),
                  dict(event="alloc", host=(10, 20)), dict(event="exec", host=(18, 30)),
                  dict(event="fallback", subgraph="_run_on_gpu_1", subgraph_kind="fallback", host=(50, 60)),
                  dict(event="call", inference=1, host=(200, 260)), dict(event="exec", inference=1, host=(210, 260))])
    py = timeline_fig.python_intervals(rows)
    assert py[["inference", "start_ns", "end_ns"]].values.tolist() == [[0, 0, 10], [0, 30, 50], [0, 60, 100],
                                                                         [1, 200, 210]]


# -- trtprof capture writes the report --------------------------------------------------------------
@pytest.mark.fake_trt
def test_capture_writes_the_report_unless_told_not_to(tmp_path, fake_env):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "job.py"
    script.write_text("import sys, torch\nsys.path.insert(0, %r)\nfrom cpu_models import partitioned\n"
                      "m = partitioned('python')\nfor _ in range(4):\n    m(torch.randn(2, 8))\n"
                      % str(Path(__file__).parent.parent / "support"))

    def capture(*extra):
        return subprocess.run([sys.executable, "-m", "trtprof", "capture", *extra, str(script), "<b>arg</b>"],
                              cwd=tmp_path, env=fake_env, capture_output=True, text=True, timeout=300)

    r = capture("-o", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    report = tmp_path / "a" / "report.html"
    assert f"report written: {report}" in r.stderr
    text = report.read_text()
    check_page(text)
    assert "&lt;b&gt;arg&lt;/b&gt;" in text and "<b>arg</b>" not in text  # the command line, escaped
    r = capture("-o", str(tmp_path / "b"), "--no-report")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "b" / "report.html").exists() and "report written" not in r.stderr
    empty = tmp_path / "nothing.py"
    empty.write_text("pass\n")
    r = subprocess.run([sys.executable, "-m", "trtprof", "capture", "-o", str(tmp_path / "c"), str(empty)],
                       cwd=tmp_path, env=fake_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "report written" not in r.stderr and not (tmp_path / "c" / "report.html").exists()


def test_old_capture_report_notes_the_clamped_gpu_starts(tmp_path):
    df = timeline(40, seed=3)
    ex = df.index[df["event"] == "exec"][::3]
    df.loc[ex, "gpu_start_ns"] = df.loc[ex, "host_start_ns"] - 500  # as schema-1 captures hold them
    folder = write_capture(df, tmp_path / "cap", {"schema_version": 1, "notes": ["a note <b>from</b> the run"]})
    cap = load_capture(folder)
    assert (cap.timeline["gpu_start_ns"] >= cap.timeline["host_start_ns"]).all()
    text = render(cap, n_boot=50)
    notes = text[text.index("<h2 id='notes'>"):]
    assert f"<li>{len(ex)} GPU start times clamped to the enqueue time" in notes
    assert "older trtprof (timeline schema 1)" in notes
    assert "a note &lt;b&gt;from&lt;/b&gt; the run" in notes  # the capture's own notes stay, escaped
    fresh = render(load_capture(write_capture(timeline(40, seed=3), tmp_path / "new")), n_boot=50)
    assert "GPU start times clamped" not in fresh


@pytest.mark.parametrize("case_name", ["no GPU", "single", "one timed", "excluded", "never idled", "minimal"])
def test_gap_section_prints_the_analysis_reason(case_name):
    from test_report_truth import GAP_CASES
    from synthetic import frame

    rows, reason = GAP_CASES[case_name]
    rows = [dict(r, subgraph=r["subgraph"].replace("_run_on_gpu_1", "<i>_run_on_gpu_1")) if "subgraph" in r else r
            for r in rows]
    reason = reason.replace("_run_on_gpu_1", "<i>_run_on_gpu_1")
    from trtprof.timeline.store import Capture
    df = frame(rows)
    text = render(Capture(timeline=df, meta={"status": "complete"}), n_boot=20)
    r = analysis_report.analyse(df, n_boot=20)
    m = re.search(r'<p class="muted" id="gap-reason">No GPU idle gaps to show: (.*?)\.</p>', text)
    assert m, "the gap section does not say why it is empty"
    assert m.group(1) == html.escape(r.gap_reason) and reason in html.unescape(m.group(1))
    assert "<i>" not in m.group(1) and ("&lt;i&gt;" in m.group(1)) == (case_name == "one timed")  # escaped
    assert "no GPU idle gaps measured" not in text


def test_cold_starts_past_raised_inferences_per_process():
    """Per model and process: the first inference that did not raise is the cold start; where every
    one raised there is none (NaN); a process whose inference 0 completed is as before."""
    import pandas as pd

    from trtprof.analysis.latency import cold_starts
    lat = pd.DataFrame({"model": ["m"] * 6, "pid": [1, 1, 1, 2, 2, 3],
                        "inference": [0, 1, 2, 0, 1, 0],
                        "raised": [True, False, False, False, False, True],
                        "excluded": [True, True, False, True, False, True],
                        "latency_ns": [5e6, 9e6, 1e6, 8e6, 2e6, 4e6]})
    c = cold_starts(lat).set_index("pid")
    assert c.loc[1, "inference"] == 1 and c.loc[1, "latency_ms"] == 9.0 and c.loc[1, "raised"]
    assert c.loc[1, "median_ms"] == 1.0 and c.loc[1, "excluded"]
    assert c.loc[2, "inference"] == 0 and not c.loc[2, "raised"] and c.loc[2, "median_ms"] == 2.0
    assert c.loc[3, "raised"] and pd.isna(c.loc[3, "latency_ms"]) and pd.isna(c.loc[3, "median_ms"])
