"""Conference PINs: the roles they give, hashes only, lock-out per source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pbx.accountcodes.lockout import LockoutPolicy
from pbx.conference.pins import PinGate
from pbx.routing.conferences import Conference, PinHash

NOW = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)
ROOM = Conference(key="team", number="850", pin=PinHash.of("4321", "team"),
                  moderator_pin=PinHash.of("98765", "team"))


def test_the_pin_makes_a_member_and_the_moderator_pin_a_moderator() -> None:
    assert ROOM.role_for("4321") == "member"
    assert ROOM.role_for("98765") == "moderator"
    assert ROOM.role_for("1234") is None
    assert ROOM.role_for("") is None


def test_a_room_with_only_a_moderator_pin_lets_members_in_with_hash_alone() -> None:
    room = Conference(key="open", number="851", moderator_pin=PinHash.of("98765", "open"))
    assert room.asks_pin
    assert room.role_for("") == "member"
    assert room.role_for("98765") == "moderator"
    assert room.role_for("1111") is None


def test_the_plan_object_never_shows_a_pin() -> None:
    assert "4321" not in repr(ROOM) and "98765" not in repr(ROOM)
    assert PinHash.of("4321", "team") != PinHash.of("4321", "other")  # the room salts it


def test_wrong_pins_lock_the_source_out_and_a_right_one_then_is_not_compared() -> None:
    gate = PinGate(LockoutPolicy(failures=3, window=600, lock_seconds=900))
    assert gate.check(ROOM, "0000", "ext:1001", NOW) == "invalid"
    assert gate.check(ROOM, "0001", "ext:1001", NOW) == "invalid"
    assert gate.check(ROOM, "0002", "ext:1001", NOW) == "locked"
    assert gate.check(ROOM, "4321", "ext:1001", NOW + timedelta(seconds=60)) == "locked"
    assert gate.check(ROOM, "4321", "ext:1002", NOW) == "member"  # another source
    assert gate.check(ROOM, "4321", "ext:1001", NOW + timedelta(seconds=901)) == "member"


def test_a_right_pin_clears_the_count() -> None:
    gate = PinGate(LockoutPolicy(failures=3, window=600, lock_seconds=900))
    for _ in range(5):
        assert gate.check(ROOM, "0000", "ext:1001", NOW) == "invalid"
        assert gate.check(ROOM, "0000", "ext:1001", NOW) == "invalid"
        assert gate.check(ROOM, "98765", "ext:1001", NOW) == "moderator"
    assert not gate.locked("ext:1001", NOW)
