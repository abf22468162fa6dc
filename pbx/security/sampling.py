"""Aggregated logging of dropped junk: one line per kind at once, then a
summary per interval, so 5,000 junk packets make a handful of lines.

Pure: the caller passes the time and writes the lines it is given.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What was dropped, unlogged, since the last line of its kind."""

    reason: str
    count: int
    sources: tuple[tuple[str, int], ...]
    """The sources that sent most of them, with their counts (top 5)."""
    seconds: float


@dataclass(slots=True)
class _Pending:
    since: float
    count: int = 0
    sources: Counter[str] = field(default_factory=Counter)


class DropSampler:
    """Per reason: the first drop is logged in full; later ones within
    ``interval`` seconds are counted, and summarised when the interval is
    over (on the next drop or `flush`)."""

    MAX_SOURCES = 1000
    """Distinct sources counted per reason and interval; more are lumped."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._pending: dict[str, _Pending] = {}

    def drop(self, reason: str, source: str, now: float) -> tuple[bool, Summary | None]:
        """Record one drop. Returns (log this one in full?, a summary of the
        ones held back, when it is time for it)."""
        pending = self._pending.get(reason)
        if pending is None:
            self._pending[reason] = _Pending(since=now)
            return True, None
        summary = None
        if now - pending.since >= self.interval:
            summary = self._summary(reason, pending, now)
            self._pending[reason] = _Pending(since=now)
            return True, summary
        pending.count += 1
        if source in pending.sources or len(pending.sources) < self.MAX_SOURCES:
            pending.sources[source] += 1
        else:
            pending.sources["other"] += 1
        return False, None

    def flush(self, now: float) -> list[Summary]:
        """Summaries of intervals that are over; their reasons start afresh."""
        out = []
        for reason, pending in list(self._pending.items()):
            if now - pending.since >= self.interval:
                summary = self._summary(reason, pending, now)
                if summary is not None:
                    out.append(summary)
                del self._pending[reason]
        return out

    @staticmethod
    def _summary(reason: str, pending: _Pending, now: float) -> Summary | None:
        if not pending.count:
            return None
        return Summary(reason=reason, count=pending.count, sources=tuple(pending.sources.most_common(5)),
                       seconds=round(now - pending.since, 1))
