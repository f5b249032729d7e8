"""`--cudagraphs on|off|alternate[:K]` on CPU: one compiled model, the mode flipped through the
stand-in's `torch_tensorrt.runtime.set_cudagraphs_mode` (v2.11.0 `_cudagraphs.py`), the first two
inferences after each flip excluded, the script's own switches ignored, the statistics and the
report's sections. Real GpuClock on pure-Python events, `torch.cuda.CUDAGraph` the tests' double.
"""
import pytest
import torch

import trtprof
from gpu_doubles import use_fake_gpu

pytestmark = pytest.mark.fake_trt


@pytest.fixture
def gpu(monkeypatch):
    import torch_tensorrt
    use_fake_gpu(monkeypatch)
    yield torch_tensorrt
    torch_tensorrt.runtime.set_cudagraphs_mode(False)


def _run(tmp_path, model, n=60, script_switch_at=None, **options):
    import torch_tensorrt
    x = torch.randn(2, 8)
    with torch.no_grad(), trtprof.profile(tmp_path / "c", cpp_allocs=False, **options) as cap:
        cap.instrument(model)
        for i in range(n):
            if i == script_switch_at:
                torch_tensorrt.runtime.set_cudagraphs_mode(True)  # the script's own: ignored
            model(x)
    return cap


def _cg(df):
    inf = df[df.event == "inference"].sort_values("inference")
    return inf, inf.cudagraph.astype(object).where(inf.cudagraph.notna(), None).tolist()


@pytest.mark.parametrize("runtime", ["python", "cpp"])
@pytest.mark.parametrize("graph_break", [False, True])
def test_alternate_flips_through_the_runtime_and_excludes_two_after_each_flip(tmp_path, gpu, runtime, graph_break):
    from cpu_models import partitioned
    from test_cudagraphs import _single
    model = partitioned(runtime) if graph_break else _single(runtime)
    cap = _run(tmp_path, model, cudagraphs="alternate:10", script_switch_at=33)
    inf, cg = _cg(cap.timeline)
    assert cg == ([None] * 10 + ["per-engine"] * 10) * 3  # starts off, so each "on" block follows an "off" one
    flips = {0, 10, 11, 20, 21, 30, 31, 40, 41, 50, 51}  # 0: the cold start
    assert [i for i, x in zip(inf.inference, inf.exclude.fillna(False)) if x] == sorted(flips)
    assert gpu.runtime._cudagraphs._PY_RT_CUDAGRAPHS == 0  # the mode the script had, restored at the end
    assert any("1 call(s) to set_cudagraphs_mode were ignored" in n for n in cap.meta["notes"])
    assert cap.meta["options"]["cudagraphs"] == "alternate:10"
    calls = cap.timeline[cap.timeline.event == "call"]
    assert (calls[calls.inference.isin([10, 30, 50])].cudagraph == "per-engine").all()  # each engine captured
    ex = cap.timeline[cap.timeline.event == "exec"]
    assert ex.gpu_end_ns.notna().all()


def test_on_and_off(tmp_path, gpu):
    from test_cudagraphs import _single
    _, cg = _cg(_run(tmp_path / "on", _single("cpp"), n=12, cudagraphs="on").timeline)
    assert cg == ["per-engine"] * 12
    _, cg = _cg(_run(tmp_path / "off", _single("cpp"), n=12, cudagraphs="off", script_switch_at=3).timeline)
    assert cg == [None] * 12


def test_combined_with_prealloc_on(tmp_path, gpu):
    from test_cudagraphs import _single
    cap = _run(tmp_path, _single("python"), n=40, cudagraphs="alternate:10", prealloc="on")
    calls = cap.timeline[cap.timeline.event == "call"]
    assert calls.prealloc.all() and (calls.cudagraph == "per-engine").sum() == 20


@pytest.mark.parametrize("bad, words", [
    (dict(cudagraphs="alternate", prealloc="alternate"), "prealloc= alternate and cudagraphs= alternate cannot"),
    (dict(cudagraphs="alternate", sample=3), "cannot be combined with sample=N"),
    (dict(cudagraphs="sometimes"), "cudagraphs= must be one of on, off, as-is, alternate[:K]"),
    (dict(cudagraphs="alternate:0"), "positive whole number"),
])
def test_refused_in_one_line(tmp_path, bad, words):
    with pytest.raises(trtprof.TrtprofError) as e:
        with trtprof.profile(tmp_path / "c", **bad):
            pass
    assert words in str(e.value) and "\n" not in str(e.value) and not (tmp_path / "c").exists()


