"""Ringing a hunt group: who rings, in which order, for how long.

Pure: the registered contacts, the agents' state (:class:`HuntView`), who is
on a call and the random source all come in; the result is a
:class:`~pbx.calls.plan.Ring` for the fork engine, or the condition the
group overflows on.

Rules:

- a member who is logged out, has no registered contact (an outside member:
  whose leg the group's rights refused) or, with ``skip_busy``, is on a
  call, is skipped at once: no ring time is spent on them. Nobody left:
  ``nobody_logged_in`` if no member is logged in, else ``none_registered``
  if none of those is registered, else ``busy``;
- tiers ring in order (tier 1 first); within a tier the strategy orders the
  members (see :mod:`pbx.routing.hunt_groups`); ``ring_all`` rings a tier at
  once, the others one member after the other;
- each stage after the first is ``chained``: it starts once everything
  before it has ended (rang out, refused), never while a member before it
  still rings; each member is cancelled after its ring time (``ring_for``); the sequential
  strategies go round again while the group's time lasts (at most
  ``MAX_ROUNDS`` times), ``ring_all`` rings each tier once;
- members see who calls and through which group: ``"Sales: 0912345678"``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pbx.calls.fork import ContactTarget, Target, TrunkTarget
from pbx.registrar.bindings import Binding
from pbx.routing.engine import Hunt, ToTrunk
from pbx.routing.hunt_groups import MAX_ROUNDS, Condition, HuntGroup, HuntMember
from pbx.trunks.outbound import TrunkDialling
from pbx.routing.trunk_config import Trunk


class HuntView(Protocol):
    """What the planner reads of the agents' lasting state."""

    def logged_in(self, group: str, member: str) -> bool: ...

    def last_member(self, group: str) -> str | None:
        """The member who last took a call of ``group`` (circular)."""

    def idle_since(self, member: str) -> float | None:
        """Wall-clock seconds the member's last group call ended; None: never."""

    def calls_today(self, group: str, member: str, day: str) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HuntRing:
    """What the call keeps of the group it rings: for overflow and the CDR."""

    group: HuntGroup
    call_class: str
    order: tuple[str, ...]
    """The members in the order they are rung (first round), for the log."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    """Nobody in ``group`` can take the call, for this reason."""

    group: HuntGroup
    condition: Condition
    call_class: str
    skipped: tuple[tuple[str, str], ...] = ()
    """(member, why) for the log."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Available:
    """Members that may ring, and who was skipped and why."""

    members: tuple[HuntMember, ...]
    skipped: tuple[tuple[str, str], ...]


def available(group: HuntGroup, view: HuntView, contacts: Callable[[str], list[Binding]],
              busy: Callable[[str], bool], outside: Sequence[str]) -> Available | Condition:
    """The members that may ring now, or the condition when none may."""
    ready: list[HuntMember] = []
    skipped: list[tuple[str, str]] = []
    logged = registered = 0
    for member in group.members:
        if not view.logged_in(group.number, member.key):
            skipped.append((member.key, "logged_out"))
            continue
        logged += 1
        reachable = bool(contacts(member.extension)) if member.extension is not None else member.key in outside
        if not reachable:
            skipped.append((member.key, "not_registered"))
            continue
        registered += 1
        if group.skip_busy and member.extension is not None and busy(member.extension):
            skipped.append((member.key, "busy"))
            continue
        ready.append(member)
    if ready:
        return Available(members=tuple(ready), skipped=tuple(skipped))
    if logged == 0:
        return "nobody_logged_in"
    return "none_registered" if registered == 0 else "busy"


