"""Collector settings for the server: start-up objects frozen, each
collection's survivors frozen after it, a young collection every second,
a full sweep when the server is idle, and long pauses logged."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx.server import gc_tuning
from pbx.server.gc_tuning import Collector, SweepSchedule


class Cycle:
    """An object only the cycle collector can free once dropped."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    if gc_tuning._on_collection in gc.callbacks:
        gc.callbacks.remove(gc_tuning._on_collection)
    gc_tuning._ageing = False
    gc.unfreeze()


def test_freeze_tune_and_log_full_collections(restored_gc: None) -> None:
    kept = [Cycle() for _ in range(100)]
    gc_tuning.freeze_survivors()
    assert gc.get_freeze_count() >= len(kept)
    gc_tuning.tune()
    gc_tuning.tune()  # twice: still one callback
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.callbacks.count(gc_tuning._on_collection) == 1
    with capture_logs() as logs:
        gc.collect(1)  # not a full one, and short: not logged
        for _ in range(10):
            Cycle()
        gc.collect()
    (logged,) = [e for e in logs if e["event"] == "gc_full_collection"]
    assert logged["pause_ms"] >= 0 and logged["collected"] >= 10
    assert logged["log_level"] in ("info", "warning")
    assert not [e for e in logs if e["event"] == "gc_collection"]


def test_survivors_of_a_collection_are_frozen_and_garbage_is_freed_first(restored_gc: None) -> None:
    gc_tuning.freeze_survivors()
    gc_tuning.tune()
    frozen = gc.get_freeze_count()
    kept = [Cycle() for _ in range(50)]
    garbage = Cycle()
    gone = weakref.ref(garbage)
    del garbage
    gc.collect(0)
    assert gone() is None, "a young cycle dropped before the collection is freed by it"
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert not any(gc.is_tracked(k) and k in gc.get_objects(0) for k in kept[:3])
    # Nothing is left in the generations a collection walks but what the
    # callback itself allocated after freezing.
    assert sum(len(gc.get_objects(g)) for g in range(3)) < 50


def test_a_cycle_dropped_after_freezing_waits_for_the_sweep(restored_gc: None) -> None:
    gc_tuning.freeze_survivors()
    gc_tuning.tune()
    late = Cycle()
    gone = weakref.ref(late)
    gc.collect()  # late survives and is frozen
    del late
    gc.collect()
    assert gone() is not None, "frozen: out of the collector's reach"
    assert gc_tuning.sweep() >= 1
    assert gone() is None
    assert gc_tuning._ageing, "ageing resumes after the sweep"
    assert gc.get_freeze_count() > 0, "the sweep's survivors are frozen again"


def test_thawed_lists_every_object_for_a_count(restored_gc: None) -> None:
    gc_tuning.freeze_survivors()
    gc_tuning.tune()
    kept = Cycle()
    gc.collect()
    assert not any(o is kept for o in gc.get_objects())
    with gc_tuning.thawed():
        gc.collect()  # no freezing inside the block
        assert any(o is kept for o in gc.get_objects())
    assert not any(o is kept for o in gc.get_objects())


@pytest.mark.parametrize(("since", "calls_up", "expected"), [
    (10.0, 0, None),
    (599.0, 0, None),
    (600.0, 0, "quiet"),
    (600.0, 1, None),
    (86_399.0, 500, None),
    (86_400.0, 500, "overdue"),
    (86_400.0, 0, "overdue"),
])
def test_sweep_schedule(since: float, calls_up: int, expected: str | None) -> None:
    assert SweepSchedule(last=1000.0).due(1000.0 + since, calls_up) == expected


def test_a_busy_server_sweeps_when_allocated_blocks_outgrow_its_calls() -> None:
    schedule = SweepSchedule(last=0.0, kept=150_000, slack=1_000_000)
    explained = 150_000 + 5_000 * gc_tuning.PER_CALL + 1_000_000
    assert schedule.due(60.0, 5_000, explained) is None
    assert schedule.due(60.0, 5_000, explained + 1) == "growth"
    assert schedule.due(60.0, 5_000, None) is None, "not counted this tick"
    schedule.swept(61.0, 160_000)
    assert schedule.last == 61.0 and schedule.due(62.0, 5_000, explained + 1) is None


def test_collector_ages_every_tick_and_sweeps_when_idle(restored_gc: None) -> None:
    gc_tuning.freeze_survivors()
    gc_tuning.tune()
    calls_up = [3]

    async def scenario() -> tuple[list[MutableMapping[str, Any]], bool, bool]:
        loop = asyncio.get_running_loop()
        collector = Collector(loop, lambda: calls_up[0], every=0.01, quiet=0.05, count_every=1)
        late = Cycle()
        gone = weakref.ref(late)
        young_before = gc.get_stats()[0]["collections"]
        collector.start()
        with capture_logs() as logs:
            await asyncio.sleep(0.1)
            ticked = bool(gc.get_stats()[0]["collections"] > young_before)
            del late
            # Calls up: no sweep however long it has been since the last.
            await asyncio.sleep(0.1)
            assert gone() is not None
            calls_up[0] = 0
            await asyncio.sleep(0.1)
        collector.stop()
        return logs, ticked, gone() is None

    logs, ticked, freed = asyncio.run(scenario())
    assert ticked, "the collector made young collections of its own"
    assert freed, "the idle sweep freed the frozen cycle"
    sweeps = [e for e in logs if e["event"] == "gc_sweep"]
    assert sweeps and sweeps[0]["reason"] == "quiet" and sweeps[0]["freed"] >= 1
    # One line per sweep: its full collection is not logged again.
    assert not [e for e in logs if e["event"] == "gc_full_collection"]


def test_collector_sweeps_a_busy_server_whose_memory_grows(restored_gc: None) -> None:
    gc_tuning.freeze_survivors()
    gc_tuning.tune()

    async def scenario() -> tuple[list[MutableMapping[str, Any]], bool]:
        loop = asyncio.get_running_loop()
        collector = Collector(loop, lambda: 1, every=0.01, slack=20_000, count_every=2)
        leaked = [Cycle() for _ in range(20_000)]
        gone = weakref.ref(leaked[0])
        gc.collect()  # they survive it and are frozen
        collector.start()
        del leaked  # a cycle each: only a sweep frees them now
        with capture_logs() as logs:
            await asyncio.sleep(0.1)
        collector.stop()
        return logs, gone() is None

    logs, freed = asyncio.run(scenario())
    sweeps = [e for e in logs if e["event"] == "gc_sweep"]
    assert freed and sweeps and sweeps[0]["reason"] == "growth" and sweeps[0]["freed"] >= 20_000
