"""The report in a real browser: headless Chromium loads it offline, every figure renders, nothing
reaches the console, hostile names stay text; a screenshot is kept for people to look at.

Skipped without chromium on a developer machine; in CI (CI=true) chromium is required, and
scripts/test.sh installs it. The screenshot goes to build/report-screenshot.png (TRTPROF_UPDATE_DOCS=1
also writes docs/report.png, the one docs/report.md shows).
"""
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from synthetic import hostile, timeline, write_capture
from trtprof.timeline.store import Capture
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
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 20_000 < len(data) < 300_000
    keep = ROOT / "build" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    keep.write_bytes(data)
    if os.environ.get("TRTPROF_UPDATE_DOCS"):
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "report.png").write_bytes(data)


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
