"""Routing: a pure function from a call request to a decision.

No I/O and no clock: the caller passes everything in, the time included
(``CallRequest.at``). The calling path runs the decision with ``match`` and
``assert_never``, so a new decision type (ring a group of targets, ask for
an account code, run an IVR — later issues) fails type-checking until the
controller handles it.

A call from an extension, in order (the first step that decides wins):

1. the dialled string must be a number (digits, ``*``, ``#``, ``+``): else 404;
2. a hunt group agent code (``*45``/``*46`` [+ group]): :class:`AgentCode`
   for the caller's own membership (403 when not a member, 404 for no such
   group); a feature code (``*72`` forwards ... ``*97``/``*98`` voicemail);
   a reserved feature code: 501 (the feature is not built yet);
3. a short number of one of the caller's groups, or the long number
   (extension or mobile) of a member of one of them: :class:`RingMember`
   (see :mod:`pbx.routing.short_numbers`; a caller in no group has no
   short numbers, so to them the digits go on to the next steps);
4. a hunt group number: :class:`Hunt` (the group in force at the time:
   a group outside its schedule hands over to its ``otherwise`` group);
   an extension number: internal, :class:`Ring` (unless its class of
   service denies internal calls: 403); an auto attendant's internal
   number: :class:`RunIvr` (its closed menu while its hours are closed);
5. otherwise the caller's number plan gives the call class of the whole
   number and its E.164 form, and the first route that applies gives the
   trunk and what it will be sent (:func:`pbx.routing.outside.prepare`:
   404 ``unknown_number``, 484 ``incomplete_number``, 404
   ``malformed_number`` …); the rights of the caller
   (:func:`pbx.routing.rights.check_class`, lists matched on the E.164
   form) may refuse it: 403 with the rule; no route: 404 ``no_route`` — a
   gap in the configuration, which retrying will not fill; 503 is left to
   the trunk runtime for gateways that fail); :class:`ToTrunk` with the
   number rewritten for that trunk, always E.164 or national digits;
6. an outside call may need an account code first
   (:mod:`pbx.routing.account_codes`): in ``all_outbound`` mode every one
   that would go out or that a code could open, in ``restricted`` mode one
   the caller's own class of service does not allow, and any that was
   dialled with a code: :class:`CodeRequired`. Emergency numbers never ask.
   Once the code is known, :func:`decide_with_code` decides again with the
   code owner's class of service in place of the phone's.

A call from a trunk may only reach a DID listed under ``inbound``: a DID
rings its target (an extension, a group member or a hunt group, or a menu
answers it); anything else is refused — 403 ``relay_denied`` if it is
an outside number (no open relay through the PBX), 404 ``unknown_did``
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from pbx.routing.classes import EMERGENCY, INBOUND, INTERNAL
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.hunt_groups import (AgentAction, Condition, Destination as OverflowDestination, HuntGroup,
                                     groups_of_member, parse_agent_code)
from pbx.routing.conferences import Conference
from pbx.routing.ivr import Destination, HoursOverride, IvrMenu, entry_menu
from pbx.routing.numbering import sendable
from pbx.routing.outside import Refusal, prepare
from pbx.routing.patterns import is_dialable
from pbx.routing.feature_codes import FeatureDialled, parse_feature_code
from pbx.routing.rights import check_class, check_number
from pbx.routing.dialplan import Dialplan, Extension, ExtensionState
from pbx.routing.numbering import sendable
from pbx.routing.outside import Refusal, prepare
from pbx.routing.patterns import is_dialable
from pbx.routing.rights import check_class
from pbx.routing.screening import Screening, caller_forms, screen
from pbx.routing.short_numbers import InGroup, Member, RingPolicy, resolve
from pbx.routing.steps import Step

__all__ = ["AgentCode", "CallRequest", "CodeRequired", "Decision", "Feature", "Hunt", "Reject", "Ring", "RingMember",
           "JoinConference", "RunIvr", "Step", "ToTrunk", "decide", "decide_menu_destination", "menu_caller", "decide_with_code", "overflow_decision", "queue_hunt"]


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
    hours: Mapping[str, HoursOverride] = field(default_factory=lambda: MappingProxyType({}))
    """Administrators' overrides of schedules (``pbx hours``), by schedule."""
    code_given: bool = False
    """The caller dialled an account code before the number (the dial
    prefix); ``dialled`` is the number after it. The code itself never
    reaches routing."""


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
    for_group: str | None = None
    """Placed for a hunt group (an outside member or an overflow number),
    with the group's rights: a call in from a trunk may take this way out."""

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Hunt:
    """Ring hunt group ``group``: :mod:`pbx.calls.hunt` orders its members by
    the strategy and skips those who cannot take the call."""

    group: HuntGroup
    outside: tuple[tuple[str, ToTrunk], ...] = ()
    """Outside members that may be rung (member number, the leg ready for
    the trunk); a member the group's rights refuse is left out (the steps
    say why)."""
    rule: str
    call_class: str = INTERNAL
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCode:
    """An agent's ``*45``/``*46`` code: log ``extension`` in to or out of
    ``groups`` (``toggle``: out of all if logged in to any, else in to all)."""

    action: AgentAction
    extension: str
    groups: tuple[str, ...]
    rule: str
    call_class: str = INTERNAL
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunIvr:
    """The PBX answers and runs ``menu`` (an auto attendant), already the
    closed-hours menu when the hours said so."""

    menu: IvrMenu
    rule: str
    call_class: str
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinConference:
    """The PBX answers and puts the caller into a meet-me room (asking its
    PIN first when it has one)."""

    room: Conference
    rule: str
    call_class: str = INTERNAL
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Feature:
    """A feature code (:mod:`pbx.routing.feature_codes`): change the caller's
    forwards or do not disturb, or pick up a ringing call. A forward's
    target was checked against the caller's rights already."""

    dialled: FeatureDialled
    extension: Extension
    rule: str
    call_class: str = INTERNAL
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRequired:
    """An outside call that needs an account code first: the caller is
    prompted (or the code given with the number is checked), then
    :func:`decide_with_code` decides with the code owner's rights."""

    number: str
    """The number dialled (after a dial prefix)."""
    mode: str
    """Why: ``all_outbound``, ``restricted`` or ``prefix`` (a code was dialled)."""
    barred: str | None
    """What the phone's own rights said (``international_not_allowed``), if they refused."""
    given: bool
    """A code came with the number: check it, do not prompt."""
    rule: str
    call_class: str | None
    steps: tuple[Step, ...] = ()


