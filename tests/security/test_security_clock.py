"""The per-source buckets run on the event loop's monotonic clock, not the
wall clock: NTP stepping the wall clock back must not turn an office's (or a
load generator's) traffic into a "flood"."""

from __future__ import annotations

from pathlib import Path

from pbx.registrar.auth import Challenge
from pbx.security.lockout import Lockout
from pbx.security.rate_limit import SourceRateLimit
from pbx.server.security import SecurityEvents
from pbx.sip.address import Peer
from pbx.store.blocks import BlockStore
from pbx.store.db import make_engine
from pbx.store.writer import BackgroundWriter

PHONE = Peer("udp", "192.0.2.10", 5060)


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def events(tmp_path: Path, wall: Clock, mono: Clock, *, rate: float, burst: int) -> SecurityEvents:
    engine = make_engine(f"sqlite:///{tmp_path / 'pbx.sqlite3'}")
    lockout = Lockout(max_failures=1000, window=60, block_seconds=60)
    return SecurityEvents(lockout, SourceRateLimit(rate=rate, burst=burst), BackgroundWriter(engine),
                          BlockStore(engine), wall, clock=mono, packets=SourceRateLimit(rate=rate, burst=burst))


def test_a_wall_clock_stepped_back_drops_nothing(tmp_path: Path) -> None:
    wall, mono = Clock(1_800_000_000.0), Clock(100.0)
    security = events(tmp_path, wall, mono, rate=1000, burst=2000)
    for _ in range(2000):  # a steady 1,000 packets/s for two seconds
        mono.now += 0.001
        wall.now += 0.001
        assert security.admit_bytes(PHONE, mono.now)
    wall.now -= 30.0  # NTP steps the wall clock back half a minute
    for _ in range(2000):
        mono.now += 0.001
        wall.now += 0.001
        assert security.admit_bytes(PHONE, mono.now)
    # A failed authentication's token is taken on the monotonic clock too:
    # the step back leaves the source its tokens, so the 401 is sent.
    failed = Challenge(header_values=(), failed=True, reason="bad_credentials", username="1001")
    assert security.answer(failed, PHONE, "REGISTER")


def test_a_real_flood_is_still_dropped(tmp_path: Path) -> None:
    wall, mono = Clock(1_800_000_000.0), Clock(100.0)
    security = events(tmp_path, wall, mono, rate=100, burst=200)
    admitted = 0
    for _ in range(1000):  # 10,000 packets/s for 0.1 s against 100/s with a burst of 200
        mono.now += 0.0001
        admitted += security.admit_bytes(PHONE, mono.now)
    assert 200 <= admitted <= 215  # the burst and what 0.1 s at 100/s refills
    security.sweep(mono.now + 60)  # forgets the refilled bucket, uses the wall clock for blocks
    assert len(security.packets) == 0
