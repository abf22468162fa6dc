"""An outside number made ready for a trunk, or refused before anyone's
rights are asked: classified by the caller's number plan, put in E.164,
routed, and rewritten as the trunk will be sent it.

The engine (a number the caller dials) and the rights check for a leg
placed on someone's behalf (:func:`pbx.routing.rights.check_number`) both
start here, so both see one number in one form.

Rules, in order (the first that refuses decides):

1. no entry of the plan matches the *whole* number: ``484 incomplete_number``
   when more digits could make one match, ``404 unknown_number`` otherwise.
   RFC 3261 §21.4.22 gives 484 Address Incomplete to a Request-URI that is
   a prefix of a valid one (an overlap-dialling phone may send more, RFC
   3578); §21.4.5's 404 says the number does not exist here, which no
   further digit changes (``00*53…``: ``*`` is part of no number);
2. an ``internal`` number no extension has: ``404 unknown_extension``;
3. the number has no well-formed E.164 form (``0000053…`` would be
   ``+00053…``): ``404 malformed_number``;
4. the trunk would be sent something that is neither E.164 nor a national
   number of digits (a rewrite that produced ``+*53…``): ``404
   malformed_number``;
5. the trunk would be sent an E.164 number other than the one the plan
   worked out, so the lists would have checked another number than the one
   that leaves: ``500 number_mismatch``, a fault of the configuration (the
   trunk's rewrites disagree with the caller's number plan).

Emergency numbers get no E.164 form and skip rule 5: no list applies to
them and they are never barred.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.routing.classes import EMERGENCY, INTERNAL, LOCAL, NumberPlan, NumberPlanEntry
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.numbering import Malformed, dialled_form, is_e164, sendable, to_e164
from pbx.routing.routes import Route
from pbx.routing.steps import Step
from pbx.routing.trunk_config import Trunk


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A classified outside number, with the forms the checks need."""

    number: str
    """As dialled."""
    entry: NumberPlanEntry
    e164: str | None
    """What lists match on; None for an emergency number, or when the plan
    has no country facts and the trunk is not sent E.164."""
    route: Route | None
    trunk: Trunk | None
    sent: str | None
    """As the trunk will be sent it; None without a route."""
    steps: tuple[Step, ...]

    @property
    def call_class(self) -> str:
        return self.entry.call_class

    @property
    def forms(self) -> tuple[str, ...]:
        """The number as dialled and, if different, as sent."""
        return (self.number,) if self.sent in (None, self.number) else (self.number, str(self.sent))


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why the number cannot go out, whoever dials it."""

    status: int
    reason: str
    rule: str
    call_class: str | None
    steps: tuple[Step, ...]

    @property
    def detail(self) -> str:
        return self.steps[-1].outcome


def classified(number: str, call_class: str, pattern: str, name: str) -> str:
    what = f" ({name})" if name else ""
    return f"{number} is {call_class}{what}, pattern {pattern}"


def prepare(plan: Dialplan, person: Extension, number: str, steps: tuple[Step, ...] = ()) -> Prepared | Refusal:
    """``number`` dialled by (or for) ``person``, ready for the rights
    check, or the refusal the module's rules give."""
    trail = list(steps)

    def refuse(status: int, reason: str, rule: str, outcome: str, call_class: str | None = None) -> Refusal:
        trail.append(Step(rule=rule, outcome=outcome))
        return Refusal(status=status, reason=reason, rule=rule, call_class=call_class, steps=tuple(trail))

    table = plan.number_plan_for(person)
    entry = table.classify(number) if table is not None else None
    if entry is None and table is not None and table.numbering is not None:
        # Dialled in E.164 (a softphone's contact list): the plan's own
        # dialled form is classified and checked like any other number.
        local_form = dialled_form(number, table.numbering)
        if local_form is not None and (entry := table.classify(local_form)) is not None:
            trail.append(Step(rule=f"number_plans.{table.key}.country_code",
                              outcome=f"{number} is dialled in E.164: {local_form} in number plan {table.key!r}"))
            number = local_form
    if table is None or entry is None:
        rule = f"number_plans.{table.key}" if table is not None else "number_plans"
        which = f"number plan {table.key!r}" if table is not None else "any number plan (none applies)"
        if _incomplete(plan, table, number):
            return refuse(484, "incomplete_number", rule,
                          f"{number} is incomplete: no extension or entry of {which} is this number,"
                          " but more digits could make one")
        return refuse(404, "unknown_number", rule, f"{number} is no extension and matches no entry of {which}")
    call_class = entry.call_class
    trail.append(Step(rule=entry.rule, outcome=classified(number, call_class, entry.pattern.text, entry.name)))
    if call_class == INTERNAL:
        return refuse(404, "unknown_extension", entry.rule, f"{number} is an internal number but no extension has it",
                      call_class)

    e164: str | None = None
    numbering = table.numbering
    if call_class != EMERGENCY and numbering is not None:
        found = to_e164(number, numbering, local=call_class == LOCAL)
        if isinstance(found, Malformed):
            return refuse(404, "malformed_number", f"number_plans.{table.key}", found.why, call_class)
        e164 = found.number
        fact = f".{found.fact}" if found.fact else ""
        trail.append(Step(rule=f"number_plans.{table.key}{fact}",
                          outcome=f"{number} is {e164} in E.164 ({found.how})"))

    route = plan.route_for(person, number, call_class)
    trunk = plan.trunks[route.trunk] if route is not None else None
    sent = trunk.outbound_number(number) if trunk is not None else None
    if trunk is not None and sent is not None:
        rewrite = trunk.rewrite_for(number)
        rule = f"trunks.{trunk.key}.rewrites[{rewrite[0]}]" if rewrite is not None else f"trunks.{trunk.key}"
        if not sendable(sent):
            return refuse(404, "malformed_number", rule,
                          f"trunk {trunk.key} would be sent {sent!r} for {number}: neither E.164 (+ and at most"
                          " 15 digits, not 0 first) nor a national number (digits only)", call_class)
        if is_e164(sent) and call_class != EMERGENCY:
            if e164 is None:
                e164 = sent
                trail.append(Step(rule=rule, outcome=f"{number} is {sent} in E.164, as trunk {trunk.key} is sent"
                                  f" it ({_no_facts(table)})"))
            elif sent != e164:
                return refuse(500, "number_mismatch", rule,
                              f"trunk {trunk.key} would be sent {sent} for {number}, but number plan"
                              f" {table.key!r} makes it {e164}: the trunk's rewrites and the plan disagree,"
                              " so the checks would not see the number that leaves", call_class)
    return Prepared(number=number, entry=entry, e164=e164, route=route, trunk=trunk, sent=sent, steps=tuple(trail))


def _no_facts(table: NumberPlan) -> str:
    return f"number plan {table.key!r} has no country_code"


def _incomplete(plan: Dialplan, table: NumberPlan | None, number: str) -> bool:
    """True if ``number`` is the beginning of an extension number or of a
    number the plan classifies."""
    if any(len(other) > len(number) and other.startswith(number) for other in plan.extensions):
        return True
    return table is not None and table.completes(number)
