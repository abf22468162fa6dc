"""Counting authentication failures per source and blocking brute force.

Pure: times are passed in. A source that fails ``max_failures`` times within
``window`` seconds is blocked for ``block_seconds``. Blocks are also written
to the store by the edge (so a restarted node, or another node sharing the
database, keeps them); ``load`` seeds this cache from there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocked:
    """Emitted once when a source crosses the threshold."""

    source: str
    until: float
    failures: int


class FailureTracker:
    def __init__(self, *, max_failures: int, window: float, block_seconds: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self.block_seconds = block_seconds
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def is_blocked(self, source: str, now: float) -> bool:
        until = self._blocked.get(source)
        if until is None:
            return False
        if until <= now:
            del self._blocked[source]
            return False
        return True

    def failure(self, source: str, now: float) -> Blocked | None:
        """Count one failure; returns ``Blocked`` when this one crossed the line."""
        times = self._failures.get(source)
        if times is None:
            times = self._failures[source] = deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.max_failures:
            return None
        del self._failures[source]
        until = now + self.block_seconds
        self._blocked[source] = until
        return Blocked(source=source, until=until, failures=len(times))

    def load(self, blocks: dict[str, float]) -> None:
        """Seed blocks read from the store (source -> unblock time)."""
        for source, until in blocks.items():
            if until > self._blocked.get(source, 0.0):
                self._blocked[source] = until

    def sweep(self, now: float) -> None:
        """Forget old failures and ended blocks, so memory stays bounded."""
        for source in [s for s, t in self._failures.items() if not t or t[-1] <= now - self.window]:
            del self._failures[source]
        for source in [s for s, until in self._blocked.items() if until <= now]:
            del self._blocked[source]

    def blocked_sources(self) -> dict[str, float]:
        return dict(self._blocked)
