"""A pytest plugin: the skipped tests counted by reason, one line each, at the end of the run.

A run without PostgreSQL and Redis skips hundreds of tests for the same two or three reasons;
listed one by one (`-rs`) they bury the failures. Failures, errors and xfails keep their own
lines (pyproject's `-rfExX`).
"""

from __future__ import annotations

from collections import Counter

import pytest


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # A skipped module is reported by its collection, a skipped test by its run.
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report, pytest.TestReport | pytest.CollectReport)
    ]
    if not skipped:
        return
    reasons = Counter(skip_reason(report) for report in skipped)
    terminalreporter.write_sep("=", f"{len(skipped)} skipped, by reason")
    width = len(str(max(reasons.values())))
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        terminalreporter.write_line(f"{count:>{width}} {reason}")