Decision = (Ring | RingMember | Hunt | AgentCode | ToTrunk | Reject | RunIvr | Feature | CodeRequired
            | JoinConference)


def _liftable(reason: str) -> bool:
    """Could another class of service allow a call refused for ``reason``?
    Black lists, a group's in-group-only rule and unusable numbers hold
    whoever's rights are used."""
    return reason.endswith(("_barred", "_not_allowed")) or reason == "not_on_whitelist"


def _with_account_code(call: CallRequest, caller: Extension, plan: Dialplan,
                       outside: ToTrunk | Reject) -> ToTrunk | Reject | CodeRequired:
    """``outside``, or :class:`CodeRequired` when an account code must come first."""
    if outside.call_class == EMERGENCY:
        return outside
    barred = outside.reason if isinstance(outside, Reject) else None
    if isinstance(outside, Reject) and (outside.status != 403 or not _liftable(outside.reason)):
        return outside
    mode, rule = plan.account_code_mode(caller)
    if call.code_given:
        why, rule = "an account code was dialled before the number", "account_codes.prefix"
    elif mode == "all_outbound":
        why = "every outside call of this phone asks for an account code"
    elif mode == "restricted" and barred is not None:
        why = "the phone may not place this call itself: an account code may"
    else:
        return outside
    steps = (*outside.steps, Step(rule=rule, outcome=f"{why}; the call then has the code owner's class of service"))
    return CodeRequired(number=call.dialled, mode="prefix" if call.code_given else mode, barred=barred,
                        given=call.code_given, rule=rule, call_class=outside.call_class, steps=steps)


