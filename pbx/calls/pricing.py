"""The price of the trunk legs a call places when nobody's budget pays for
them: a hunt group's outside members, a group's overflow to an outside
number, a menu's transfer out of a call that came in from a trunk.

Such legs still cost the company money, so the call's CDR must carry
their cost like any outside call's (issue 13: "the end of every answered
outside call"). A hunt group may ring several outside members through
different trunks or to different kinds of numbers, so each member gets its
own rate and the one whose leg answers prices the call
(:meth:`pbx.calls.call.Call._cost`).

Pure: the tariffs come from the dialplan in force when the call is placed,
so a reload changes prices for new calls only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pbx.calls.fork import Target, TrunkTarget
from pbx.routing.engine import Decision, Hunt, RingMember, ToTrunk
from pbx.routing.tariffs import Billing, Rate

NO_RATES: Mapping[str, Rate] = MappingProxyType({})


def _leg_of(decision: Decision) -> ToTrunk | None:
    if isinstance(decision, ToTrunk):
        return decision
    if isinstance(decision, RingMember):
        return decision.mobile
    return None


def _rate(billing: Billing, leg: ToTrunk) -> Rate | None:
    return billing.rate_for(leg.trunk, leg.call_class, leg.e164 or leg.number)


def member_rates(billing: Billing, decision: Decision) -> Mapping[str, Rate]:
    """The rate of each outside member of a hunt group ``decision``, by
    member key; members no tariff prices are left out."""
    if not isinstance(decision, Hunt):
        return NO_RATES
    found = {key: rate for key, leg in decision.outside if (rate := _rate(billing, leg)) is not None}
    return MappingProxyType(found) if found else NO_RATES


def single_rate(billing: Billing, decision: Decision, targets: tuple[Target, ...]) -> Rate | None:
    """The rate of the one trunk leg of a call that is not a hunt group's
    (``decision`` routed it; the targets show whether it rings a trunk)."""
    leg = _leg_of(decision)
    if leg is None or not any(isinstance(target, TrunkTarget) for target in targets):
        return None
    return _rate(billing, leg)
