"""Suite-wide hooks: a failed test shows what its `pbx serve` said."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests import server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # A timing failure in an end-to-end test is only readable with the
    # server's side of it; CI keeps nothing else.
    if report.when == "call" and report.failed:
        for number, running in enumerate(server.STARTED, 1):
            report.sections.append((f"pbx serve #{number} output (last 200 lines)", running.output()))
    if report.when == "teardown":
        server.STARTED.clear()
    return report