def decide_with_code(call: CallRequest, plan: Dialplan, class_of_service: str, code: str) -> ToTrunk | Reject:
    """Decide ``call`` again with class of service ``class_of_service`` (an
    account code's, ``code`` naming it for the steps) in place of the
    phone's: classified, routed and presented as the phone's own call
    (its department's number plan, routes and caller ID), checked against
    the code's rights."""
    caller = call.caller
    steps: list[Step] = []
    if caller is None:
        return _reject(403, "unauthenticated", "sources", steps, "an account code needs a calling extension")
    if class_of_service not in plan.classes_of_service:
        return _reject(403, "unknown_class_of_service", "account_codes", steps,
                       f"account code {code} carries class of service {class_of_service!r}, which this dialplan"
                       " does not have")
    steps.append(Step(rule=f"classes_of_service.{class_of_service}",
                      outcome=f"account code {code}: class of service {class_of_service!r} instead of"
                      f" {caller.number}'s own"))
    walking = replace(caller, class_of_service=class_of_service)
    return _outside(call.dialled, walking, plan, call.at, steps)




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
    code = parse_agent_code(number) if plan.hunt_groups else None
    if code is not None:
        return _agent_code(caller, plan, code[0], code[1], steps)
    feature = parse_feature_code(number)
    if feature is not None:
        return _feature(caller, plan, feature, call.at, steps)
    if number in plan.feature_codes:
        return _reject(501, "feature_not_available", f"feature_codes.{number}", steps,
                       f"{number} is reserved for {plan.feature_codes[number]!r}, not available yet")
    inactive = _inactive(caller, call.at)
    if inactive is not None and not _is_emergency(number, caller, plan):
        state, rule, why = inactive
        return _reject(403, f"caller_{state}", rule, steps, f"caller {caller.number} {why}: it may not call"
                       " (emergency numbers excepted)")

    if plan.parking is not None and plan.parking.holds(number):
        steps.append(Step(rule="parking", outcome=f"{number} is a parking slot: pick up the call parked there"))
        return Feature(dialled=FeatureDialled("park_pickup", number, argument=number), extension=caller,
                       rule="parking", steps=tuple(steps))
    room = plan.conference_at(number)
    if room is not None:
        steps.append(Step(rule=f"conferences.{room.key}", outcome=f"{number} is conference room {room.key}"))
        return JoinConference(room=room, rule=f"conferences.{room.key}", steps=tuple(steps))
    internal = _internal_destination(call, caller, plan, steps)
    if internal is not None:
        return internal
    return _with_account_code(call, caller, plan, _outside(number, caller, plan, call.at, steps))


