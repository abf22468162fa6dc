"""Hunt group queues, the pure bookkeeping: arrival order, places moving up,
a full queue, callers rung and back, their timers, and what is said."""

from __future__ import annotations

from pbx.calls.hunt_queue import RETRY, HuntQueues, position_phrase
from pbx.routing.hunt_groups import QueueSettings

SETTINGS = QueueSettings(max_wait=60, max_length=3)


def test_callers_wait_in_arrival_order_and_move_up() -> None:
    queues = HuntQueues()
    first = queues.join("500", "a", "busy", SETTINGS, "internal", 0.0)
    second = queues.join("500", "b", "busy", SETTINGS, "internal", 1.0)
    other = queues.join("501", "c", "no_answer", SETTINGS, "inbound", 2.0)
    assert first is not None and second is not None and other is not None
    assert [queues.position(e) for e in (first, second, other)] == [1, 2, 1]
    assert [e.key for e in queues.waiting("500")] == ["a", "b"]
    queues.leave(first)
    assert queues.position(second) == 1 and queues.position(first) is None
    assert queues.groups() == ["500", "501"] and len(queues) == 2
    queues.leave(second)
    queues.leave(second)  # twice is harmless
    assert queues.groups() == ["501"]


def test_a_full_queue_refuses_the_next_caller() -> None:
    queues = HuntQueues()
    joined = [queues.join("500", key, "busy", SETTINGS, "internal", 0.0) for key in "abc"]
    assert all(joined)
    assert queues.join("500", "d", "busy", SETTINGS, "internal", 0.0) is None
    assert queues.join("501", "d", "busy", QueueSettings(max_length=1), "internal", 0.0) is not None


def test_a_caller_being_put_through_is_skipped_and_keeps_its_place_if_nobody_answers() -> None:
    queues = HuntQueues()
    first = queues.join("500", "a", "busy", SETTINGS, "internal", 0.0)
    second = queues.join("500", "b", "busy", SETTINGS, "internal", 0.0)
    assert first is not None and second is not None
    queues.ringing(first)
    assert [e.key for e in queues.waiting("500")] == ["b"]
    assert queues.position(second) == 2  # still behind the one being rung for
    queues.not_answered(first, 20.0)
    assert [e.key for e in queues.waiting("500")] == ["a", "b"]
    assert first.retry_due == 20.0 + RETRY


def test_a_callers_timer_is_its_next_offer_or_its_longest_wait() -> None:
    queues = HuntQueues()
    entry = queues.join("500", "a", "busy", QueueSettings(max_wait=8), "internal", 100.0)
    assert entry is not None
    assert (entry.expires, entry.deadline()) == (108.0, 100.0 + RETRY)
    queues.retried(entry, 104.0)
    assert entry.deadline() == 108.0  # the wait ends before the next offer
    queues.ringing(entry)
    assert entry.deadline() == 108.0


def test_what_a_caller_hears_of_its_place() -> None:
    assert [position_phrase(n) for n in (1, 2, 9)] == ["queue_position_1", "queue_position_2", "queue_position_9"]
    assert position_phrase(10) == position_phrase(0) == "queue_position_many"
