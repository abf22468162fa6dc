"""A room's state: admission (full, locked), two-key commands, moderator
rights, and dropping the last who joined."""

from __future__ import annotations

import pytest

from pbx.conference.room import COMMAND_SECONDS, Drop, Refusal, Room, RoomAction, Said


def press(room: Room, member: int, keys: str, now: float = 0.0) -> list[RoomAction]:
    actions: list[RoomAction] = []
    for key in keys:
        actions += room.press(member, key, now)
    return actions


def test_a_full_room_refuses_even_a_moderator() -> None:
    room = Room("team", max_members=2)
    assert room.join(1, moderator=False) is None
    assert room.join(2, moderator=False) is None
    assert room.join(3, moderator=True) is Refusal.FULL
    assert list(room.members) == [1, 2]


def test_star_six_mutes_and_unmutes_oneself() -> None:
    room = Room("team", max_members=5)
    room.join(1, moderator=False)
    assert press(room, 1, "*6") == [Said(1, "conference_muted")]
    assert not room.speaking(1)
    assert press(room, 1, "*6") == [Said(1, "conference_unmuted")]
    assert room.speaking(1)


@pytest.mark.parametrize("keys", ["6", "5", "#6", "**", "1234"])
def test_keys_that_are_no_command_do_nothing(keys: str) -> None:
    room = Room("team", max_members=5)
    room.join(1, moderator=True)
    assert press(room, 1, keys) == []
    assert room.speaking(1) and not room.locked


def test_the_command_key_must_follow_the_star_soon() -> None:
    room = Room("team", max_members=5)
    room.join(1, moderator=False)
    room.press(1, "*", 10.0)
    assert room.press(1, "6", 10.0 + COMMAND_SECONDS + 0.1) == []
    assert room.speaking(1)


def test_only_a_moderator_locks_and_a_locked_room_takes_only_moderators() -> None:
    room = Room("team", max_members=5)
    room.join(1, moderator=False)
    room.join(2, moderator=True)
    assert press(room, 1, "*5") == [Said(1, "conference_moderator_only")]
    assert not room.locked
    assert press(room, 2, "*5") == [Said(2, "conference_locked")]
    assert room.join(3, moderator=False) is Refusal.LOCKED
    assert room.join(4, moderator=True) is None
    assert press(room, 2, "*5") == [Said(2, "conference_unlocked")]
    assert room.join(5, moderator=False) is None


def test_the_lock_goes_with_the_last_moderator() -> None:
    room = Room("team", max_members=5)
    room.join(1, moderator=False)
    room.join(2, moderator=True)
    press(room, 2, "*5")
    room.leave(2)
    assert not room.locked


def test_a_moderator_drops_the_last_member_who_joined_never_a_moderator() -> None:
    room = Room("team", max_members=5)
    room.join(1, moderator=False)
    room.join(2, moderator=True)
    room.join(3, moderator=False)
    room.join(4, moderator=True)
    assert press(room, 2, "*7") == [Drop(3), Said(2, "conference_dropped")]
    room.leave(3)
    assert press(room, 2, "*7") == [Drop(1), Said(2, "conference_dropped")]
    room.leave(1)
    assert press(room, 2, "*7") == [Said(2, "conference_nobody_to_drop")]
    assert press(room, 1, "*7") == []  # gone: their keys mean nothing


def test_a_member_cannot_drop_anyone() -> None:
    room = Room("team", max_members=5)
    room.join(1, moderator=False)
    room.join(2, moderator=False)
    assert press(room, 1, "*7") == [Said(1, "conference_moderator_only")]
    assert list(room.members) == [1, 2]
