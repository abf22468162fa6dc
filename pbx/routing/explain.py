"""``pbx explain``: what the dialplan would do with a call, and why.

Pure: the command line reads the file and the clock; this module builds the
:class:`~pbx.routing.engine.CallRequest`, runs the same
:func:`~pbx.routing.engine.decide` a real call runs, and renders the
decision with every rule consulted and where in the files it is written.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from pbx.routing.calendars import WEEKDAYS
from pbx.routing.call_limits import Limit, limits_for
from pbx.routing.classes import EMERGENCY
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.hunt_groups import CONDITIONS
from pbx.routing.engine import (AgentCode, CallRequest, CodeRequired, Decision, Feature, Hunt, Reject, Ring,
                                RingMember, RunIvr, ToTrunk, decide, decide_with_code, JoinConference)
from pbx.routing.ivr import IvrMenu

TRUNK_PREFIX = "trunk:"


class ExplainError(ValueError):
    """The question cannot be asked of this dialplan (unknown caller, bad time)."""


def parse_at(text: str, zone: tzinfo) -> datetime:
    """``"2027-02-10 18:05"`` as a local time in ``zone``; a time with its
    own offset (``2027-02-10T18:05+07:00``) is taken as it is."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ExplainError(f"--at {text!r}: expected \"YYYY-MM-DD HH:MM\" (local time)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def request_for(plan: Dialplan, source: str, dialled: str, at: datetime) -> CallRequest:
    """The call request ``--from source --to dialled`` stands for."""
    if source.startswith(TRUNK_PREFIX):
        key, _, presented = source.removeprefix(TRUNK_PREFIX).partition("/")
        if key not in plan.trunks:
            known = ", ".join(sorted(plan.trunks)) or "none"
            raise ExplainError(f"--from {source!r}: no trunk {key!r} in the dialplan (trunks: {known})")
        return CallRequest(caller=None, trunk=key, dialled=dialled, at=at, caller_number=presented)
    caller = plan.extension(source)
    if caller is None:
        raise ExplainError(f"--from {source!r}: no such extension (give an extension number or trunk:KEY)")
    return CallRequest(caller=caller, dialled=dialled, at=at, caller_number=caller.number)


def explain_call(plan: Dialplan, source: str, dialled: str, at: datetime) -> str:
    """The decision for the call and the chain of rules, as text."""
    request = request_for(plan, source, dialled, at)
    decision = decide(request, plan)
    local = at.astimezone(plan.timezone)
    lines = [
        f"call from {_who(plan, request)} to {dialled}",
        f"at {WEEKDAYS[local.weekday()].capitalize()} {local:%Y-%m-%d %H:%M} {plan.timezone}",
        "",
    ]
    for number, step in enumerate(decision.steps, start=1):
        place = plan.place(step.rule)
        lines.append(f"{number:3d}. {step.rule}" + (f"  ({place})" if place else ""))
        lines.append(f"     {step.outcome}")
    lines.append("")
    lines.extend(_decision_lines(plan, decision))
    if isinstance(decision, CodeRequired):
        lines.extend(_code_lines(plan, request))
    if request.caller is not None:
        lines.extend(_limit_lines(plan, request.caller, decision))
    return "\n".join(lines)


def _limit_lines(plan: Dialplan, caller: Extension, decision: Decision) -> list[str]:
    """The caps a call through a trunk counts against (emergency calls are
    never refused for them)."""
    leg = decision if isinstance(decision, ToTrunk) else decision.mobile if isinstance(decision, RingMember) else None
    if leg is None or leg.call_class == EMERGENCY:
        return []
    limits = limits_for(plan, caller)

    def cap(limit: Limit, what: str) -> str:
        place = plan.place(limit.rule)
        return f"          at most {limit.value} {what}: {limit.rule}" + (f" ({place})" if place else " (default)")

    return [f"caps:     outside calls of {caller.number} (counted on each node)",
            cap(limits.simultaneous, "at once"), cap(limits.per_minute, "a minute")]


def _who(plan: Dialplan, request: CallRequest) -> str:
    if request.caller is not None:
        caller = request.caller
        return f"{caller.number} ({caller.name}, department {caller.department})"
    presented = request.caller_number or "an unknown caller"
    return f"{presented} via trunk {request.trunk}"


