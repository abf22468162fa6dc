"""The event-loop lag monitor: its figures, then a real stall on a real loop."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from pbx.server.loop_lag import LagSummary, LagWindow, LoopLagMonitor


@pytest.mark.parametrize(("lags", "expected"), [
    ([], None),
    ([0.002], LagSummary(samples=1, max=0.002, p99=0.002)),
    # 200 samples: the 99th percentile is the 198th smallest (nearest rank).
    ([0.001] * 197 + [0.004, 0.05, 0.3], LagSummary(samples=200, max=0.3, p99=0.004)),
    ([-0.001, 0.0], LagSummary(samples=2, max=0.0, p99=0.0)),  # early by the clock's grain: no lag
])
def test_a_window_summarises_its_lags_and_starts_again(lags: list[float], expected: LagSummary | None) -> None:
    window = LagWindow()
    for lag in lags:
        window.add(lag)
    assert window.summary() == expected
    assert window.summary() is None


def test_a_blocked_loop_is_reported_as_a_stall() -> None:
    async def scenario() -> None:
        monitor = LoopLagMonitor(asyncio.get_running_loop(), tick=0.005, interval=60.0)
        monitor.start()
        await asyncio.sleep(0.05)
        time.sleep(0.25)  # what a long computation on the loop does
        await asyncio.sleep(0.05)
        monitor.stop()
        monitor.report()

    with capture_logs() as logs:
        asyncio.run(scenario())
    (line,) = [entry for entry in logs if entry["event"] == "loop_lag"]
    assert line["log_level"] == "warning"
    assert float(line["max_ms"]) >= 240.0  # the sleep, less a tick at most
    assert line["samples"] >= 3
