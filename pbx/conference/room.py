"""A meet-me room while people are in it, pure: who is in, who is muted,
who moderates, whether it is locked, and what a member's keys do.

Rules it keeps:

- a room admits up to its ``max_members``; when full, the caller is
  refused (the glue says so and hangs up). A locked room admits
  moderators only (a moderator who stepped out can come back in);
- a member's keys are two-key commands: ``*`` and then a key within
  :data:`COMMAND_SECONDS`. Any other key, and a ``*`` left alone, does
  nothing (phones send stray keys; a member typing on the keypad must not
  change the room):

  ======  ==========================  =================
  keys    what                         who
  ======  ==========================  =================
  ``*6``  mute / unmute oneself        every member
  ``*5``  lock / unlock the room       moderators
  ``*7``  drop the last who joined     moderators
  ======  ==========================  =================

- "the last who joined" is the latest member still in the room other than
  the moderator pressing it (a moderator never drops themself, and never
  another moderator: moderators are equals);
- a non-moderator pressing a moderator's keys is told so; nothing changes.

The glue (:mod:`pbx.conference.bridge`) carries out the actions: plays a
prompt to one member, ends a dropped member's call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

COMMAND_SECONDS: Final = 3.0
"""How long after ``*`` the command key may come."""
MUTE_KEY: Final = "6"
LOCK_KEY: Final = "5"
DROP_KEY: Final = "7"


class Refusal(enum.Enum):
    FULL = "full"
    LOCKED = "locked"


@dataclass(slots=True)
class Member:
    id: int
    moderator: bool
    muted: bool = False
    star_at: float | None = None
    """When the member pressed ``*`` (a command's first key), if lately."""


@dataclass(frozen=True, slots=True)
class Said:
    """Tell ``member`` something (a prompt name)."""

    member: int
    phrase: str


@dataclass(frozen=True, slots=True)
class Drop:
    """End ``member``'s call: a moderator dropped them."""

    member: int


RoomAction = Said | Drop


@dataclass(slots=True)
class Room:
    """One room's people; ``max_members`` from the dialplan."""

    key: str
    max_members: int
    locked: bool = False
    members: dict[int, Member] = field(default_factory=dict)
    """In joining order (dicts keep insertion order)."""

    def refusal(self, *, moderator: bool) -> Refusal | None:
        """Why a caller could not join now, or None when they could."""
        if len(self.members) >= self.max_members:
            return Refusal.FULL
        if self.locked and not moderator:
            return Refusal.LOCKED
        return None

    def join(self, member_id: int, *, moderator: bool) -> Refusal | None:
        """Let ``member_id`` in, or say why not."""
        refused = self.refusal(moderator=moderator)
        if refused is None:
            self.members[member_id] = Member(member_id, moderator)
        return refused

    def leave(self, member_id: int) -> bool:
        """``member_id`` left; True when they were in. The lock goes with the
        last moderator: a room must never stay locked with nobody to open it."""
        gone = self.members.pop(member_id, None)
        if gone is None:
            return False
        if self.locked and not any(m.moderator for m in self.members.values()):
            self.locked = False
        return True

    @property
    def empty(self) -> bool:
        return not self.members

    def speaking(self, member_id: int) -> bool:
        member = self.members.get(member_id)
        return member is not None and not member.muted

    def press(self, member_id: int, key: str, now: float) -> list[RoomAction]:
        """A key from ``member_id`` at ``now``: what it does (see the table above)."""
        member = self.members.get(member_id)
        if member is None:
            return []
        if key == "*":
            member.star_at = now
            return []
        started, member.star_at = member.star_at, None
        if started is None or now - started > COMMAND_SECONDS:
            return []
        if key == MUTE_KEY:
            member.muted = not member.muted
            return [Said(member_id, "conference_muted" if member.muted else "conference_unmuted")]
        if key not in (LOCK_KEY, DROP_KEY):
            return []
        if not member.moderator:
            return [Said(member_id, "conference_moderator_only")]
        if key == LOCK_KEY:
            self.locked = not self.locked
            return [Said(member_id, "conference_locked" if self.locked else "conference_unlocked")]
        last = next((m for m in reversed(self.members.values()) if m.id != member_id and not m.moderator), None)
        if last is None:
            return [Said(member_id, "conference_nobody_to_drop")]
        return [Drop(last.id), Said(member_id, "conference_dropped")]