def _feature(caller: Extension, plan: Dialplan, feature: FeatureDialled, at: datetime,
             steps: list[Step]) -> Feature | Reject:
    """A feature code: its number (a forward's target, a pickup's
    extension) must make sense for the caller; a forward target must be
    something they may dial themselves (a forward is a call they place)."""
    rule = f"feature_codes.{feature.code}"
    target = feature.argument
    if feature.action == "forward_on":
        if not target:
            return _reject(484, "forward_target_missing", rule, steps, f"{feature.code} needs a number after it")
        if target == caller.number:
            return _reject(403, "forward_to_self", rule, steps, f"{caller.number} cannot forward to itself")
        if plan.extension(target) is None and target not in plan.hunt_groups:
            verdict = check_number(plan, caller, target, at)
            if not verdict.allowed:
                return Reject(status=403 if verdict.reason != "unknown_number" else 404, reason=verdict.reason,
                              rule=verdict.rule, call_class=verdict.call_class, steps=(*steps, *verdict.steps),
                              detail=verdict.steps[-1].outcome if verdict.steps else verdict.reason)
    elif feature.action == "park" and plan.parking is None:
        return _reject(501, "feature_not_available", rule, steps, "call park needs parking: in the dialplan")
    elif feature.action == "directed_pickup" and (not target or plan.extension(target) is None):
        return _reject(404, "no_such_extension", rule, steps, f"{target!r} is no extension to pick up from")
    elif feature.action == "voicemail_login" and target and not target.isdigit():
        return _reject(404, "invalid_number", rule, steps, f"{target!r} is no mailbox number")
    steps.append(Step(rule=rule, outcome=f"feature code {feature.code}: {feature.action}"
                      + (f" {feature.kind}" if feature.kind else "") + (f" {target}" if target else "")))
    return Feature(dialled=feature, extension=caller, rule=rule, steps=tuple(steps))


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
    hunt = plan.hunt_groups.get(number)
    if hunt is not None:
        verdict = check_class(plan, caller, number, INTERNAL, call.at, steps=(
            *steps, Step(rule=hunt.rule, outcome=f"{number} is hunt group {hunt.name}: internal")))
        if not verdict.allowed:
            return Reject(status=403, reason=verdict.reason, rule=verdict.rule, call_class=INTERNAL,
                          steps=verdict.steps, detail=verdict.steps[-1].outcome)
        return _hunt(plan, hunt, call.at, list(verdict.steps), INTERNAL)
    target = plan.extension(number)
    if target is None:
        menu = plan.menu_at(number)
        if menu is None:
            return None
        steps.append(Step(rule=menu.rule, outcome=f"{number} is auto attendant menu {menu.key}: internal"))
        return _run_menu(plan, menu, call, INTERNAL, steps)
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
                 found: InGroup) -> Decision:
    group, member, number = found.group, found.callee, call.dialled
    rule = f"groups.{group.key}.members.{member.short}"
    steps.append(Step(rule=f"groups.{group.key}.members.{found.caller.short}",
                      outcome=f"caller {caller.number} is {found.caller.short} in group {group.title}"))
    if member.hunt_group is not None:
        hunt = plan.hunt_groups[member.hunt_group]
        verdict = check_class(plan, caller, hunt.number, INTERNAL, call.at, steps=(
            *steps, Step(rule=rule, outcome=f"short number {number} is hunt group {hunt.title}: internal")))
        if not verdict.allowed:
            return Reject(status=403, reason=verdict.reason, rule=verdict.rule, call_class=INTERNAL,
                          steps=verdict.steps, detail=verdict.steps[-1].outcome)
        return _hunt(plan, hunt, call.at, list(verdict.steps), INTERNAL)
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
        if resolved.hunt_group is not None:
            return _hunt(plan, plan.hunt_groups[resolved.hunt_group], call.at, steps, INBOUND)
        if resolved.menu is not None:
            return _run_menu(plan, plan.ivr_menus[resolved.menu], call, INBOUND, steps)
        if resolved.conference is not None:
            # A room never dials out: a caller from outside gains nothing but the room.
            room = plan.conferences[resolved.conference]
            return JoinConference(room=room, rule=resolved.rule, call_class=INBOUND, steps=tuple(steps))
        assert reached is not None  # InboundTarget holds exactly one of the kinds
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
                    steps: list[Step]) -> Decision:
    """A DID that rings a group member: their desk and, as their ring policy
    says, their mobile through a trunk. The mobile leg leaves the PBX on the
    member's behalf, so it is checked against the member's own rights (their
    extension's class of service); a member without an extension has no
    rights to lend, and their mobile is not rung from outside."""
    group = plan.groups[ref[0]]
    member = group.members[ref[1]]
    if member.hunt_group is not None:
        hunt = plan.hunt_groups[member.hunt_group]
        steps.append(Step(rule=rule, outcome=f"member {member.label} is hunt group {hunt.title}"))
        return _hunt(plan, hunt, call.at, steps, INBOUND)
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


# ---------------------------------------------------------------- hunt groups


