"""Suite-wide hooks: a failed test shows what its `pbx serve` said."""

from __future__ import annotations

import os
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



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # End-to-end tests are a tenth of the suite and most of its time (phones,
    # prompts, timers: 10-70 s each). Left where they are collected, a few of
    # them ended the run alone while the other workers sat idle. xdist's
    # worksteal hands each worker one contiguous share of this list and an
    # idle worker steals from the end of another's queue, so each share
    # starts with its part of the end-to-end tests (dealt round robin) and
    # ends with quick ones: the slow tests start at once, in parallel, and
    # what is stolen late is quick.
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    slow = [item for item in items if item.get_closest_marker("e2e") is not None]
    quick = [item for item in items if item.get_closest_marker("e2e") is None]
    ordered: list[pytest.Item] = []
    remaining, taken = len(items), 0
    for share in range(workers):
        size = remaining // (workers - share)  # as xdist sizes the shares
        remaining -= size
        first = slow[share::workers]
        rest = max(0, size - len(first))
        ordered += first + quick[taken:taken + rest]
        taken += rest
    ordered += quick[taken:]
    items[:] = ordered
