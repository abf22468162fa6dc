"""Group short numbers (集团短号): short numbers that mean people inside a
company group.

Several groups may exist, each with its own plan: ``601`` may be An in the
head-office group and Tài in the factory group. The caller's group decides,
so a caller in no group cannot use short numbers at all (to them ``601`` is
just digits). A member is a person: their extension (desk phone and
softphones register to it) and their mobile, reached through a trunk; or
a team: a hunt group, so the group's plan can give the sales line a short
number (``650`` rings hunt group 500 for head-office callers).

Rules kept here (pure: the engine asks and builds its decision):

- a caller's groups are tried in plan order, short numbers first in all of
  them, then long numbers (a member's extension or mobile, exactly as
  written in the group): dialling a member's long number from inside the
  group is an in-group call too;
- an ``in_group_only`` group keeps its members to calls inside the PBX, to
  its own members' numbers and to its ``allow_outside`` patterns; emergency
  numbers are never refused (the rights check asks :func:`outside_check`
  after it has let emergency calls through).

Membership edits happen in the dialplan or the group's members file
(``pbx group add|remove``), which a reload picks up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from pbx.routing.patterns import Pattern

RingPolicy = Literal["together", "desk_first"]
RING_POLICIES: Final[tuple[RingPolicy, ...]] = ("together", "desk_first")
DEFAULT_DESK_SECONDS: Final = 15


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One person in a group, under their short number."""

    short: str
    name: str = ""
    extension: str | None = None
    """Their extension number: every registered device of it rings."""
    mobile: str | None = None
    """Their mobile, written as the members of the group would dial it; it
    is classified, checked and routed like any outside number."""
    ring: RingPolicy = "together"
    """``together``: desk and mobile at once; ``desk_first``: the mobile
    joins after ``desk_seconds``."""
    desk_seconds: int = DEFAULT_DESK_SECONDS
    hunt_group: str | None = None
    """The hunt group this short number rings, instead of a person: it
    then has no extension or mobile of its own."""

    def __post_init__(self) -> None:
        if not self.short.isdigit() or not 2 <= len(self.short) <= 8:
            raise ValueError(f"short number {self.short!r} must be 2 to 8 digits")
        if self.hunt_group is not None:
            if self.extension is not None or self.mobile is not None:
                raise ValueError(f"member {self.short!r} is hunt group {self.hunt_group!r}:"
                                 " it has no extension or mobile of its own")
        elif self.extension is None and self.mobile is None:
            raise ValueError(f"member {self.short!r} needs an extension, a mobile or a hunt group")
        if self.ring not in RING_POLICIES:
            raise ValueError(f"member {self.short!r}: ring must be one of {', '.join(RING_POLICIES)}")
        if self.desk_seconds < 1:
            raise ValueError(f"member {self.short!r}: desk_seconds must be at least 1")

    def long_numbers(self) -> tuple[str, ...]:
        return tuple(n for n in (self.extension, self.mobile) if n is not None)

    @property
    def label(self) -> str:
        """``601 (Nguyễn Văn An)``, or just the short number without a name."""
        return f"{self.short} ({self.name})" if self.name else self.short


@dataclass(frozen=True, slots=True, kw_only=True)
class ShortNumberGroup:
    key: str
    name: str = ""
    members: Mapping[str, Member] = field(default_factory=dict)
    """Members by short number, in file order; read-only after construction."""
    in_group_only: bool = False
    """Members may call outside the PBX only to each other's numbers and to
    ``allow_outside`` (emergency numbers always)."""
    allow_outside: tuple[Pattern, ...] = ()
    """Number patterns members may still dial when ``in_group_only``."""
    members_file: str | None = None
    """The file holding (some of) the members, as the loader found it from
    the file that names it; ``pbx group add|remove`` edits it."""

    def __post_init__(self) -> None:
        if not isinstance(self.members, MappingProxyType):
            object.__setattr__(self, "members", MappingProxyType(dict(self.members)))
        seen: dict[str, str] = {}
        for short, member in self.members.items():
            if short != member.short:
                raise ValueError(f"group {self.key!r}: member stored under {short!r} has {member.short!r}")
            if member.extension is not None:
                if member.extension in seen:
                    raise ValueError(f"group {self.key!r}: extension {member.extension!r} is member"
                                     f" {seen[member.extension]!r} and {short!r}")
                seen[member.extension] = short

    @property
    def title(self) -> str:
        return f"{self.key} ({self.name})" if self.name else self.key

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
    """True when the short number was dialled, False for a long number."""

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
    mine = groups_of(extension, groups)
    for group, caller in mine:
        callee = group.members.get(dialled)
        if callee is not None:
            return InGroup(group=group, caller=caller, callee=callee, dialled_short=True)
    for group, caller in mine:
        callee = group.member_by_long_number(dialled)
        if callee is not None:
            return InGroup(group=group, caller=caller, callee=callee, dialled_short=False)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutsideCheck:
    """What one ``in_group_only`` group says about an outside number."""

    group: ShortNumberGroup
    allowed: bool
    rule: str
    """``groups.<key>.in_group_only``, ``groups.<key>.allow_outside[<i>]``
    or ``groups.<key>.members.<short>``."""
    why: str


def outside_check(extension: str, forms: tuple[str, ...],
                  groups: Mapping[str, ShortNumberGroup]) -> list[OutsideCheck]:
    """The verdict of each ``in_group_only`` group of ``extension`` on an
    outside number (``forms``: as dialled, and as the trunk would send it).

    A number passes a group if it is one of its members' numbers or matches
    one of its ``allow_outside`` patterns. The caller must pass every
    restricting group it is in; the first refusal decides.
    """
    checks = []
    for group, _ in groups_of(extension, groups):
        if not group.in_group_only:
            continue
        checks.append(_check_group(group, forms))
    return checks


def _check_group(group: ShortNumberGroup, forms: tuple[str, ...]) -> OutsideCheck:
    prefix = f"groups.{group.key}"
    for number in forms:
        member = group.member_by_long_number(number)
        if member is not None:
            return OutsideCheck(group=group, allowed=True, rule=f"{prefix}.members.{member.short}",
                                why=f"{number} is a number of member {member.label} of group {group.key!r},"
                                " which may call only inside the group")
    for index, pattern in enumerate(group.allow_outside):
        for number in forms:
            if pattern.matches(number):
                return OutsideCheck(group=group, allowed=True, rule=f"{prefix}.allow_outside[{index}]",
                                    why=f"{number} matches {pattern.text} on the allow_outside list of"
                                    f" group {group.key!r}")
    listed = ", ".join(pattern.text for pattern in group.allow_outside) or "none"
    return OutsideCheck(group=group, allowed=False, rule=f"{prefix}.in_group_only",
                        why=f"group {group.key!r} may call only inside the group; {forms[0]} is neither a"
                        f" member's number nor on its allow_outside list ({listed})")