def _agent_code(caller: Extension, plan: Dialplan, action: AgentAction, number: str | None,
                steps: list[Step]) -> AgentCode | Reject:
    """``*45``/``*46``: the caller logs themselves in or out; nobody else."""
    code = "*45" if action in ("login", "toggle") else "*46"
    rule = "hunt_groups"  # the agent codes are the hunt groups' own, not a feature_codes entry
    if number is None:
        mine = groups_of_member(caller.number, plan.hunt_groups)
        if not mine:
            return _reject(403, "not_a_member", rule, steps, f"{caller.number} is a member of no hunt group")
        steps.append(Step(rule=rule, outcome=f"{code} alone: {action.replace('_', ' ')} for every group of"
                          f" {caller.number}: " + ", ".join(group.number for group in mine)))
        return AgentCode(action=action, extension=caller.number, groups=tuple(g.number for g in mine), rule=rule,
                         steps=tuple(steps))
    group = plan.hunt_groups.get(number)
    if group is None:
        return _reject(404, "unknown_hunt_group", rule, steps, f"{code}{number}: no hunt group {number}")
    if group.member(caller.number) is None:
        return _reject(403, "not_a_member", group.rule, steps,
                       f"{caller.number} is not a member of hunt group {group.title}")
    steps.append(Step(rule=group.rule, outcome=f"{code}{number}: {action} {caller.number} for hunt group"
                      f" {group.title}"))
    return AgentCode(action=action, extension=caller.number, groups=(number,), rule=group.rule, steps=tuple(steps))


def group_identity(group: HuntGroup) -> Extension | None:
    """Who outside calls for ``group`` are placed as: its department's number
    plan and caller ID, its class of service. Never registered nor
    authenticated (it is in no plan's extensions, and its digest hash is
    of no password)."""
    if group.department is None:
        return None
    return Extension(number=group.number, name=group.name, department=group.department,
                     class_of_service=group.class_of_service, ha1_sha256="0" * 64)


def _hunt(plan: Dialplan, group: HuntGroup, at: datetime, steps: list[Step], call_class: str) -> Hunt | Reject:
    """The group in force at ``at`` (following ``otherwise`` out of hours),
    with its outside members prepared under the group's rights."""
    seen = {group.number}
    while True:
        in_force, why = group.in_force(at)
        if in_force:
            break
        assert group.otherwise is not None  # a schedule comes with an otherwise group
        steps.append(Step(rule=f"{group.rule}.otherwise", outcome=f"not {why}: hunt group {group.otherwise}"
                          " takes the call"))
        group = plan.hunt_groups[group.otherwise]
        if group.number in seen:  # the loader refuses loops; a plan built by hand may not
            return _reject(508, "hunt_loop", group.rule, steps, f"hunt groups loop back to {group.number}")
        seen.add(group.number)
    listed = ", ".join(f"{m.key}" + (f" (tier {m.tier})" if m.tier > 1 else "") for m in group.members)
    steps.append(Step(rule=group.rule, outcome=f"hunt group {group.title}: {group.strategy}, members {listed};"
                      f" {group.member_seconds} s a member, {group.total_seconds} s in all"))
    outside: list[tuple[str, ToTrunk]] = []
    identity = group_identity(group)
    for member in group.members:
        if member.number is None:
            continue
        leg = _outside(member.number, identity, plan, at, list(steps)) if identity is not None else None
        if isinstance(leg, ToTrunk):
            outside.append((member.key, replace(leg, for_group=group.number, steps=())))
        else:
            why = leg.reason if leg is not None else "the group has no department"
            steps.append(Step(rule=f"{group.rule}.members", outcome=f"outside member {member.number} left out:"
                              f" {why}"))
    return Hunt(group=group, outside=tuple(outside), rule=group.rule, call_class=call_class, steps=tuple(steps))


def overflow_decision(plan: Dialplan, group: HuntGroup, condition: Condition, at: datetime,
                      call_class: str, hours: Mapping[str, HoursOverride] | None = None) -> Decision | None:
    """Where a call ``group`` could not place goes on ``condition``; None
    when the group names no destination for it, or an announcement (the
    caller is told: the controller says it)."""
    destination: OverflowDestination | None = group.overflow.get(condition)
    if destination is None or destination.announcement is not None:
        return None
    rule = f"{group.rule}.overflow.{condition}"
    steps = [Step(rule=rule, outcome=f"{condition.replace('_', ' ')}: on to {destination.what}")]
    if destination.extension is not None:
        extension = plan.extensions[destination.extension]
        return Ring(extension=extension, rule=rule, call_class=call_class, steps=tuple(steps))
    if destination.hunt_group is not None:
        return _hunt(plan, plan.hunt_groups[destination.hunt_group], at, steps, call_class)
    if destination.ivr is not None:
        answering, why = entry_menu(plan.ivr_menus, plan.ivr_menus[destination.ivr], at, hours or {})
        steps.append(Step(rule=answering.rule, outcome=why))
        return RunIvr(menu=answering, rule=answering.rule, call_class=call_class, steps=tuple(steps))
    assert destination.number is not None
    identity = group_identity(group)
    if identity is None:
        return _reject(403, "no_group_rights", rule, steps, f"hunt group {group.number} has no department")
    leg = _outside(destination.number, identity, plan, at, steps)
    return replace(leg, for_group=group.number) if isinstance(leg, ToTrunk) else leg