def test_statistics_summary_report_and_recommendation(tmp_path, gpu, monkeypatch):
    from cpu_models import partitioned
    from trtprof.analysis import cudagraphs, latency, recommend, report
    from trtprof.render import report_html, summary_text
    cap = _run(tmp_path, partitioned("cpp"), n=80, cudagraphs="alternate:10")
    df = cap.timeline
    (c,) = cudagraphs.compare(df, latency.inference_latency(df))
    # 2 left out after each of the 7 flips (none before 0), and the cold start (inference 0, off)
    assert (c.n_off, c.n_on) == (40 - 7, 40 - 8)
    assert c.tails and c.tails[0].label == "p90" and c.ci_ms[0] <= c.saved_ms <= c.ci_ms[1]
    assert c.verdict.startswith("CUDA graphs (per-engine)") and "p90" in c.verdict and "ms off" in c.verdict
    assert summary_text.cudagraph_lines([c]) == f"model0: {c.verdict}"
    r = report.analyse(df)
    assert [x.model for x in r.cudagraphs] == ["model0"]
    html = report_html.render(trtprof.load_capture(cap.path), r)
    assert "CUDA graphs off vs on" in html and "on: median ms" in html
    assert "over the calls of both modes together" in html  # the per-subgraph medians say they mix them
    # the estimate gets the measured difference next to it; without an estimate a measured one is made
    monkeypatch.setattr(recommend, "PYTHON_SHARE", 0.0)
    monkeypatch.setattr(recommend, "MIN_GAIN_NS", 0)
    recs = recommend.recommendations(r)
    est = recs[recs.action.str.startswith("Cut Python overhead")]
    assert len(est) == 1 and "measured in this capture, CUDA graphs on vs off" in est.iloc[0].basis
    monkeypatch.setattr(recommend, "PYTHON_SHARE", 1e9)
    m = r.cudagraphs[0]
    m.significant, m.saved_ms, m.saved_pct = True, 0.25, 10.0
    recs = recommend.recommendations(r)
    got = recs[recs.action.str.startswith("Turn on CUDA graphs")]
    assert len(got) == 1 and got.iloc[0].measured and got.iloc[0].gain_ms == 0.25


def test_no_section_without_cuda_graphs(tmp_path, gpu):
    from test_cudagraphs import _single
    from trtprof.analysis import cudagraphs, latency
    df = _run(tmp_path, _single("cpp"), n=10).timeline
    assert cudagraphs.compare(df, latency.inference_latency(df)) == []


def test_the_cli_flag_reaches_the_runtime(tmp_path, gpu):
    """`trtprof capture --cudagraphs alternate:5` through the CLI itself (in-process, so the CUDA
    doubles stay installed): the option lands in meta.json and flips the mode every 5 inferences."""
    from click.testing import CliRunner

    from trtprof.cli import main
    script = tmp_path / "job.py"
    script.write_text("import torch\nfrom cpu_models import partitioned\nm = partitioned('cpp')\n"
                      "with torch.no_grad():\n    for _ in range(20):\n        m(torch.randn(2, 8))\n")
    r = CliRunner().invoke(main, ["capture", "-q", "--no-report", "--cudagraphs", "alternate:5",
                                  "-o", str(tmp_path / "cap"), str(script)])
    assert r.exit_code == 0, r.output
    cap = trtprof.load_capture(tmp_path / "cap")
    assert cap.meta["options"]["cudagraphs"] == "alternate:5"
    inf, cg = _cg(cap.timeline)
    # the model is found inside its first call (no instrument() in the script): inference 0 has its
    # engine rows but no inference row of its own; the flips still count it
    assert list(inf.inference) == list(range(1, 20)) and (cap.timeline.inference == 0).any()
    assert cg == [None] * 4 + ["per-engine"] * 5 + [None] * 5 + ["per-engine"] * 5
    assert any("allocator's history failed" in n for n in cap.meta["notes"])  # the CPU torch has none


@pytest.mark.parametrize("bad", ["alternate:0", "sometimes"])
def test_the_cli_refuses_a_bad_spec_in_one_line(tmp_path, bad):
    from click.testing import CliRunner

    from trtprof.cli import main
    (tmp_path / "x.py").write_text("")
    r = CliRunner().invoke(main, ["capture", "--cudagraphs", bad, str(tmp_path / "x.py")])
    assert r.exit_code == 2 and "--cudagraphs" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "trtprof-x").exists()
