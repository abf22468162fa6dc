"""Garbage collector settings for the long-running server.

CPython's cyclic collector stops the world, and a full (generation 2)
collection visits every tracked object: about 0.85 µs each here. Under call
load the live set is large for two reasons: what start-up loaded (modules,
the dialplan, SQLAlchemy's metadata), which never becomes garbage, and the
finished transactions RFC 3261 keeps for timers J, K, L, M (up to 32 s of
calls). A full collection over both took up to 230 ms at 500 calls/s and
480 ms at 600, near T1, so phones retransmitted and set-up times jumped.

Two remedies, applied once the server has started:

- ``gc.freeze()`` moves everything alive after start-up to the permanent
  generation, which collections skip. Frozen objects are still freed by
  reference counting when dropped; only a reference cycle among them would
  never be reclaimed, which is acceptable for objects meant to live as long
  as the process.
- Higher thresholds: with the default (700, 10, 10) a young collection runs
  every 700 net allocations, and a full one every 100 young ones once a
  quarter of the old generation is new since the last. The SIP core, controller and CDR path create no
  reference cycles per call (0 unreachable objects per call in process; the
  collection at exit after 33,000 calls through `pbx serve` found none), so
  rarer collections cost nothing in memory and save the pauses.

Measured with bench/call_rate.py (30 s steps at 500 then 600 calls/s on one
server): with the defaults, 13 full collections whose pauses grew from 91 to
484 ms (936 ms once the 600 step failed); frozen, 12 of 30 to 351 ms; frozen
with these thresholds, none while calls ran.

Each full collection is logged with its length, so a long pause shows up in
the log next to the calls it delayed.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import structlog

log = structlog.get_logger("pbx.collector")

THRESHOLDS: Final = (50_000, 20, 100)
"""Young collection every 50,000 net allocations, the middle one every 20
young ones, the full one every 100 middle ones (and CPython's own rule:
only when a quarter of the old generation is new since the last one)."""

LONG_PAUSE: Final = 0.1
"""A full collection longer than this is logged as a warning."""


def freeze_survivors() -> None:
    """Collect, then move every surviving object out of future collections.

    Called after start-up, and again after a dialplan reload so the new
    plan's objects join the old ones there instead of being visited by every
    full collection from then on. The objects of calls in progress at that
    moment are frozen too; they are freed as usual when the call ends (by
    reference counting), so nothing is lost but their share of the next
    collections.
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


def tune() -> None:
    """Raise the thresholds and start logging full collections."""
    gc.set_threshold(*THRESHOLDS)
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


_started: float | None = None


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    global _started
    if info["generation"] != 2:
        return
    if phase == "start":
        _started = time.perf_counter()
        return
    if _started is None:
        return
    pause = time.perf_counter() - _started
    _started = None
    event = log.warning if pause >= LONG_PAUSE else log.info
    event("gc_full_collection", pause_ms=round(pause * 1000, 1), collected=info["collected"],
          frozen=gc.get_freeze_count())
