"""Per-source token buckets and the sampled drop log."""

from __future__ import annotations

from pbx.security.rate_limit import Limited, SourceRateLimit
from pbx.security.sampling import DropSampler


def test_a_source_gets_its_burst_then_the_rate() -> None:
    limit = SourceRateLimit(rate=2, burst=5)
    taken = [limit.has_tokens("a", 0.0) and limit.take("a", 0.0) is None for _ in range(5)]
    assert taken == [True] * 5
    assert not limit.has_tokens("a", 0.0)
    assert limit.take("a", 0.0) == Limited(source="a", rate=2, burst=5)  # reported once ...
    assert limit.take("a", 0.1) is None  # ... not per packet
    assert limit.has_tokens("b", 0.0)  # other sources are untouched
    assert limit.has_tokens("a", 0.6)  # 2 per second
    limit.take("a", 0.6)
    assert not limit.has_tokens("a", 0.7)


def test_a_source_that_recovers_is_reported_again_when_it_runs_dry_again() -> None:
    limit = SourceRateLimit(rate=1, burst=1)
    assert limit.take("a", 0.0) is None
    assert limit.take("a", 0.0) is not None
    assert limit.take("a", 5.0) is None  # had a token again
    assert limit.take("a", 5.0) is not None


def test_a_flood_past_the_rate_is_reported_once_until_it_pauses() -> None:
    # The defaults: 20 a second, a burst of 400. A source sending 100 a
    # second for a minute is served the refills but reported once (it was
    # once reported at every refilled token: 20 log lines a second).
    limit = SourceRateLimit(rate=20, burst=400)
    served = reports = 0
    for n in range(6000):
        served += limit.has_tokens("a", n / 100)
        reports += limit.take("a", n / 100) is not None
    assert reports == 1
    assert 400 + 20 * 59 - 5 <= served <= 400 + 20 * 60 + 5  # the burst, then the rate: still served
    # Quiet long enough to refill (400 / 20 = 20 s): the next dry spell is news.
    for n in range(400):
        assert limit.take("a", 80.0 + n / 1000) is None
    assert sum(limit.take("a", 80.5) is not None for _ in range(30)) == 1  # the refill's few, then dry


def test_the_table_is_bounded_and_swept() -> None:
    limit = SourceRateLimit(rate=10, burst=3, max_sources=100)
    for n in range(1000):
        limit.take(f"10.0.{n // 250}.{n % 250}", n / 1000)
    assert len(limit) == 100
    limit.sweep(1.0 + 0.2)
    assert len(limit) == 0


def test_drops_are_summarised() -> None:
    sampler = DropSampler(interval=10)
    assert sampler.drop("bad_start_line", "10.0.0.1", 0.0) == (True, None)
    for n in range(99):
        assert sampler.drop("bad_start_line", f"10.0.0.{n % 3}", 1.0) == (False, None)
    assert sampler.drop("too_large", "10.0.0.5", 2.0) == (True, None)  # another kind: in full
    assert sampler.flush(5.0) == []
    (summary,) = sampler.flush(10.0)
    assert (summary.reason, summary.count) == ("bad_start_line", 99)
    assert dict(summary.sources) == {"10.0.0.0": 33, "10.0.0.1": 33, "10.0.0.2": 33}
    full, held = sampler.drop("bad_start_line", "10.0.0.1", 11.0)
    assert full and held is None  # a new interval starts in full
