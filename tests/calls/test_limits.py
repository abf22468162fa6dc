"""The outside-call counter on its own (pbx.calls.limits): caps at once and
per minute, a sliding 60 s window with an exact Retry-After, releases
that cannot leak or go negative, and memory that holds only extensions
with a call up or a recent start."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.calls.limits import WINDOW, LimitHit, OutsideCallCounter, refusal
from pbx.routing.call_limits import CallerLimits, Limit


def caps(simultaneous: int, per_minute: int) -> CallerLimits:
    return CallerLimits(simultaneous=Limit(value=simultaneous, rule="extensions.1001.outside_calls.simultaneous"),
                        per_minute=Limit(value=per_minute, rule="security.outside_calls.per_minute"))


def test_calls_at_once_are_capped_and_an_ended_call_frees_its_slot() -> None:
    counter, limits = OutsideCallCounter(), caps(2, 100)
    assert counter.admit("1001", "a", limits, 0.0) is None
    assert counter.admit("1001", "b", limits, 0.1) is None
    hit = counter.admit("1001", "c", limits, 0.2)
    assert hit == LimitHit(limit="simultaneous", value=2, current=2,
                           rule="extensions.1001.outside_calls.simultaneous", retry_after=None)
    assert hit.reason == "outside_calls_simultaneous_limit"
    assert counter.admit("1002", "d", limits, 0.3) is None  # another extension has its own slots
    counter.release("a")
    assert counter.up("1001") == 1
    assert counter.admit("1001", "e", limits, 0.4) is None


def test_release_is_idempotent_and_ignores_calls_never_admitted() -> None:
    counter, limits = OutsideCallCounter(), caps(1, 100)
    assert counter.admit("1001", "a", limits, 0.0) is None
    counter.release("a")
    counter.release("a")
    counter.release("refused-or-internal")
    assert counter.up("1001") == 0
    assert counter.admit("1001", "b", limits, 1.0) is None
    assert counter.admit("1001", "c", limits, 1.0) is not None  # one up again: the double release did not free two


def test_the_rate_is_a_sliding_minute_with_an_exact_retry_after() -> None:
    counter, limits = OutsideCallCounter(), caps(100, 3)
    for handle, at in (("a", 0.0), ("b", 10.0), ("c", 20.5)):
        assert counter.admit("1001", handle, limits, at) is None
        counter.release(handle)
    hit = counter.admit("1001", "d", limits, 30.0)
    assert hit == LimitHit(limit="per_minute", value=3, current=3, rule="security.outside_calls.per_minute",
                           retry_after=30)  # the start at 0 leaves the window at 60
    # Still refused just before, where a bucket refilling a call every 20 s
    # would have let one through long ago.
    assert counter.admit("1001", "d", limits, 59.9) is not None
    assert counter.admit("1001", "d", limits, 60.0) is None
    hit = counter.admit("1001", "e", limits, 60.2)
    assert hit is not None and hit.retry_after == 10  # now the start at 10 is the oldest: 69.8 s left, rounded up


def test_refused_attempts_do_not_count() -> None:
    counter, limits = OutsideCallCounter(), caps(100, 1)
    assert counter.admit("1001", "a", limits, 0.0) is None
    for second in range(1, 60):
        assert counter.admit("1001", f"retry-{second}", limits, float(second)) is not None
    assert counter.started("1001", 59.0) == 1
    assert counter.admit("1001", "b", limits, 60.0) is None


def test_a_cap_lowered_below_the_count_waits_for_enough_starts_to_leave() -> None:
    counter = OutsideCallCounter()
    for index in range(5):
        assert counter.admit("1001", str(index), caps(100, 10), float(index)) is None
    hit = counter.admit("1001", "x", caps(100, 2), 10.0)  # a reload lowered it to 2
    # Starts at 0, 1, 2, 3, 4: below 2 once 0..3 have left, at 63.
    assert hit is not None and (hit.current, hit.retry_after) == (5, 53)
    assert counter.admit("1001", "x", caps(100, 2), 62.9) is not None
    assert counter.admit("1001", "x", caps(100, 2), 63.0) is None


def test_memory_holds_only_extensions_with_a_call_up_or_a_recent_start() -> None:
    counter, limits = OutsideCallCounter(), caps(4, 10)
    for number in range(10_000):
        extension = f"{10_000 + number}"
        assert counter.admit(extension, extension, limits, number / 1000) is None
        if number % 100:  # one call in a hundred stays up
            counter.release(extension)
    assert counter.tracked(10.0) == 10_000
    assert counter.tracked(10.0 + WINDOW) == 100
    for number in range(0, 10_000, 100):
        counter.release(f"{10_000 + number}")
    assert counter.tracked(10.0 + WINDOW) == 0


def test_refusal_is_486_with_reason_warning_and_retry_after_for_the_rate() -> None:
    rate = refusal(LimitHit(limit="per_minute", value=10, current=10, rule="security.outside_calls.per_minute",
                            retry_after=42), "pbx.example.com")
    assert (rate.status, str(rate.disposition), rate.reason) == (486, "REJECTED", "outside_calls_per_minute_limit")
    assert dict(rate.headers) == {
        "reason": 'SIP;cause=486;text="outside_calls_per_minute_limit"',
        "warning": '399 pbx.example.com "security.outside_calls.per_minute: at most 10 outside calls a minute"',
        "retry-after": "42",
    }
    at_once = refusal(LimitHit(limit="simultaneous", value=4, current=4, rule="security.outside_calls.simultaneous"), "pbx.example.com")
    assert at_once.reason == "outside_calls_simultaneous_limit"
    assert "retry-after" not in dict(at_once.headers)  # no one can tell when a call ends


# ---------------------------------------------------------------- property

Step = tuple[str, int, float]  # ("admit" | "release", extension index, seconds later)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["admit", "release"]), st.integers(0, 3),
                          st.floats(0, 30, allow_nan=False)), max_size=120),
       st.integers(1, 3), st.integers(1, 5))
def test_counts_match_a_plain_model_and_never_pass_the_caps(steps: list[Step], at_once: int,
                                                            per_minute: int) -> None:
    counter, limits, now = OutsideCallCounter(), caps(at_once, per_minute), 0.0
    held: dict[str, list[str]] = {}
    starts: dict[str, list[float]] = {}
    handles = iter(range(10**6))
    for action, index, later in steps:
        now += later
        extension = f"10{index:02d}"
        recent = [t for t in starts.get(extension, []) if t > now - WINDOW]
        if action == "admit":
            handle = f"call-{next(handles)}"
            hit = counter.admit(extension, handle, limits, now)
            up = len(held.get(extension, []))
            expected = "simultaneous" if up >= at_once else "per_minute" if len(recent) >= per_minute else None
            assert (hit.limit if hit is not None else None) == expected
            if hit is None:
                held.setdefault(extension, []).append(handle)
                starts.setdefault(extension, []).append(now)
            elif hit.retry_after is not None:
                # After retry_after seconds the window has room; a second earlier it had not.
                assert min(recent) + WINDOW - now <= hit.retry_after < min(recent) + WINDOW - now + 1
        elif held.get(extension):
            counter.release(held[extension].pop(0))
        assert counter.up(extension) == len(held.get(extension, [])) <= at_once
    assert counter.tracked(now + WINDOW + 1) == sum(1 for calls in held.values() if calls)
