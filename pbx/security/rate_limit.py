"""Per-source token buckets for requests that are not (yet) authenticated.

A pike-like guard (after Kamailio's pike module) with memory that cannot
grow without bound: one bucket per source address, at most ``max_sources``
of them, least recently seen forgotten first. Forgetting a bucket only
gives that source a fresh burst, never a lasting way round the limit, since
a flood refills the table with its own sources.

What counts is decided by the caller: a request that arrives without
credentials, or whose credentials fail, takes a token; one with valid
credentials takes none (an office of phones behind one address logging in
correctly is never limited). Pure: time is passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Limited:
    """Reported once when a source first runs dry (and again only after its
    bucket filled up again), so a flood makes one log line, not one per
    packet nor one per token refilled."""

    source: str
    rate: float
    burst: int


class SourceRateLimit:
    def __init__(self, *, rate: float, burst: int, max_sources: int = 65_536) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be positive, burst and max_sources at least 1")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        # source -> (tokens, updated_at, dry); most recently used last
        self._buckets: OrderedDict[str, tuple[float, float, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def has_tokens(self, source: str, now: float) -> bool:
        """Whether ``source`` may have one more unauthenticated request now
        (without taking it: see `take`)."""
        entry = self._buckets.get(source)
        if entry is None:
            return True
        tokens, at, _ = entry
        return min(self.burst, tokens + (now - at) * self.rate) >= 1.0

    def take(self, source: str, now: float) -> Limited | None:
        """Take a token for one unauthenticated request from ``source``.
        Returns `Limited` when this made the source run dry for the first
        time since it last had tokens."""
        buckets = self._buckets
        entry = buckets.get(source)
        if entry is None:
            if len(buckets) >= self.max_sources:
                buckets.popitem(last=False)
            tokens, dry = float(self.burst), False
        else:
            tokens = min(float(self.burst), entry[0] + (now - entry[1]) * self.rate)
            # A dry spell ends only when the bucket is full again (the source
            # paused for burst/rate seconds): a flood that goes on past the
            # rate is served a token now and then but makes one log line,
            # not one per token refilled (20 a second at the defaults).
            dry = entry[2] and tokens < self.burst
            buckets.move_to_end(source)
        report = None
        if tokens >= 1.0:
            tokens -= 1.0
        elif not dry:
            dry = True
            report = Limited(source=source, rate=self.rate, burst=self.burst)
        buckets[source] = (tokens, now, dry)
        return report

    def consume(self, source: str, now: float) -> bool:
        """Take a token if ``source`` has one; whether it had. The fast path
        for every datagram (`take` is for the rarer, reported case)."""
        buckets = self._buckets
        entry = buckets.get(source)
        if entry is None:
            if len(buckets) >= self.max_sources:
                buckets.popitem(last=False)
            buckets[source] = (self.burst - 1.0, now, False)
            return True
        tokens = entry[0] + (now - entry[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1.0:
            buckets[source] = (tokens, now, True)
            return False
        buckets[source] = (tokens - 1.0, now, False)
        return True

    def sweep(self, now: float) -> None:
        """Forget buckets that have refilled: they hold nothing a new one
        would not."""
        full = (self.burst - 1) / self.rate  # at most this long to refill
        for source in [s for s, (_, at, _) in self._buckets.items() if now - at >= full]:
            del self._buckets[source]
