"""Group short numbers (集团短号): short numbers that mean people inside a
company group.

Several groups may exist, each with its own plan: ``601`` may be An in the
head-office group and Binh in the factory group. The caller's group decides,
so a caller in no group cannot use short numbers at all (to them ``601`` is
just digits). A member is a person: their extension (desk phone and
softphones register to it) and their mobile, reached through a trunk.

Pure: the engine asks :func:`resolve` and builds its decision from the
answer; membership edits happen in the member files, which a reload picks up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

RingPolicy = Literal["together", "desk_first"]
RING_POLICIES: Final = ("together", "desk_first")


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One person in a group, under their short number."""

    short: str
    name: str = ""
    extension: str | None = None
    mobile: str | None = None
    """Full external number, dialled through a trunk like any other."""
    ring: RingPolicy = "together"
    desk_seconds: int = 15
    """With ``desk_first``: how long the extension rings before the mobile."""

    def __post_init__(self) -> None:
        if not self.short.isdigit() or not 2 <= len(self.short) <= 8:
            raise ValueError(f"short number {self.short!r} must be 2 to 8 digits")
        if self.extension is None and self.mobile is None:
            raise ValueError(f"member {self.short!r} needs an extension or a mobile")
        if self.ring not in RING_POLICIES:
            raise ValueError(f"member {self.short!r}: ring must be one of {', '.join(RING_POLICIES)}")
        if self.desk_seconds < 1:
            raise ValueError(f"member {self.short!r}: desk_seconds must be at least 1")

    def long_numbers(self) -> tuple[str, ...]:
        return tuple(n for n in (self.extension, self.mobile) if n is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShortNumberGroup:
    key: str
    name: str = ""
    members: Mapping[str, Member] = field(default_factory=dict)
    """Members by short number; read-only after construction."""
    in_group_only: bool = False
    """Members may call only each other, plus ``allow_outside``."""
    allow_outside: tuple[str, ...] = ()
    """Number patterns members may still dial when ``in_group_only``."""
    members_file: str | None = None
    """File holding the members, managed by ``pbx group add|remove``."""

    def __post_init__(self) -> None:
        if not isinstance(self.members, MappingProxyType):
            object.__setattr__(self, "members", MappingProxyType(dict(self.members)))
        for short, member in self.members.items():
            if short != member.short:
                raise ValueError(f"group {self.key!r}: member stored under {short!r} has {member.short!r}")

    def member_by_long_number(self, number: str) -> Member | None:
        """The member whose extension or mobile is ``number``, if any."""
        for member in self.members.values():
            if number in member.long_numbers():
                return member
        return None

    def member_for_extension(self, extension: str) -> Member | None:
        for member in self.members.values():
            if member.extension == extension:
                return member
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class InGroup:
    """A call between two members of ``group``."""

    group: ShortNumberGroup
    caller: Member
    callee: Member
    dialled_short: bool
    """True when the short number was dialled, False for the long number."""

    @property
    def presented(self) -> str:
        """What the callee sees as the caller's number: their short number."""
        return self.caller.short


def groups_of(extension: str, groups: Mapping[str, ShortNumberGroup]) -> list[tuple[ShortNumberGroup, Member]]:
    """The groups ``extension`` belongs to, with its member record, in plan order."""
    found = []
    for group in groups.values():
        member = group.member_for_extension(extension)
        if member is not None:
            found.append((group, member))
    return found


def resolve(extension: str, dialled: str, groups: Mapping[str, ShortNumberGroup]) -> InGroup | None:
    """Whether a call from ``extension`` to ``dialled`` is an in-group call.

    The caller's groups are tried in plan order; in each, a short number is
    looked up first, then the long numbers (extension or mobile) of the
    members, since dialling a member's long number from inside the group
    also counts as an in-group call.
    """
    for group, caller in groups_of(extension, groups):
        callee = group.members.get(dialled)
        if callee is not None:
            return InGroup(group=group, caller=caller, callee=callee, dialled_short=True)
    for group, caller in groups_of(extension, groups):
        callee = group.member_by_long_number(dialled)
        if callee is not None:
            return InGroup(group=group, caller=caller, callee=callee, dialled_short=False)
    return None
