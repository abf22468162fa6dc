"""Event-loop lag: how late the loop runs what is due, logged per interval.

Everything the PBX does for a packet, a timer or a call runs on one event
loop, so anything that holds it (a long computation, a full garbage
collection, a thread keeping the GIL) delays every call at once: phones
retransmit after T1 (500 ms) and set-up times jump. A tick is scheduled
every ``TICK`` seconds with ``loop.call_at``; how late it runs is the lag
at that moment. Each ``INTERVAL`` one ``loop_lag`` line gives the largest
lag and the 99th percentile, in milliseconds, so a stall shows up in the
log beside the calls it delayed (and a bench reads it from there).

A tick costs a few microseconds: 100 a second are nothing beside the
thousands of packets a loaded server handles.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Final

import structlog

log = structlog.get_logger("pbx.loop")

TICK: Final = 0.01
"""Seconds between ticks: a stall shorter than this may go unseen."""

INTERVAL: Final = 10.0
"""Seconds per logged summary."""

STALL: Final = 0.1
"""A largest lag at least this long is logged as a warning."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LagSummary:
    """One interval's lags, in seconds."""

    samples: int
    max: float
    p99: float


class LagWindow:
    """The lags seen since the last summary (pure: lags are passed in)."""

    def __init__(self) -> None:
        self._lags: list[float] = []

    def add(self, lag: float) -> None:
        self._lags.append(max(0.0, lag))

    def summary(self) -> LagSummary | None:
        """The interval's figures, and a new interval; None if no tick ran."""
        lags, self._lags = self._lags, []
        if not lags:
            return None
        lags.sort()
        # Nearest rank: the smallest lag at or above 99 % of the samples.
        rank = max(1, math.ceil(0.99 * len(lags)))
        return LagSummary(samples=len(lags), max=lags[-1], p99=lags[rank - 1])


class LoopLagMonitor:
    """Ticks on the running loop and logs a ``loop_lag`` line per interval."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, tick: float = TICK, interval: float = INTERVAL) -> None:
        self._loop = loop
        self._tick = tick
        self._interval = interval
        self._window = LagWindow()
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._report_at = 0.0

    def start(self) -> None:
        now = self._loop.time()
        self._report_at = now + self._interval
        self._schedule(now)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        self._due = now + self._tick
        self._handle = self._loop.call_at(self._due, self._on_tick)

    def _on_tick(self) -> None:
        now = self._loop.time()
        self._window.add(now - self._due)
        if now >= self._report_at:
            self._report_at = now + self._interval
            self.report()
        self._schedule(now)

    def report(self) -> None:
        """Log the interval so far and start a new one."""
        summary = self._window.summary()
        if summary is None:
            return
        event = log.warning if summary.max >= STALL else log.info
        event("loop_lag", max_ms=round(summary.max * 1000, 1), p99_ms=round(summary.p99 * 1000, 1),
              samples=summary.samples, interval_s=self._interval)
