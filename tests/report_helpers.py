"""The report pipeline as the CLI runs it (load -> analyse -> render), for tests that want the page."""
from trtprof.analysis.bootstrap import N_BOOT
from trtprof.analysis.report import analyse
from trtprof.cli.common import write_report  # noqa: F401 - tests write reports the CLI's way
from trtprof.errors import EmptyCaptureError
from trtprof.nsys.importer import report_inputs
from trtprof.render import report_html


def render(cap, n_boot: int = N_BOOT) -> str:
    if cap.timeline is None or cap.timeline.empty:
        raise EmptyCaptureError("the capture has no rows")
    seen, view = report_inputs(cap)
    return report_html.render(seen, analyse(seen.timeline, n_boot=n_boot, kernels=cap.kernels, meta=cap.meta), view)
