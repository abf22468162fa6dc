"""The server's own event-loop lag over a bench step, read from its log.

`pbx serve` writes a ``loop_lag`` line every 10 s (pbx/server/loop_lag.py):
the largest lag and the 99th percentile of that interval. A bench marks the
log before a step and reads the lines written since after it; a stall of
the loop (a collection, a reload, a burst of work) shows here even when the
step's own figures hide it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class LagSeen:
    intervals: int
    max_ms: float
    """The largest lag of any interval."""
    p99_ms: float
    """The worst interval's 99th percentile."""

    def note(self) -> str:
        return f"  server loop lag: max {self.max_ms:.1f} ms, worst p99 {self.p99_ms:.1f} ms ({self.intervals} x 10 s)"


class LagLog:
    """Reads the ``loop_lag`` lines a server log gained since `mark`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def mark(self) -> None:
        try:
            self._offset = self._path.stat().st_size
        except OSError:
            self._offset = 0

    def since_mark(self) -> LagSeen | None:
        """The lines since the mark; None if there were none (an older
        server, or a step shorter than an interval)."""
        try:
            with self._path.open("rb") as log:
                log.seek(self._offset)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return None
        maxima, p99s = [], []
        for line in text.splitlines():
            if '"loop_lag"' not in line:
                continue
            try:
                entry = json.loads(line)
                maxima.append(float(entry["max_ms"]))
                p99s.append(float(entry["p99_ms"]))
            except (ValueError, KeyError, TypeError):
                continue
        if not maxima:
            return None
        return LagSeen(intervals=len(maxima), max_ms=max(maxima), p99_ms=max(p99s))
