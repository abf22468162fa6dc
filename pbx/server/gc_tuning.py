"""Garbage collector settings for the long-running server.

CPython's cyclic collector stops the world, and a collection visits every
tracked object of the generations it collects: about 0.85 µs each here.
Under call load the live set is large: what start-up loaded (modules, the
dialplan, SQLAlchemy's metadata) and every call in progress, about 32
tracked objects each. So any collection that reaches the calls' objects
stops the loop long enough for phones to retransmit (T1 is 500 ms):

- With the defaults (700, 10, 10), full collections at 500-600 calls/s
  paused for 91 to 484 ms (bench/call_rate.py, 30 s steps).
- With start-up frozen and thresholds (50,000, 20, 100), no full collection
  ran while calls did, but the middle generation still held up to 20 young
  collections' survivors. Ramping to 50,000 calls in process
  (bench/call_memory.py --rss --calls 50000) it paused for 324, 320 and
  464 ms; over sockets one such pause failed 6 to 9 calls of 52,780.
- A young collection can grow too: freeing an old object lowers the young
  generation's count, so while calls end as fast as new ones start the
  count stays low and the young list grows with every new call. Hanging up
  50,000 calls made one young collection of 182 ms.

So the server ages objects out of the collector's reach:

- ``gc.freeze()`` moves everything alive after start-up to the permanent
  generation, which collections skip. Frozen objects are still freed by
  reference counting when dropped.
- After every collection, what survived it is frozen too (``tune``). A
  survivor has just been checked: garbage cycles among young objects are
  freed first. So every collection walks only objects born since the last
  one.
- Once a second the server makes a young collection itself
  (``Collector``), so no young list holds more than a second of survivors
  (about 32,000 objects, under 30 ms, at 1,000 calls/s).

What this gives up: a reference cycle that becomes garbage after its
objects were frozen is not freed by the collector. The SIP core, the
controller and the CDR path make no cycles per call (tests/calls/
test_lifetime.py finds no unreachable object after calls), so this is a
safety net, not a leak: when no call is up and ``QUIET_SWEEP`` seconds
have passed since the last sweep, the server thaws everything and makes a
full collection (about 110 ms on the example plan, idle), then freezes the
survivors again. Two limits for a server that is never idle: it sweeps
when the memory blocks the interpreter has allocated outgrow what the calls
up explain by ``GROWTH_SLACK`` (``sys.getallocatedblocks``, read every
``GROWTH_CHECK_EVERY`` seconds: 1.6 ms for 8 million blocks here, where
counting the frozen objects instead walks them all, 52 ms for 2 million,
and held the loop up to 90 ms at 20,000 calls), so a path that does make
cycles per call costs bounded memory between sweeps; and it sweeps after
``OVERDUE`` seconds anyway. Such a sweep pauses as long as the live set
needs (1.35 s at 50,000 calls up) and is logged as a warning. Every sweep
logs how many objects it freed, so a leak shows in the log.

Collections that pause longer than ``LONG_PAUSE`` are logged with their
generation; full collections always are.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import structlog

from pbx.server.periodic import Periodic

log = structlog.get_logger("pbx.collector")

THRESHOLDS: Final = (50_000, 20, 100)
"""Young collection every 50,000 net allocations, the middle one every 20
young ones, the full one every 100 middle ones (and CPython's own rule:
only when a quarter of the old generation is new since the last one)."""

LONG_PAUSE: Final = 0.1
"""A collection longer than this is logged as a warning."""

AGE_EVERY: Final = 1.0
"""Seconds between the server's own young collections."""

QUIET_SWEEP: Final = 600.0
"""Seconds since the last sweep after which an idle server sweeps."""

OVERDUE: Final = 86_400.0
"""Seconds after which a server sweeps even with calls up."""

PER_CALL: Final = 400
"""Memory blocks a call in progress may account for (measured: 78 live
objects with its transactions, bench/call_memory.py, each a block or a
few), generously."""

GROWTH_SLACK: Final = 2_000_000
"""Allocated blocks beyond the last sweep's and ``PER_CALL`` per call up
that start a sweep even with calls up (some 100-200 MB)."""

GROWTH_CHECK_EVERY: Final = 10
"""Seconds between two counts of the allocated memory blocks."""


def freeze_survivors() -> None:
    """Collect, then move every surviving object out of future collections.

    Called after start-up. The objects of calls in progress at that moment
    are frozen too; they are freed as usual when the call ends (by
    reference counting).
    """
    gc.collect()
    gc.freeze()


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection while a large, long-lived structure is built.

    Loading a plan allocates hundreds of thousands of objects that all
    survive: every collection it triggers walks them and finds nothing.
    For 20,000 extensions, loading took 40 % less CPU without (4.7 -> 2.8 s,
    whole process, paired runs on a shared machine).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def freeze_new() -> None:
    """Move every object alive now out of future collections, without
    collecting first.

    For a reloaded dialplan: a collection here would visit the whole new
    plan (90 ms for 20,000 extensions) on the event loop, and it would find
    next to nothing, since the old plan is freed by reference counting and
    the SIP and call layers make no reference cycles.
    """
    gc.freeze()