def _decision_lines(plan: Dialplan, decision: Decision) -> list[str]:
    place = plan.place(decision.rule)
    rule = f"rule {decision.rule}" + (f" ({place})" if place else "")
    match decision:
        case Ring():
            extension = decision.extension
            return [f"decision: ring extension {extension.number} ({extension.name})",
                    f"          class {decision.call_class}, {rule}"]
        case RingMember():
            return _member_lines(decision, rule)
        case Hunt():
            return _hunt_lines(decision, rule)
        case AgentCode():
            what = {"login": "log in to", "logout": "log out of", "toggle": "toggle (out of all if in any, else in"
                    " to all)", "logout_all": "log out of"}[decision.action]
            return [f"decision: agent {decision.extension}: {what} hunt group(s) " + ", ".join(decision.groups),
                    f"          {rule}"]
        case ToTrunk():
            e164 = f" (E.164 {decision.e164})" if decision.e164 not in (None, decision.number) else ""
            return [f"decision: call {decision.number}{e164} through trunk {decision.trunk},"
                    f" caller ID {decision.caller_id or '(the trunk decides)'}",
                    f"          class {decision.call_class}, {rule}"]
        case Reject():
            return [f"decision: refuse with {decision.status} ({decision.reason})",
                    f"          class {decision.call_class or '-'}, {rule}",
                    f"          {decision.detail}"]
        case Feature():
            feature = decision.dialled
            return [f"decision: feature code {feature.code}: {feature.action}"
                    + (f" {feature.kind}" if feature.kind else "")
                    + (f" {feature.argument}" if feature.argument else ""), f"          {rule}"]
        case RunIvr():
            return [f"decision: the PBX answers: auto attendant menu {decision.menu.key}",
                    *_menu_lines(decision.menu), f"          class {decision.call_class}, {rule}"]
        case JoinConference():
            room = decision.room
            entry = " (PIN asked; the moderator PIN makes a moderator)" if room.asks_pin else ""
            return [f"decision: the PBX answers: conference room {room.key}{entry}",
                    f"          at most {room.max_members} members, {rule}"]
        case CodeRequired():
            how = "checks the account code dialled before it" if decision.given else \
                "answers and asks for an account code, ended by #"
            own = f"; the phone alone: {decision.barred}" if decision.barred else ""
            return [f"decision: the PBX {how} ({decision.mode}{own})",
                    f"          class {decision.call_class or '-'}, {rule}"]


def _code_lines(plan: Dialplan, request: CallRequest) -> list[str]:
    """What the call may do once a code is given: each class of service a
    code can carry, decided again with it."""
    lines = ["with a code: the call has the code owner's class of service"]
    for key in plan.classes_of_service:
        found = decide_with_code(request, plan, key, f"of class of service {key!r}")
        if isinstance(found, ToTrunk):
            lines.append(f"          {key}: allowed, through trunk {found.trunk} as {found.number}")
        else:
            lines.append(f"          {key}: refused with {found.status} ({found.reason})")
    return lines


def _menu_lines(menu: IvrMenu) -> list[str]:
    lines = [f"          greeting {menu.greeting!r}, {menu.retries} retries, {menu.timeout:g} s for a key"]
    lines += [f"          key {keys}: {target.describe()}" for keys, target in menu.options.items()]
    if menu.dial_by_extension:
        lines.append("          or any extension number")
    lines.append(f"          then: {menu.fallback.describe()}")
    return lines


def _member_lines(decision: RingMember, rule: str) -> list[str]:
    member = decision.member
    how = "short number" if decision.short_dialled else "long number"
    if decision.call_class == "inbound":
        how = "inbound number"
    legs = []
    if decision.extension is not None:
        legs.append(f"extension {decision.extension.number} ({decision.extension.name})")
    if decision.mobile is not None:
        mobile = decision.mobile
        legs.append(f"mobile {member.mobile} as {mobile.number} through trunk {mobile.trunk}"
                    f" (caller ID {mobile.caller_id or 'as the trunk decides'})")
    if decision.order == "desk_first":
        order = f"the desk first, the mobile after {decision.desk_seconds} s"
    else:
        order = "together" if len(legs) > 1 else "alone"
    return [f"decision: ring member {member.label} of group {decision.group} ({how} {decision.dialled})",
            *(f"          {leg}" for leg in legs),
            f"          {order}" + (f"; the desk sees the caller as {decision.presented_number}"
                                     if decision.extension is not None else ""),
            f"          class {decision.call_class}, {rule}"]


def _hunt_lines(decision: Hunt, rule: str) -> list[str]:
    group = decision.group
    lines = [f"decision: hunt group {group.title}, strategy {group.strategy}",
             f"          each member up to its ring time ({group.member_seconds} s unless it sets its own),"
             f" {group.total_seconds} s in all"]
    outside = dict(decision.outside)
    for member in group.members:
        if member.extension is not None:
            how = f"extension {member.extension}"
        elif member.key in outside:
            leg = outside[member.key]
            how = f"number {member.number} as {leg.number} through trunk {leg.trunk}"
        else:
            how = f"number {member.number} (left out: see the steps)"
        extra = [f"tier {member.tier}"] + ([f"weight {member.weight}"] if member.weight != 1 else []) + (
            [f"{member.ring_seconds} s"] if member.ring_seconds is not None else [])
        lines.append(f"          member {how} ({', '.join(extra)})")
    if group.skip_busy:
        lines.append("          members on a call are skipped")
    for condition in CONDITIONS:
        destination = group.overflow.get(condition)
        if destination is not None:
            lines.append(f"          overflow {condition.replace('_', ' ')}: {destination.what}")
    lines.append(f"          class {decision.call_class}, {rule}")
    return lines
