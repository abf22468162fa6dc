"""Who may dial what: classes of service, black lists and white lists.

:func:`check_number` answers "may this person dial this number now?" for
any leg the PBX places — the caller's own call, and also a forwarded call,
a hunt-group member's mobile or a short number's mobile, which are checked
against the rights of the person they are placed *for*, so forwarding to a
barred number is no way around the bar.

Order of the checks, the first that decides wins:

1. ``emergency`` numbers are always allowed (nothing below applies);
2. a member of an ``in_group_only`` short-number group may dial an outside
   number only if it is a member's number of that group or on its
   ``allow_outside`` list (:func:`pbx.routing.short_numbers.outside_check`);
   passing this only narrows: the checks below still apply;
3. a black list entry (company-wide ``blacklist``, then the class of
   service's own) refuses the number;
4. a white list entry of the class of service allows it;
5. a ``whitelist_only`` class of service refuses any other outside number;
6. ``deny`` — the class of service's own, a ``when`` rule in force now, or
   an inherited one — refuses the call class (deny beats allow);
7. ``allow`` (own, in force now, or inherited) allows it; ``internal`` is
   allowed unless denied;
8. otherwise the class is not allowed.

A person whose extension and department name no class of service may make
internal and emergency calls only. Lists are matched against the number's
E.164 form (:mod:`pbx.routing.numbering`), so one entry such as ``+53``
holds whatever international prefix the caller's plan uses. A number
without an E.164 form (its plan has no country facts and its trunk is not
sent E.164) cannot be checked against a black list, and is refused
(``unverifiable_number``) wherever a black list applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from datetime import datetime

from pbx.routing.classes import EMERGENCY, INTERNAL
from pbx.routing.classes_of_service import ClassOfService, TimedRule
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.outside import Refusal, prepare
from pbx.routing.short_numbers import outside_check
from pbx.routing.steps import Step


@dataclass(frozen=True, slots=True, kw_only=True)
class _Answer:
    reason: str
    """snake_case tag: ``emergency``, ``allowed``, ``whitelisted``,
    ``blacklisted``, ``not_on_whitelist``, ``in_group_only``, ``<class>_barred`` (denied),
    ``<class>_not_allowed`` (never allowed, or not at this time),
    ``unverifiable_number`` (no E.164 form to check a black list against),
    or a refusal of :func:`pbx.routing.outside.prepare` (``unknown_number``,
    ``incomplete_number``, ``malformed_number`` …) for :func:`check_number`."""
    rule: str
    """The rule that decided."""
    call_class: str | None
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowed(_Answer):
    """The person may dial the number now."""

    allowed: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Barred(_Answer):
    """The person may not dial the number (now)."""

    allowed: ClassVar[bool] = False


Verdict = Allowed | Barred
"""The one answer of every rights check (:func:`check_number`,
:func:`check_class`). ``CodeRequired`` (an account code would lift the
bar) joins it with account codes; callers ``match`` on it."""


def verdict_of(allowed: bool, *, reason: str, rule: str, call_class: str | None,
               steps: tuple[Step, ...]) -> Verdict:
    kind = Allowed if allowed else Barred
    return kind(reason=reason, rule=rule, call_class=call_class, steps=steps)


def class_of_service_for(plan: Dialplan, person: Extension) -> tuple[ClassOfService | None, Step]:
    """The person's class of service (their own, else their department's)."""
    if person.class_of_service is not None:
        profile = plan.classes_of_service[person.class_of_service]
        return profile, Step(
            rule=f"extensions.{person.number}.class_of_service",
            outcome=f"{person.number} has class of service {profile.key!r} (its own, overrides the department's)",
        )
    department = plan.departments[person.department]
    if department.class_of_service is not None:
        profile = plan.classes_of_service[department.class_of_service]
        return profile, Step(
            rule=f"departments.{department.key}.class_of_service",
            outcome=f"{person.number} has class of service {profile.key!r} from department {department.key!r}",
        )
    return None, Step(
        rule=f"departments.{department.key}",
        outcome=f"no class of service for {person.number} or department {department.key!r}:"
        " internal and emergency calls only",
    )


def check_number(plan: Dialplan, person: Extension, number: str, at: datetime) -> Verdict:
    """May ``person`` dial ``number`` at ``at``?

    Pure. Classifies the number with the person's number plan (an extension
    number is ``internal``), works out its E.164 form and what its trunk
    would be sent (:func:`pbx.routing.outside.prepare`), then checks rights.
    """
    if plan.extension(number) is not None:
        return check_class(plan, person, number, INTERNAL, at, steps=(
            Step(rule=f"extensions.{number}", outcome=f"{number} is an extension: internal"),
        ))
    prepared = prepare(plan, person, number)
    if isinstance(prepared, Refusal):
        return Barred(reason=prepared.reason, rule=prepared.rule, call_class=prepared.call_class,
                      steps=prepared.steps)
    return check_class(plan, person, prepared.number, prepared.call_class, at, steps=prepared.steps,
                       forms=prepared.forms, e164=prepared.e164)


def check_class(
    plan: Dialplan,
    person: Extension,
    number: str,
    call_class: str,
    at: datetime,
    *,
    steps: tuple[Step, ...] = (),
    forms: tuple[str, ...] | None = None,
    e164: str | None = None,
) -> Verdict:
    """Rights of ``person`` for ``number`` already classified as ``call_class``.

    ``forms``: the number as dialled and as sent, for a group's
    ``allow_outside`` list; ``e164``: its E.164 form, for the black and
    white lists (None: it has none)."""
    forms = forms or (number,)
    trail = list(steps)

    def verdict(allowed: bool, reason: str, rule: str, outcome: str) -> Verdict:
        trail.append(Step(rule=rule, outcome=outcome))
        return verdict_of(allowed, reason=reason, rule=rule, call_class=call_class, steps=tuple(trail))

    if call_class == EMERGENCY:
        rule = trail[-1].rule if trail else "classes.emergency"
        return verdict(True, "emergency", rule, "emergency calls are never barred")

    if call_class != INTERNAL:
        for group in outside_check(person.number, forms, plan.groups):
            if not group.allowed:
                return verdict(False, "in_group_only", group.rule, group.why)
            trail.append(Step(rule=group.rule, outcome=group.why))

    profile, source = class_of_service_for(plan, person)
    trail.append(source)
    chain = list(profile.chain()) if profile is not None else []

    if call_class != INTERNAL:
        listed = (e164,) if e164 is not None else ()
        for name, lists in [("company", plan.blacklist), *((p.key, p.blacklist) for p in chain)]:
            scope = "company-wide" if name == "company" else f"class of service {name!r}"
            for number_list in lists:
                if e164 is None:
                    # Fail closed: a number the list cannot be matched against
                    # might be on it.
                    rule = "blacklist" if name == "company" else f"classes_of_service.{name}.blacklist"
                    return verdict(False, "unverifiable_number", rule,
                                   f"{number} has no E.164 form (its number plan has no country_code and its"
                                   f" trunk is not sent E.164), so black list {number_list.key!r} ({scope})"
                                   " cannot be checked")
                found = number_list.find(listed)
                if found is not None:
                    index, pattern, matched = found
                    return verdict(False, "blacklisted", f"number_lists.{number_list.key}[{index}]",
                                   f"{matched} matches {pattern.text} on black list {number_list.key!r} ({scope})")
        for link in chain:
            for number_list in link.whitelist:
                found = number_list.find(listed)
                if found is not None:
                    index, pattern, matched = found
                    return verdict(True, "whitelisted", f"number_lists.{number_list.key}[{index}]",
                                   f"{matched} matches {pattern.text} on white list {number_list.key!r}"
                                   f" of class of service {link.key!r}")
        only = next((link for link in chain if link.whitelist_only is not None), None)
        if only is not None and only.whitelist_only:
            names = ", ".join(repr(n.key) for link in chain for n in link.whitelist) or "none"
            return verdict(False, "not_on_whitelist", f"classes_of_service.{only.key}.whitelist_only",
                           f"{number} is on none of the white lists ({names}) and class of service"
                           f" {only.key!r} may dial only those")

    if profile is None:
        if call_class == INTERNAL:
            return verdict(True, "allowed", source.rule, "internal calls are allowed")
        return verdict(False, f"{call_class}_not_allowed", source.rule,
                       f"{call_class} is not allowed without a class of service")

    # Rules in force now, nearest class of service first; deny beats allow.
    allowing: tuple[str, str] | None = None
    waiting: list[TimedRule] = []  # would allow, but not now
    for link in chain:
        for timed in link.when:
            if call_class not in timed.allow and call_class not in timed.deny:
                continue
            active, why = timed.in_force(at)
            trail.append(Step(rule=timed.rule, outcome=why))
            if not active:
                if call_class in timed.allow:
                    waiting.append(timed)
                continue
            if call_class in timed.deny:
                return verdict(False, f"{call_class}_barred", timed.rule,
                               f"{call_class} is denied {timed.label}")
            allowing = allowing or (timed.rule, f"{call_class} is allowed {timed.label}")
        if call_class in link.deny:
            return verdict(False, f"{call_class}_barred", f"classes_of_service.{link.key}.deny",
                           f"{call_class} is denied by class of service {link.key!r}")
        if call_class in link.allow and allowing is None:
            allowing = (f"classes_of_service.{link.key}.allow",
                        f"{call_class} is allowed by class of service {link.key!r}")
    if allowing is not None:
        return verdict(True, "allowed", *allowing)
    if call_class == INTERNAL:
        return verdict(True, "allowed", f"classes_of_service.{profile.key}",
                       "internal calls are allowed unless denied")
    if waiting:
        timed = waiting[0]
        return verdict(False, f"{call_class}_not_allowed", timed.rule,
                       f"{call_class} is allowed only {timed.label}, and that is not now")
    return verdict(False, f"{call_class}_not_allowed", f"classes_of_service.{profile.key}",
                   f"{call_class} is not among the classes class of service {profile.key!r} allows")


def forward_refusal(plan: Dialplan, extension: Extension, target: str, at: datetime) -> str | None:
    """Why ``extension`` may not forward its calls to ``target``, or None.

    A forward is a call placed on the extension's behalf and billed to it,
    so it may point at an extension, a hunt group, or a number the
    extension itself may dial (its class of service), never elsewhere:
    otherwise a forward would be a way round the rights (toll fraud).
    """
    if target == extension.number:
        return f"{extension.number} cannot forward to itself"
    if plan.extension(target) is not None or target in plan.hunt_groups:
        return None
    verdict = check_number(plan, extension, target, at)
    if not verdict.allowed:
        return f"{extension.number} may not dial {target} ({verdict.reason}, rule {verdict.rule})"
    return None
