"""GPU tests run on a lent machine under a wall-clock limit that can kill pytest before its summary:
each failure is written to stderr as it happens, so a cut-short run still says what failed and why."""
import sys


def pytest_runtest_logreport(report):
    if report.failed:
        sys.stderr.write(f"\nFAILED {report.nodeid} ({report.when})\n{report.longreprtext[-4000:]}\n")
        sys.stderr.flush()