def order_tier(group: HuntGroup, members: Sequence[HuntMember], view: HuntView, rng: random.Random,
               day: str) -> list[HuntMember]:
    """``members`` (one tier, in plan order) in the order the strategy rings them."""
    position = {member.key: index for index, member in enumerate(group.members)}
    match group.strategy:
        case "linear" | "ring_all":
            return list(members)
        case "circular":
            # Start after the member who last took a call, counting round the
            # whole list (a member skipped now does not shift the others).
            last = view.last_member(group.number)
            start = position[last] + 1 if last in position else 0
            size = len(group.members)
            return sorted(members, key=lambda m: (position[m.key] - start) % size)
        case "longest_idle":
            never = float("-inf")
            return sorted(members, key=lambda m: (view.idle_since(m.key) or never, position[m.key]))
        case "fewest_calls":
            return sorted(members, key=lambda m: (view.calls_today(group.number, m.key, day), position[m.key]))
        case "random":
            # Weighted order without replacement (Efraimidis and Spirakis):
            # key u^(1/w), largest first.
            keyed = [(rng.random() ** (1.0 / member.weight), member) for member in members]
            return [member for _, member in sorted(keyed, key=lambda pair: pair[0], reverse=True)]


def stages(group: HuntGroup, members: Sequence[HuntMember], view: HuntView, rng: random.Random,
           day: str) -> list[tuple[HuntMember, ...]]:
    """The stages of the first round: tier by tier, one member a stage, or
    a whole tier for ``ring_all``."""
    out: list[tuple[HuntMember, ...]] = []
    for tier in sorted({member.tier for member in members}):
        ordered = order_tier(group, [m for m in members if m.tier == tier], view, rng, day)
        if group.strategy == "ring_all":
            out.append(tuple(ordered))
        else:
            out.extend((member,) for member in ordered)
    return out


def display(group: HuntGroup, caller_number: str) -> str:
    """What a member's phone shows: the group, then who calls."""
    return f"{group.name}: {caller_number}"


def plan_hunt(decision: Hunt, *, caller_number: str, domain: str, trunks: Mapping[str, Trunk],
              view: HuntView, contacts: Callable[[str], list[Binding]], busy: Callable[[str], bool],
              rng: random.Random, day: str) -> tuple[list[Target], HuntRing] | Unavailable:
    """The fork targets that ring ``decision.group`` now, or why nobody can."""
    group = decision.group
    outside: dict[str, ToTrunk] = dict(decision.outside)
    found = available(group, view, contacts, busy, list(outside))
    if not isinstance(found, Available):
        return Unavailable(group=group, condition=found, call_class=decision.call_class)
    first = stages(group, found.members, view, rng, day)
    shown = display(group, caller_number)
    from_uri = f'"{_quote(shown)}" <sip:{caller_number}@{domain}>'
    targets: list[Target] = []
    after = 0.0
    rounds = 1 if group.strategy == "ring_all" else MAX_ROUNDS
    for _ in range(rounds):
        for stage in first:
            if after >= group.total_seconds:
                break
            for member in stage:
                ring_for = float(group.ring_seconds(member))
                if member.extension is not None:
                    targets.extend(ContactTarget(binding=binding, extension=member.extension, from_uri=from_uri,
                                                 after=after, ring_for=ring_for, member=member.key,
                                                 chained=after > 0)
                                   for binding in contacts(member.extension))
                else:
                    leg = outside[member.key]
                    trunk = trunks.get(leg.trunk)
                    if trunk is not None:
                        caller_id = leg.caller_id or trunk.caller_id or caller_number
                        targets.append(TrunkTarget(dialling=TrunkDialling(trunk=trunk, number=leg.number,
                                                                          caller_id=caller_id),
                                                   after=after, ring_for=ring_for, member=member.key,
                                                   chained=after > 0))
            after += max(group.ring_seconds(member) for member in stage)
    return targets, HuntRing(group=group, call_class=decision.call_class,
                             order=tuple(member.key for stage in first for member in stage))


def _quote(text: str) -> str:
    printable = "".join(char if char >= " " and char != "\x7f" else " " for char in text)[:120]
    return printable.replace("\\", "\\\\").replace('"', '\\"')
