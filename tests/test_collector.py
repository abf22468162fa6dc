"""Collector settings for the server: start-up objects frozen, thresholds
raised, every full collection logged with its pause."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from pbx import collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    if collector._on_collection in gc.callbacks:
        gc.callbacks.remove(collector._on_collection)
    gc.unfreeze()


def test_freeze_tune_and_log_full_collections(restored_gc: None) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    kept = [Cycle() for _ in range(100)]
    collector.freeze_survivors()
    assert gc.get_freeze_count() >= len(kept)
    collector.tune()
    collector.tune()  # twice: still one callback
    assert gc.get_threshold() == collector.THRESHOLDS
    assert gc.callbacks.count(collector._on_collection) == 1
    for _ in range(10):
        Cycle()  # garbage only the collector can free
    with capture_logs() as logs:
        gc.collect(1)  # not a full one: not logged
        gc.collect()
    (logged,) = [e for e in logs if e["event"] == "gc_full_collection"]
    assert logged["pause_ms"] >= 0 and logged["frozen"] >= len(kept)
    assert logged["log_level"] in ("info", "warning")
