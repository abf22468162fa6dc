"""Collector settings for the server: start-up objects frozen, thresholds
raised, every full collection logged with its pause."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from pbx.server import gc_tuning


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    if gc_tuning._on_collection in gc.callbacks:
        gc.callbacks.remove(gc_tuning._on_collection)
    gc.unfreeze()


def test_freeze_tune_and_log_full_collections(restored_gc: None) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    kept = [Cycle() for _ in range(100)]
    gc_tuning.freeze_survivors()
    assert gc.get_freeze_count() >= len(kept)
    gc_tuning.tune()
    gc_tuning.tune()  # twice: still one callback
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.callbacks.count(gc_tuning._on_collection) == 1
    for _ in range(10):
        Cycle()  # garbage only the collector can free
    with capture_logs() as logs:
        gc.collect(1)  # not a full one: not logged
        gc.collect()
    (logged,) = [e for e in logs if e["event"] == "gc_full_collection"]
    assert logged["pause_ms"] >= 0 and logged["frozen"] >= len(kept)
    assert logged["log_level"] in ("info", "warning")
