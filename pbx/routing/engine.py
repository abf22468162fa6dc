"""Routing: a pure function from a call request to a decision.

No I/O and no clock: the caller passes everything in, the time included
(``CallRequest.at``). The calling path runs the decision with ``match`` and
``assert_never``, so a new decision type (ring a group of targets, ask for
an account code, run an IVR — later issues) fails type-checking until the
controller handles it.

A call from an extension, in order (the first step that decides wins):

1. the dialled string must be a number (digits, ``*``, ``#``, ``+``): else 404;
2. a reserved feature code: 501 (the feature is not built yet);
3. a short number of one of the caller's groups, or the long number
   (extension or mobile) of a member of one of them: :class:`RingMember`
   (see :mod:`pbx.routing.short_numbers`; a caller in no group has no
   short numbers, so to them the digits go on to the next steps);
4. an extension number: internal, :class:`Ring` (unless its class of
   service denies internal calls: 403);
5. otherwise the caller's number plan gives the call class of the whole
   number and its E.164 form, and the first route that applies gives the
   trunk and what it will be sent (:func:`pbx.routing.outside.prepare`:
   404 ``unknown_number``, 484 ``incomplete_number``, 404
   ``malformed_number`` …); the rights of the caller
   (:func:`pbx.routing.rights.check_class`, lists matched on the E.164
   form) may refuse it: 403 with the rule; no route: 404 ``no_route`` — a
   gap in the configuration, which retrying will not fill; 503 is left to
   the trunk runtime for gateways that fail); :class:`ToTrunk` with the
   number rewritten for that trunk, always E.164 or national digits.

A call from a trunk may only reach a DID listed under ``inbound``: a DID
rings its target; anything else is refused — 403 ``relay_denied`` if it is
an outside number (no open relay through the PBX), 404 ``unknown_did``
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pbx.routing.classes import EMERGENCY, INBOUND, INTERNAL
from pbx.routing.dialplan import Dialplan, Extension, ExtensionState
from pbx.routing.numbering import sendable
from pbx.routing.outside import Refusal, prepare
from pbx.routing.patterns import is_dialable
from pbx.routing.rights import check_class
from pbx.routing.screening import Screening, caller_forms, screen
from pbx.routing.short_numbers import InGroup, Member, RingPolicy, resolve
from pbx.routing.steps import Step

__all__ = ["CallRequest", "Decision", "Reject", "Ring", "RingMember", "Step", "ToTrunk", "decide"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRequest:
    caller: Extension | None
    """The authenticated extension, never the From header; None for a call
    that came in from a trunk."""
    dialled: str
    at: datetime
    """Aware datetime; the engine converts it to the plan's time zone."""
    trunk: str | None = None
    """Key of the trunk an inbound call came from (then ``dialled`` is the
    DID); None for a call from an extension."""
    caller_number: str = ""
    """The number the caller presents: the extension number, or for an
    inbound call the From user as the provider sent it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring:
    """Ring every registered contact of ``extension`` in parallel."""

    extension: Extension
    rule: str
    call_class: str = "internal"
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ToTrunk:
    """Place the call through ``trunk`` to ``number`` (already rewritten as
    the provider expects), presenting ``caller_id``."""

    trunk: str
    number: str
    """Well-formed E.164 or national digits (checked on construction)."""
    caller_id: str | None
    rule: str
    call_class: str
    steps: tuple[Step, ...] = ()
    e164: str | None = None
    """The E.164 form the lists were matched on (None for emergency numbers)."""

    def __post_init__(self) -> None:
        if not sendable(self.number):
            raise ValueError(f"{self.number!r} is neither an E.164 nor a national number")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    status: int
    reason: str
    """snake_case tag, also written to the CDR."""
    rule: str
    call_class: str | None = None
    steps: tuple[Step, ...] = ()
    detail: str = ""
    """Why, in words for a person (the deciding step's outcome); the
    controller sends it in a Warning header."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RingMember:
    """Ring a member of a short-number group: their extension's registered
    contacts and/or a leg through a trunk to their mobile.

    Dialling the short number rings what the member has, as their ``ring``
    policy says (``desk_first``: the mobile joins after ``desk_seconds``);
    dialling one long number rings just that. The mobile leg is an outside
    call placed for the caller: classified, checked against the caller's
    rights, routed and rewritten like one they dialled (a leg the caller
    may not place is dropped, and the steps say why).
    """

    group: str
    """Key of the group the callee was found in (the caller's group)."""
    member: Member
    dialled: str
    short_dialled: bool
    """True for the short number, False for a long number."""
    extension: Extension | None
    """The desk leg: the member's extension, or None (no extension, not
    dialled, or not allowed)."""
    mobile: ToTrunk | None
    """The mobile leg, ready for the trunk, or None."""
    order: RingPolicy
    """``together`` or ``desk_first`` (only when both legs are there)."""
    desk_seconds: int
    presented_number: str
    """The caller's short number in the group, shown on the desk leg."""
    rule: str
    call_class: str
    """``internal`` while a desk leg is there; the mobile's class otherwise."""
    steps: tuple[Step, ...] = ()

    @property
    def resolved_number(self) -> str:
        """The number the call resolved to first: the desk, else the mobile."""
        if self.extension is not None:
            return self.extension.number
        return self.member.mobile or self.dialled


Decision = Ring | RingMember | ToTrunk | Reject




def decide(call: CallRequest, plan: Dialplan) -> Decision:
    """Where a call goes, and the chain of rules that says so."""
    if call.trunk is not None:
        return _from_trunk(call, plan)
    if call.caller is None:
        return _reject(403, "unauthenticated", "sources", [], "a call from no extension and no trunk")
    return _from_extension(call, call.caller, plan)


def _reject(status: int, reason: str, rule: str, steps: list[Step], outcome: str,
            call_class: str | None = None) -> Reject:
    steps.append(Step(rule=rule, outcome=outcome))
    return Reject(status=status, reason=reason, rule=rule, call_class=call_class, steps=tuple(steps),
                  detail=outcome)


def _from_extension(call: CallRequest, caller: Extension, plan: Dialplan) -> Decision:
    number = call.dialled
    department = plan.departments[caller.department]
    steps = [Step(rule=f"extensions.{caller.number}",
                  outcome=f"caller {caller.number} ({caller.name}), department {department.key!r}")]
    if not is_dialable(number):
        return _reject(404, "invalid_number", "dialled", steps,
                       f"{number!r} is not a number (digits, *, #, + only)")
    if number in plan.feature_codes:
        return _reject(501, "feature_not_available", f"feature_codes.{number}", steps,
                       f"{number} is reserved for {plan.feature_codes[number]!r}, not available yet")
    inactive = _inactive(caller, call.at)
    if inactive is not None and not _is_emergency(number, caller, plan):
        state, rule, why = inactive
        return _reject(403, f"caller_{state}", rule, steps, f"caller {caller.number} {why}: it may not call"
                       " (emergency numbers excepted)")

    internal = _internal_destination(call, caller, plan, steps)
    if internal is not None:
        return internal
    return _outside(number, caller, plan, call.at, steps)


def _outside(number: str, caller: Extension, plan: Dialplan, at: datetime, steps: list[Step]) -> ToTrunk | Reject:
    """An outside number dialled by ``caller`` (or placed on their behalf):
    classified by their number plan, checked against their rights, routed
    and rewritten for the trunk."""
    department = plan.departments[caller.department]
    prepared = prepare(plan, caller, number, tuple(steps))
    if isinstance(prepared, Refusal):
        return Reject(status=prepared.status, reason=prepared.reason, rule=prepared.rule,
                      call_class=prepared.call_class, steps=prepared.steps, detail=prepared.detail)
    call_class = prepared.call_class
    number = prepared.number  # the plan's own form of a number dialled in E.164
    verdict = check_class(plan, caller, number, call_class, at, steps=prepared.steps, forms=prepared.forms,
                          e164=prepared.e164)
    steps = list(verdict.steps)
    if not verdict.allowed:
        return Reject(status=403, reason=verdict.reason, rule=verdict.rule, call_class=call_class,
                      steps=verdict.steps, detail=verdict.steps[-1].outcome)
    route, trunk, sent = prepared.route, prepared.trunk, prepared.sent
    if route is None or trunk is None or sent is None:
        return _reject(404, "no_route", "routes", steps,
                       f"no route takes {call_class} number {number} from department {department.key!r}",
                       call_class)
    steps.append(Step(rule=route.rule, outcome=f"{route.describe()}: through trunk {trunk.key}"))
    found = trunk.rewrite_for(number)
    if found is not None:
        index, rewrite = found
        steps.append(Step(
            rule=f"trunks.{trunk.key}.rewrites[{index}]",
            outcome=f"{number} -> {sent} (match {rewrite.prefix_match!r}, strip {rewrite.strip},"
            f" prepend {rewrite.prepend!r})",
        ))
    caller_id, whose = plan.caller_id_for(caller, trunk)
    steps.append(Step(rule=f"trunks.{trunk.key}", outcome=f"caller ID {caller_id or '-'}: {whose}"))
    return ToTrunk(trunk=trunk.key, number=sent, caller_id=caller_id, rule=route.rule,
                   call_class=call_class, steps=tuple(steps), e164=prepared.e164)


def _internal_destination(
    call: CallRequest, caller: Extension, plan: Dialplan, steps: list[Step]
) -> Decision | None:
    """A number that stays inside the PBX (or a group member's mobile), or
    None to classify it as an outside number.

    Short numbers of the caller's groups resolve first (the caller's group
    decides what a short number means, so they may hide an extension for
    group members only — the loader refuses such collisions anyway).
    """
    number = call.dialled
    found = resolve(caller.number, number, plan.groups)
    if found is not None:
        return _ring_member(call, caller, plan, steps, found)
    target = plan.extension(number)
    if target is None:
        return None
    refused = _refuse_inactive(target, call.at, steps, INTERNAL)
    if refused is not None:
        return refused
    verdict = check_class(plan, caller, number, INTERNAL, call.at, steps=(
        *steps, Step(rule=f"extensions.{number}", outcome=f"{number} is extension {target.name}: internal"),
    ))
    if not verdict.allowed:
        return Reject(status=403, reason=verdict.reason, rule=verdict.rule, call_class=INTERNAL,
                      steps=verdict.steps, detail=verdict.steps[-1].outcome)
    return Ring(extension=target, rule=f"extensions.{number}", call_class=INTERNAL, steps=verdict.steps)


def _ring_member(call: CallRequest, caller: Extension, plan: Dialplan, steps: list[Step],
                 found: InGroup) -> RingMember | Reject:
    group, member, number = found.group, found.callee, call.dialled
    rule = f"groups.{group.key}.members.{member.short}"
    steps.append(Step(rule=f"groups.{group.key}.members.{found.caller.short}",
                      outcome=f"caller {caller.number} is {found.caller.short} in group {group.title}"))
    wants_desk = member.extension is not None and (found.dialled_short or number == member.extension)
    wants_mobile = member.mobile is not None and (found.dialled_short or number == member.mobile)
    if found.dialled_short:
        legs = " and ".join(what for what, wanted in (
            (f"extension {member.extension}", wants_desk), (f"mobile {member.mobile}", wants_mobile)) if wanted)
        policy = f", {member.ring.replace('_', ' ')}" if wants_desk and wants_mobile else ""
        said = f"short number {number} is {member.name or 'a member'}: rings {legs}{policy}"
    else:
        kind = "extension" if wants_desk else "mobile"
        said = f"{number} is the {kind} of {member.label}: an in-group call, rings just that"
    steps.append(Step(rule=rule, outcome=said))

    extension: Extension | None = None
    if wants_desk and member.extension is not None and _inactive(plan.extensions[member.extension], call.at):
        steps.append(Step(rule=f"extensions.{member.extension}", outcome="the desk leg is dropped: extension"
                          f" {member.extension} is not active"))
        wants_desk = False
        if not wants_mobile:
            refused = _refuse_inactive(plan.extensions[member.extension], call.at, steps, INTERNAL)
            assert refused is not None
            return refused
    if wants_desk and member.extension is not None:
        target = plan.extensions[member.extension]
        verdict = check_class(plan, caller, target.number, INTERNAL, call.at, steps=(
            *steps, Step(rule=f"extensions.{target.number}", outcome=f"desk: extension {target.number}"
                         f" ({target.name}): internal")))
        if not verdict.allowed and not wants_mobile:
            return Reject(status=403, reason=verdict.reason, rule=verdict.rule, call_class=INTERNAL,
                          steps=verdict.steps, detail=verdict.steps[-1].outcome)
        steps = list(verdict.steps)
        if verdict.allowed:
            extension = target
        else:
            steps.append(Step(rule=rule, outcome=f"the desk leg is dropped ({verdict.reason})"))
    mobile: ToTrunk | None = None
    if wants_mobile and member.mobile is not None:
        leg = _mobile_leg(member.mobile, caller, plan, call.at, steps, rule)
        if isinstance(leg, Reject) and extension is None:
            return leg  # nothing left to ring: refused by the rule that dropped the mobile
        steps = list(leg.steps)
        if isinstance(leg, ToTrunk):
            mobile = leg
        else:
            steps.append(Step(rule=f"{rule}.mobile", outcome=f"the mobile leg is dropped ({leg.reason});"
                              " the desk still rings"))
    both = extension is not None and mobile is not None
    return RingMember(
        group=group.key, member=member, dialled=number, short_dialled=found.dialled_short,
        extension=extension, mobile=mobile, order=member.ring if both else "together",
        desk_seconds=member.desk_seconds, presented_number=found.presented, rule=rule,
        call_class=mobile.call_class if extension is None and mobile is not None else INTERNAL,
        steps=tuple(steps),
    )


def _mobile_leg(mobile: str, owner: Extension, plan: Dialplan, at: datetime, steps: list[Step],
                rule: str) -> ToTrunk | Reject:
    """A member's mobile rung as an outside call placed for ``owner``, with
    ``owner``'s rights: classified, checked, routed and rewritten."""
    steps.append(Step(rule=f"{rule}.mobile", outcome=f"mobile: {mobile}, an outside call placed for"
                      f" {owner.number}, with {owner.number}'s rights"))
    return _outside(mobile, owner, plan, at, list(steps))


def _from_trunk(call: CallRequest, plan: Dialplan) -> Decision:
    key = call.trunk or ""
    steps: list[Step] = []
    trunk = plan.trunks.get(key)
    if trunk is None:
        return _reject(403, "unknown_trunk", "trunks", steps, f"no trunk {key!r} in the dialplan")
    shown = call.caller_number or "an unknown caller"
    steps.append(Step(rule=f"trunks.{key}", outcome=f"call from {shown} through trunk {key}"))
    target = plan.inbound.get(call.dialled)
    if target is not None:
        resolved, why = target.resolve(call.at)
        steps.append(Step(rule=f"inbound.{call.dialled}", outcome=f"{call.dialled} is an inbound number: {why}"))
        reached: Extension | None = None
        if resolved.extension is not None:
            reached = plan.extensions[resolved.extension]
        elif resolved.member is not None:
            member = plan.groups[resolved.member[0]].members[resolved.member[1]]
            reached = plan.extensions.get(member.extension) if member.extension is not None else None
        screened = _screen_caller(call, plan, reached, steps)
        if screened is not None:
            return screened
        if resolved.member is not None:
            return _inbound_member(call, plan, resolved.member, resolved.rule, steps)
        assert reached is not None  # InboundTarget holds exactly one of the two
        refused = _refuse_inactive(reached, call.at, steps, INBOUND)
        if refused is not None:
            return refused
        return Ring(extension=reached, rule=resolved.rule, call_class=INBOUND, steps=tuple(steps))
    if _is_outside_number(call.dialled, plan):
        return _reject(403, "relay_denied", "inbound", steps,
                       f"{call.dialled} is an outside number, not one of our inbound numbers:"
                       " calls from a trunk are never relayed back out")
    return _reject(404, "unknown_did", "inbound", steps, f"{call.dialled!r} is not one of our inbound numbers")


def _inbound_member(call: CallRequest, plan: Dialplan, ref: tuple[str, str], rule: str,
                    steps: list[Step]) -> RingMember | Reject:
    """A DID that rings a group member: their desk and, as their ring policy
    says, their mobile through a trunk. The mobile leg leaves the PBX on the
    member's behalf, so it is checked against the member's own rights (their
    extension's class of service); a member without an extension has no
    rights to lend, and their mobile is not rung from outside."""
    group = plan.groups[ref[0]]
    member = group.members[ref[1]]
    owner = plan.extensions.get(member.extension) if member.extension is not None else None
    if owner is not None and _inactive(owner, call.at) is not None:
        # A member whose extension is not active is not reached, desk or mobile:
        # their rights are not lent to a call out either.
        refused = _refuse_inactive(owner, call.at, steps, INBOUND)
        assert refused is not None
        return refused
    desk = owner
    mobile: ToTrunk | None = None
    if member.mobile is not None:
        if owner is None:
            steps.append(Step(rule=f"{rule}.mobile", outcome=f"mobile {member.mobile} not rung: the member has no"
                              " extension whose rights could place a call out"))
        else:
            leg = _mobile_leg(member.mobile, owner, plan, call.at, steps, rule)
            steps = list(leg.steps)
            if isinstance(leg, ToTrunk):
                mobile = leg
            else:
                steps.append(Step(rule=f"{rule}.mobile", outcome=f"the mobile leg is dropped ({leg.reason})"))
    if desk is None and mobile is None:
        return _reject(480, "member_unreachable", rule, steps,
                       f"member {member.label} has nothing that may be rung from outside", INBOUND)
    both = desk is not None and mobile is not None
    return RingMember(
        group=group.key, member=member, dialled=call.dialled, short_dialled=False, extension=desk, mobile=mobile,
        order=member.ring if both else "together", desk_seconds=member.desk_seconds,
        presented_number=call.caller_number or "anonymous", rule=rule, call_class=INBOUND, steps=tuple(steps),
    )


def _is_outside_number(number: str, plan: Dialplan) -> bool:
    """True if an extension dialling ``number`` would leave the PBX."""
    if not is_dialable(number) or plan.extension(number) is not None:
        return False
    for table in plan.number_plans.values():
        entry = table.classify(number)
        if entry is not None and entry.call_class != INTERNAL:
            return True
    return any(route.pattern is not None and route.pattern.matches(number) for route in plan.routes)


# ---------------------------------------------------------------- lifecycle and screening


def _inactive(extension: Extension, at: datetime) -> tuple[ExtensionState, str, str] | None:
    """(state, rule, in words) when ``extension`` is not active at ``at``."""
    state = extension.state_at(at)
    if state == "active":
        return None
    where = f"extensions.{extension.number}"
    if state == "not_yet_valid":
        return state, f"{where}.valid_from", f"is valid only from {extension.valid_from:%Y-%m-%d %H:%M}"
    if state == "expired":
        return state, f"{where}.valid_until", f"expired at {extension.valid_until:%Y-%m-%d %H:%M}"
    return state, f"{where}.status", f"is {state}"


def _refuse_inactive(extension: Extension, at: datetime, steps: list[Step], call_class: str) -> Reject | None:
    """The refusal of a call to ``extension`` while it is not active: 480
    (it may come back) or 404 (retired), as its ``inactive_status`` says."""
    inactive = _inactive(extension, at)
    if inactive is None:
        return None
    state, rule, why = inactive
    return _reject(extension.refusal_status(state), f"extension_{state}", rule, steps,
                   f"extension {extension.number} {why}", call_class)


def _is_emergency(number: str, caller: Extension, plan: Dialplan) -> bool:
    table = plan.number_plan_for(caller)
    entry = table.classify(number) if table is not None else None
    return entry is not None and entry.call_class == EMERGENCY


def _screen_caller(call: CallRequest, plan: Dialplan, reached: Extension | None,
                   steps: list[Step]) -> Reject | None:
    """The company's, the DID's and the callee's lists for a caller from
    outside (:mod:`pbx.routing.screening`): 603 Decline when they refuse."""
    levels: list[tuple[str, Screening]] = [("incoming", plan.incoming)]
    did = plan.did_incoming.get(call.dialled)
    if did is not None:
        levels.append((f"incoming.dids.{call.dialled}", did))
    if reached is not None:
        levels.append((f"extensions.{reached.number}.incoming", reached.incoming))
    levels = [(where, level) for where, level in levels if level]
    if not levels:
        return None
    key = plan.number_plan or (next(iter(plan.number_plans)) if len(plan.number_plans) == 1 else None)
    numbering = plan.number_plans[key].numbering if key is not None else None
    refused, passed = screen(caller_forms(call.caller_number, numbering), levels)
    if refused is None:
        steps.append(Step(rule=levels[0][0], outcome=passed))
        return None
    return _reject(603, "caller_blocked", refused.rule, steps, refused.outcome, INBOUND)
