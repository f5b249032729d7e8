"""The report in a real browser: headless Chromium loads it offline, every figure renders, nothing
reaches the console, hostile names stay text; a screenshot is kept for people to look at.

Skipped without chromium on a developer machine; in CI (CI=true) chromium is required, and
scripts/test.sh installs it. The screenshot goes to build/report-screenshot.png; the one docs/report.md
shows is the report of reports/cases/small-python, kept in build/screenshots/docs-report.png
(TRTPROF_UPDATE_DOCS=1 also writes docs/report.png).

Each report kind (tests/report_kinds.py: one engine, a graph-broken model with >10 subgraphs, kernel
activity, an nsys import) is loaded once with a script that writes what the page shows into the DOM:
every figure drawn, a legend entry per drawn trace and re-allocation cause, the latency-over-run axis
set by the steady state, subgraphs and stream lanes in natural order, no horizontal overflow; one
screenshot per kind goes to build/screenshots/<kind>.png.
"""
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from synthetic import hostile, timeline, write_capture
from trtprof.timeline.store import Capture, load_capture
from report_helpers import write_report

ROOT = Path(__file__).resolve().parent.parent
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
EVIL = "<script>alert(1)</script>"



@pytest.fixture(autouse=True)
def _need_browser():
    """Fail (CI) or skip (elsewhere) each test when there is no browser, without stopping the run."""
    if BROWSER is None:
        if IN_CI:
            pytest.fail("CI=true but no chromium on PATH (scripts/test.sh installs it)", pytrace=False)
        pytest.skip("chromium is not installed (it is required in CI)")


def chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=20000", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console(stderr: str) -> list[str]:
    """Console messages (log, warn, error, uncaught exceptions) of pages loaded from file://."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line and "file://" in line]


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def load(path: Path, tmp: Path):
    res = chromium(path.as_uri(), tmp, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    p = Elements()
    p.feed(dom)
    return dom, p.tags, console(res.stderr)


def check_rendered(path: Path, tmp: Path):
    dom, tags, messages = load(path, tmp)
    assert messages == [], messages
    n = int(re.search(r'<meta name="trtprof-figures" content="(\d+)">', path.read_text()).group(1))
    figs = [a for t, a in tags if t == "div" and "trtprof-fig" in a.get("class", "").split()]
    assert len(figs) == n >= 3
    plotted = [a for a in figs if "js-plotly-plot" in a.get("class", "").split()]
    assert len(plotted) == n, "a figure did not render"
    svgs = [a for t, a in tags if t == "svg" and "main-svg" in a.get("class", "").split()]
    assert len(svgs) >= 2 * n  # plotly draws a main and an overlay svg per figure
    errors_box = next(a for t, a in tags if a.get("id") == "trtprof-errors")
    assert "hidden" in errors_box, "the page reported an error"
    assert not [t for t, _ in tags if t in ("img", "iframe", "object", "embed")]
    assert not [k for _, a in tags for k in a if k.startswith("on")]
    return dom


def test_report_renders_offline_and_screenshot(tmp_path):
    df = timeline(300, shapes=["(8,128)"] * 250 + ["(4,128)", "(8,128)"] * 25, seed=11)
    meta = {"status": "complete", "command": ["python", "infer.py", "--batch", "8"],
            "start_time": "2025-01-01T12:00:00+00:00",
            "environment": {"gpu": "synthetic timeline (support/synthetic.py), not a GPU run"}}
    path = write_report(Capture(timeline=df, meta=meta, path=None), tmp_path / "report.html")
    check_rendered(path, tmp_path)
    shot = tmp_path / "report.png"
    res = chromium(path.as_uri(), tmp_path, "--window-size=1280,1700", f"--screenshot={shot}")
    assert res.returncode == 0, res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 20_000 < len(data) < 500_000  # not blank, not runaway
    keep = ROOT / "build" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    keep.write_bytes(data)


def test_docs_screenshot_is_the_report_its_caption_names(tmp_path, monkeypatch):
    """docs/report.md shows docs/report.png as the report of reports/cases/small-python on the machine
    and date of that capture; the screenshot of that report as the current code draws it goes to
    build/screenshots/docs-report.png (TRTPROF_UPDATE_DOCS=1 also writes docs/report.png, reduced to
    64 colours by pngquant where it is installed)."""
    import json

    from click.testing import CliRunner

    from trtprof.cli import main

    case = "reports/cases/small-python"
    meta = json.loads((ROOT / case / "meta.json").read_text())
    gpu = meta["environment"]["gpu"].replace("NVIDIA ", "")
    caption = next(line for line in (ROOT / "docs" / "report.md").read_text().splitlines()
                   if line.startswith("(The report of"))
    assert f"`{case}`" in caption and gpu in caption and meta["start_time"][:10] in caption, caption
    monkeypatch.chdir(ROOT)  # the page names the capture as the command was given: reports/cases/...
    out = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", case, "-o", str(out)]).exit_code == 0
    assert f"<dd>{case}</dd>" in out.read_text()
    check_rendered(out, tmp_path)
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "docs-report.png"
    res = chromium(out.as_uri(), tmp_path, "--window-size=1280,1680", f"--screenshot={shot}")
    assert res.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", res.stderr[-2000:]
    if os.environ.get("TRTPROF_UPDATE_DOCS"):
        docs = ROOT / "docs" / "report.png"
        if shutil.which("pngquant"):
            subprocess.run(["pngquant", "--force", "--output", str(docs), "64", str(shot)], check=True)
        else:
            docs.write_bytes(shot.read_bytes())


def test_hostile_names_are_drawn_as_text(tmp_path):
    meta = {"status": "complete", "command": ["python", "x.py", EVIL]}
    path = write_report(Capture(timeline=hostile(60), meta=meta, path=None), tmp_path / "report.html")
    dom = check_rendered(path, tmp_path)
    shown = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # tables hold it as escaped text already; plotly adds it to SVG labels, again as text
    assert dom.count(shown) > path.read_text().count(shown)
    assert EVIL not in dom
    assert "alert(1)</script>" not in dom


WIDTH_PROBE = ("<script>window.addEventListener('load', function () { setTimeout(function () {"
               "document.body.setAttribute('data-widths', document.documentElement.scrollWidth + ',' + "
               "window.innerWidth); }, 300); });</script>")


def widths(path: Path, tmp: Path, window: int) -> tuple[int, int]:
    """(document.scrollWidth, viewport width) of the page at `path` in a window `window` px wide, read
    from a copy of the page that writes them into the DOM once loaded."""
    probe = tmp / f"width-{window}.html"
    probe.write_text(path.read_text().replace("</body>", WIDTH_PROBE + "</body>"))
    res = chromium(probe.as_uri(), tmp, f"--window-size={window},900", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    got = re.search(r'data-widths="(\d+),(\d+)"', res.stdout)
    assert got, "the width probe did not run"
    return int(got.group(1)), int(got.group(2))


def test_compare_page_never_scrolls_sideways(tmp_path):
    """Wide tables scroll inside their own box, long names wrap: the page itself is never wider than
    the window, even with a 300-character subgraph name and command."""
    from click.testing import CliRunner

    from trtprof.cli import main

    long = "_run_on_acc_" + "x" * 300
    fa = write_capture(timeline(60, engines=(long, "_run_on_acc_2")), tmp_path / "a",
                       {"command": ["python", "/" + "y" * 300 + ".py"]})
    fb = write_capture(timeline(60), tmp_path / "b")
    out = tmp_path / "c.html"
    assert CliRunner().invoke(main, ["compare", str(fa), str(fb), "-o", str(out), "-q"]).exit_code == 0
    for window in (1280, 800):
        scroll, viewport = widths(out, tmp_path, window)
        assert viewport == window and scroll <= viewport, (window, scroll)


# -- every report kind, checked in the page the browser built ------------------------------------------------
# Appended to a copy of the report: once every figure has drawn (or after 15 s of virtual time), it
# writes what the page shows into <pre id="trtprof-check"> as JSON, which --dump-dom returns.
CHECK_JS = """
<script>
(function () {
  function cats(ax) { return ax && ax._categories ? ax._categories.slice() : []; }
  function report() {
    var figs = Array.prototype.map.call(document.querySelectorAll("div.trtprof-fig"), function (d) {
      var fl = d._fullLayout || {};
      var traces = (d.data || []).filter(function (t) {
        return t.showlegend !== false && t.name && ((t.x && t.x.length) || (t.y && t.y.length)); });
      function box(sel) { var n = d.querySelector(sel); if (!n) { return null; }
        var r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
      function boxes(sel) { return Array.prototype.map.call(d.querySelectorAll(sel), function (n) {
        var r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }); }
      return {id: d.id, svgs: d.querySelectorAll(".main-svg").length,
              titleBox: box(".gtitle"), legendBox: box(".legend"),
              labelBoxes: boxes(".xaxislayer-above text, .yaxislayer-above text, .g-xtitle text, .g-ytitle text"),
              plotBox: box(".nsewdrag"), figBox: (function (r) { return [r.left, r.top, r.right, r.bottom]; })(
                d.getBoundingClientRect()),
              title: fl.title ? fl.title.text : "",
              legend: Array.prototype.map.call(d.querySelectorAll(".legendtext"), function (n) { return n.textContent; }),
              traces: traces.map(function (t) { return t.name; }),
              yrange: fl.yaxis && fl.yaxis.range ? fl.yaxis.range : null,
              categories: [cats(fl.xaxis), cats(fl.yaxis)]};
    });
    var cells = Array.prototype.map.call(document.querySelectorAll("#subgraphs ~ div.scroll td"), function (c) {
      return c.textContent; });
    var out = document.createElement("pre");
    out.id = "trtprof-check";
    out.hidden = true;
    out.textContent = JSON.stringify({figures: figs, table: cells, errors: window.trtprofErrors,
      scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth});
    document.body.appendChild(out);
  }
  var waited = 0;
  function poll() {
    var figs = document.querySelectorAll("div.trtprof-fig");
    var done = Array.prototype.every.call(figs, function (d) { return d.querySelector(".main-svg"); });
    if (done || waited > 15000) { report(); } else { waited += 100; setTimeout(poll, 100); }
  }
  window.addEventListener("load", function () { setTimeout(poll, 0); });
})();
</script>"""
WIDTH = 1280
SUBGRAPH = re.compile(r"_run_on_[a-z]+_\d+")


def page_facts(report: Path, tmp: Path, shot: Path) -> dict:
    """Load a copy of `report` with CHECK_JS (one chromium launch, which also takes the screenshot)."""
    import html
    import json

    check = tmp / "check.html"
    check.write_text(report.read_text().replace("</body>", CHECK_JS + "</body>"))
    res = chromium(check.as_uri(), tmp, f"--window-size={WIDTH},1700", f"--screenshot={shot}", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    assert console(res.stderr) == []
    m = re.search(r'<pre id="trtprof-check" hidden="">(.*?)</pre>', res.stdout, re.S)
    assert m, "the check script did not run"
    return json.loads(html.unescape(m.group(1)))


def overlaps(a, b, tol: float = 1.0) -> bool:
    """Do two [left, top, right, bottom] boxes overlap by more than `tol` px each way? (None: no box)"""
    if not a or not b:
        return False
    return min(a[2], b[2]) - max(a[0], b[0]) > tol and min(a[3], b[3]) - max(a[1], b[1]) > tol


def check_legends(figs: list[dict]) -> None:
    """Every named trace with data has its legend entry; a legend never runs into its figure's title,
    nor covers the plot or an axis label (the overlap chart's rotated subgraph names)."""
    for f in figs:
        assert set(f["traces"]) <= set(f["legend"]), (f["title"], set(f["traces"]) - set(f["legend"]))
        t, g = f["titleBox"], f["legendBox"]
        if t and g:
            assert g[1] >= t[3] - 1 or g[0] >= t[2] or g[2] <= t[0], (f["title"], t, g)
        t, b = f["titleBox"], f["figBox"]  # the title inside its figure, not cut at the top
        assert t and t[1] >= b[1] and t[3] <= b[3], (f["title"], t, b)
        assert f["labelBoxes"] and f["plotBox"], f["title"]
        hit = [b for b in f["labelBoxes"] + [f["plotBox"]] if overlaps(f["legendBox"], b)]
        assert not hit, (f["title"], f["legendBox"], hit)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """Each report kind's capture folder and its report, written once for the checks below."""
    from report_kinds import KINDS

    out = {}
    for kind, build in KINDS.items():
        folder = build(tmp_path_factory.mktemp(kind) / "cap")
        out[kind] = (folder, write_report(load_capture(folder)))
    return out


@pytest.mark.parametrize("kind", ["single", "broken", "kernels", "nsys"])
def test_each_report_kind_renders_in_the_browser(kind, kinds, tmp_path):
    from trtprof.analysis.report import analyse
    from trtprof.render.figures import latency_range
    from trtprof.timeline.schema import natural_key

    folder, report = kinds[kind]
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    facts = page_facts(report, tmp_path, shots / f"{kind}.png")
    assert (shots / f"{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cap = load_capture(folder)
    r = analyse(cap.timeline, kernels=cap.kernels)
    figs = facts["figures"]
    n = int(re.search(r'<meta name="trtprof-figures" content="(\d+)">', report.read_text()).group(1))
    assert len(figs) == n >= 4 and facts["errors"] == []
    assert all(f["svgs"] >= 2 for f in figs), [f["id"] for f in figs if f["svgs"] < 2]  # main + overlay svg
    check_legends(figs)
    # re-allocation causes: a legend entry for each cause the drawn window has, and some cause drawn
    timeline = next(f for f in figs if f["title"].startswith("Timeline"))
    causes = {t for t in timeline["traces"] if t.startswith("re-allocation: ")}
    assert causes == {t for t in timeline["legend"] if t.startswith("re-allocation: ")}
    if r.allocs["realloc_cause"].notna().any():
        assert causes, "the data has re-allocations but the timeline legend has no cause"
    # latency over the run: the axis is the steady state's, not the warm-up maximum's
    over = next(f for f in figs if f["title"].startswith("Latency over the run"))
    lo, hi = latency_range(r.latency)
    assert over["yrange"] == pytest.approx([lo, hi], rel=1e-6)
    worst = r.latency["latency_ns"].max() / 1e6
    if kind == "single":  # a real GPU run: its warm-up is far slower than the steady state
        assert worst > 1.5 * hi
    assert over["yrange"][1] <= max(hi, worst) and (worst <= hi or over["yrange"][1] < worst)
    # subgraphs in natural order: in the per-subgraph table and on every categorical axis
    names = [c for c in facts["table"] if c.startswith("_run_on_")]
    if kind == "broken":
        assert names.index("_run_on_acc_2") < names.index("_run_on_acc_10") < names.index("_run_on_acc_22")
        assert names.index("_run_on_gpu_3") < names.index("_run_on_gpu_11")
    both = 0  # axes listing _run_on_acc_2 and _run_on_acc_10 in one context
    for axis in (a for f in figs for a in f["categories"]):  # per context (mode), first names in order
        runs = {}
        for c in map(str, axis):
            found = SUBGRAPH.findall(c)
            if found:
                runs.setdefault(SUBGRAPH.sub("", c), []).append(found[0])
        for first in runs.values():
            assert first == sorted(first, key=natural_key), first
            both += {"_run_on_acc_2", "_run_on_acc_10"} <= set(first)
    if kind == "broken":
        assert both, "no figure axis lists both _run_on_acc_2 and _run_on_acc_10"
    pools = [int(m.group(1)) for c in timeline["categories"][1] if (m := re.search(r"engine pool (\d+)", str(c)))]
    assert pools == sorted(pools, reverse=True)  # lanes listed top-down: engine pool 2 above engine pool 10
    if kind == "broken":
        assert {2, 10} <= set(pools)
    # no horizontal overflow at a laptop's width
    assert facts["innerWidth"] == WIDTH and facts["scrollWidth"] <= facts["innerWidth"]
    # GPU bars say what they are: an event bracket, a kernel span, or a kernel CUPTI or nsys recorded
    gpu = [t for t in timeline["legend"] if t.startswith(("engine", "fallback", "kernel")) and "(host)" not in t]
    assert gpu and all(any(w in t for w in ("CUDA-event bracket", "kernel span", "(CUPTI)", "(Nsight Systems)"))
                       for t in gpu), gpu
    spans = {"engine: kernel span (first kernel start to last end)"} & set(timeline["legend"])
    assert bool(spans) == (kind != "broken"), timeline["legend"]  # the synthetic broken capture has no kernels
    if kind == "nsys":
        assert "Nsight Systems" in report.read_text()
        assert "kernel spans from the Nsight Systems import" in report.read_text()
        assert "kernel or copy of an engine (Nsight Systems)" in timeline["legend"]
    if kind == "kernels":
        assert cap.kernels is not None and len(cap.kernels) and r.busy_source == "kernels"
        assert "kernel or copy of an engine (CUPTI)" in timeline["legend"]


def test_compare_page_in_the_browser(tmp_path):
    """The compare page of the committed graph-broken capture (25 subgraphs, C++ runtime) against a
    copy of itself: both figures drawn, their legends complete and clear of the plot and labels,
    subgraphs in natural order in the tables and the figure, no horizontal overflow; its screenshot
    goes to build/screenshots/compare.png beside the report kinds'."""
    from click.testing import CliRunner

    from trtprof.cli import main
    from trtprof.timeline.schema import natural_key

    out = tmp_path / "compare.html"
    cases = ROOT / "reports" / "cases"
    # against a copy of itself: its CUDA-graphs A/B counterpart (reports/cudagraphs/breaks-cpp) left the
    # tree after commit 66a8e7c for its size, and what is checked here is the page, not a difference
    twin = tmp_path / "twin"
    shutil.copytree(cases / "breaks-cpp", twin)
    args = ["compare", str(cases / "breaks-cpp"), str(twin), "-o", str(out), "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    facts = page_facts(out, tmp_path, shots / "compare.png")
    assert (shots / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figs = facts["figures"]
    assert len(figs) == 2 and facts["errors"] == [] and all(f["svgs"] >= 2 for f in figs)
    check_legends(figs)
    names = list(dict.fromkeys(c for c in facts["table"] if SUBGRAPH.fullmatch(c)))
    assert len(names) == 25 and names == sorted(names, key=natural_key), names
    per = next(f for f in figs if f["title"].startswith("Per subgraph"))
    assert per["categories"][1] == names  # one row per subgraph, in the table's order
    assert facts["innerWidth"] == WIDTH and facts["scrollWidth"] <= facts["innerWidth"]