def queue_hunt(plan: Dialplan, group: HuntGroup, at: datetime, call_class: str) -> Hunt | Reject:
    """Ring ``group`` again for a caller waiting in its queue (its outside
    members prepared anew under the group's rights)."""
    return _hunt(plan, group, at, [], call_class)


def _run_menu(plan: Dialplan, menu: IvrMenu, call: CallRequest, call_class: str, steps: list[Step]) -> RunIvr:
    answering, why = entry_menu(plan.ivr_menus, menu, call.at, call.hours)
    if answering is not menu or menu.hours is not None:
        steps.append(Step(rule=f"{menu.rule}.hours", outcome=why))
    return RunIvr(menu=answering, rule=answering.rule, call_class=call_class, steps=tuple(steps))


def decide_menu_destination(plan: Dialplan, menu: IvrMenu, destination: Destination, rule: str,
                            call: CallRequest) -> Decision:
    """Where a menu's ``destination`` (chosen under ``rule``) takes the
    caller of ``call``: an extension rings (its own class of service does
    not matter, the menu chose it), a group member rings as from an inbound
    number, a hunt group hunts as when its number is dialled, an outside
    number goes out with the rights of the menu's class of service (a menu
    without one may not call out), another menu runs.

    A menu is no way round what a direct call would meet: an extension
    that is not active is refused as it would be, and a caller from outside
    still meets the extension's own ``incoming`` lists (the company's and
    the inbound number's were met on the way in)."""
    steps = [Step(rule=rule, outcome=f"menu {menu.key}: {destination.describe()}")]
    call_class = INTERNAL if call.trunk is None else INBOUND
    match destination.kind:
        case "extension":
            target = plan.extensions[destination.value]
            refused = (_screen_caller(call, plan, target, steps) if call.trunk is not None else None) \
                or _refuse_inactive(target, call.at, steps, call_class)
            if refused is not None:
                return refused
            return Ring(extension=target, rule=rule, call_class=call_class, steps=tuple(steps))
        case "member":
            group, _, short = destination.value.partition("/")
            member = plan.groups[group].members[short]
            owner = plan.extensions.get(member.extension) if member.extension is not None else None
            if call.trunk is not None and owner is not None:
                screened = _screen_caller(call, plan, owner, steps)
                if screened is not None:
                    return screened
            return _inbound_member(call, plan, (group, short), rule, steps)
        case "hunt_group":
            return _hunt(plan, plan.hunt_groups[destination.value], call.at, steps, call_class)
        case "menu":
            return _run_menu(plan, plan.ivr_menus[destination.value], call, call_class, steps)
        case "number":
            holder = menu_caller(menu)
            if holder is None:
                return _reject(403, "menu_has_no_rights", rule, steps,
                               f"menu {menu.key} has no class_of_service and department to call out with")
            return _outside(destination.value, holder, plan, call.at, steps)
        case _:
            return _reject(480, "hangup", rule, steps, "the menu hangs up")


def menu_caller(menu: IvrMenu) -> Extension | None:
    """The menu as a caller: its class of service and department, for the
    rights check and number plan of an outside number it calls, and as the
    one its outside calls are counted and paid for by (caps, budgets).
    Never in the plan's extensions, so nobody can register or
    authenticate as it."""
    if menu.class_of_service is None or menu.department is None:
        return None
    return Extension(number=menu.number or "00", name=f"menu {menu.key}", department=menu.department,
                     class_of_service=menu.class_of_service, ha1_sha256="0" * 64)
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