_ageing = False
"""Whether survivors of each collection are frozen (set by ``tune``)."""


def tune() -> None:
    """Raise the thresholds, freeze each collection's survivors, log pauses."""
    global _ageing
    gc.set_threshold(*THRESHOLDS)
    _ageing = True
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


@contextmanager
def thawed() -> Iterator[None]:
    """Every object back in the collector's reach while the block runs
    (for a sweep, or a tool that counts objects with ``gc.get_objects``);
    frozen again after it."""
    global _ageing
    ageing, _ageing = _ageing, False
    gc.unfreeze()
    try:
        yield
    finally:
        gc.freeze()
        _ageing = ageing


def sweep() -> int:
    """Thaw, make a full collection, freeze again; the objects freed. The
    caller logs it (``gc_sweep``, with why): the collection's own
    ``gc_full_collection`` line would say the same again."""
    global _sweeping
    _sweeping = True
    try:
        with thawed():
            return gc.collect()
    finally:
        _sweeping = False


@dataclass(slots=True)
class SweepSchedule:
    """When the next sweep is due (pure: times and counts are passed in)."""

    last: float
    kept: int = 0
    """Memory blocks allocated after the last sweep (or start-up)."""
    quiet: float = QUIET_SWEEP
    overdue: float = OVERDUE
    slack: int = GROWTH_SLACK

    def due(self, now: float, calls_up: int, blocks: int | None = None) -> str | None:
        """Why a sweep is due now ("overdue", "growth" or "quiet"), or None.
        ``blocks``: the memory blocks allocated now, where they were counted."""
        since = now - self.last
        if since >= self.overdue:
            return "overdue"
        if blocks is not None and blocks > self.kept + calls_up * PER_CALL + self.slack:
            return "growth"
        if calls_up == 0 and since >= self.quiet:
            return "quiet"
        return None

    def swept(self, now: float, kept: int) -> None:
        self.last, self.kept = now, kept


class Collector:
    """The server's young collection once per ``AGE_EVERY``, and a sweep
    when one is due."""

    def __init__(self, loop: asyncio.AbstractEventLoop, calls_up: Callable[[], int], *,
                 every: float = AGE_EVERY, quiet: float = QUIET_SWEEP, overdue: float = OVERDUE,
                 slack: int = GROWTH_SLACK, count_every: int = GROWTH_CHECK_EVERY) -> None:
        self._loop = loop
        self._calls_up = calls_up
        self._schedule = SweepSchedule(last=loop.time(), kept=sys.getallocatedblocks(), quiet=quiet,
                                       overdue=overdue, slack=slack)
        self._count_every = count_every
        self._ticks = 0
        self._periodic = Periodic(loop, every, self._tick)

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()

    def _tick(self) -> None:
        if not gc.isenabled():
            # Someone is building a large structure under paused() (a
            # reloaded plan being unpickled on the reloader's thread): a
            # collection now would walk all of it and find nothing.
            return
        now = self._loop.time()
        self._ticks += 1
        blocks = sys.getallocatedblocks() if self._ticks % self._count_every == 0 else None
        reason = self._schedule.due(now, self._calls_up(), blocks)
        if reason is None:
            gc.collect(0)  # its survivors are frozen by _on_collection
            return
        started = time.perf_counter()
        freed = sweep()
        pause = time.perf_counter() - started
        self._schedule.swept(now, sys.getallocatedblocks())
        event = log.warning if pause >= LONG_PAUSE else log.info
        event("gc_sweep", reason=reason, pause_ms=round(pause * 1000, 1), freed=freed)


_started: float | None = None
_sweeping = False


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
        return
    if _ageing:
        gc.freeze()
    if _started is None:
        return
    pause = time.perf_counter() - _started
    _started = None
    generation = info["generation"]
    if generation == 2 and not _sweeping:
        event = log.warning if pause >= LONG_PAUSE else log.info
        # Not the frozen count: counting walks every frozen object (52 ms
        # for 2 million), longer than the collection it would describe.
        event("gc_full_collection", pause_ms=round(pause * 1000, 1), collected=info["collected"])
    elif pause >= LONG_PAUSE:
        log.warning("gc_collection", generation=generation, pause_ms=round(pause * 1000, 1),
                    collected=info["collected"])
