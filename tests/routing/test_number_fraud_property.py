"""Property (issue 12 §3): whatever string a phone of the example dials —
digits, ``*``, ``#``, ``+`` and URI tricks in any order — nothing the
engine sends to a trunk is malformed, or refused by a black list, a white
list or the caller's class of service for its E.164 form.

The E.164 form is worked out here from what the trunk is *sent* (not from
what the engine says it matched on): E.164 as it is, national digits by
the caller's number plan's country facts. So a trunk sent one thing while
the checks saw another fails this test.
"""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pbx.routing.classes import EMERGENCY, LOCAL
from pbx.routing.dialplan import Dialplan, Extension
from pbx.routing.engine import CallRequest, RingMember, ToTrunk, decide
from pbx.routing.loader import load_dialplan
from pbx.routing.numbering import InE164, Numbering, is_e164, sendable, to_e164
from pbx.routing.rights import check_class, class_of_service_for
from tests.routing.test_loader import EXAMPLE

PLAN: Dialplan = load_dialplan(EXAMPLE)
MOMENTS = (
    datetime(2027, 3, 10, 3, 0, tzinfo=timezone.utc),   # Wed 10:00 HCMC: everyone's hours are open
    datetime(2027, 3, 10, 13, 0, tzinfo=timezone.utc),  # Wed 20:00 HCMC: closed
)

# Prefixes that lead somewhere in either plan, then anything.
LEADS = ["", "0", "00", "002", "005", "009", "00870", "0088", "1900", "1800", "09", "028", "+", "+84", "11"]
TRICKS = [
    "*", "#", "+", ";user=phone", ";phone-context=+53", ";isub=1", "%2A", "%2B", "%30", "%", "-", ".", "(", ")",
    " ", "@", "?", ":", "53", "252", "882", "52", "\x00", "０",  # a full-width zero
]
# Mostly digits, so that many strings are numbers that go out and the
# property is tested on real trunk calls, not only on refusals.
_DIGITS = list("0123456789")
dialled = st.builds(
    lambda lead, parts: lead + "".join(parts),
    st.sampled_from(LEADS),
    st.one_of(
        st.lists(st.sampled_from(_DIGITS), min_size=6, max_size=12),  # often a whole number
        st.lists(st.sampled_from(_DIGITS * 10 + ["*", "#", "+"]), min_size=2, max_size=14),
        st.lists(st.sampled_from(_DIGITS * 3 + TRICKS), min_size=1, max_size=14),
    ),
)


def facts(caller: Extension) -> Numbering:
    table = PLAN.number_plan_for(caller)
    assert table is not None and table.numbering is not None
    return table.numbering


def e164_of_sent(number: str, caller: Extension) -> str | None:
    """The E.164 number a trunk sent ``number`` reaches, by the caller's plan."""
    if is_e164(number):
        return number
    table = PLAN.number_plan_for(caller)
    entry = table.classify(number) if table is not None else None
    found = to_e164(number, facts(caller), local=entry is not None and entry.call_class == LOCAL)
    return found.number if isinstance(found, InE164) else None


def refusal(leg: ToTrunk, caller: Extension, at: datetime) -> str | None:
    """Why the lists or the class of service would refuse ``leg``, or None."""
    if not sendable(leg.number):
        return f"{leg.number!r} is not E.164 or national digits"
    if leg.call_class == EMERGENCY:
        return None
    e164 = e164_of_sent(leg.number, caller)
    if e164 is None:
        return f"{leg.number!r} reaches no E.164 number"
    if leg.e164 != e164:
        return f"checked as {leg.e164}, but the trunk is sent {leg.number} ({e164})"
    profile, _ = class_of_service_for(PLAN, caller)
    chain = list(profile.chain()) if profile is not None else []
    for number_list in [*PLAN.blacklist, *(n for link in chain for n in link.blacklist)]:
        if number_list.find((e164,)) is not None:
            return f"{e164} is on black list {number_list.key}"
    whitelists = [n for link in chain for n in link.whitelist]
    if any(link.whitelist_only for link in chain) and not any(n.find((e164,)) for n in whitelists):
        return f"{e164} is on no white list of a whitelist_only class of service"
    if not e164.startswith("+" + facts(caller).country_code) and leg.call_class not in ("international", "satellite"):
        return f"{e164} is abroad but was classified {leg.call_class}"
    verdict = check_class(PLAN, caller, leg.number, leg.call_class, at, e164=e164)
    return None if verdict.allowed else f"class of service: {verdict.reason}"


@settings(max_examples=1000, deadline=None)
@given(number=dialled, caller=st.sampled_from(sorted(PLAN.extensions)), at=st.sampled_from(MOMENTS))
@example(number="00*53712345678", caller="1001", at=MOMENTS[0])
@example(number="00+53712345678", caller="1001", at=MOMENTS[0])
@example(number="0000053712345678", caller="1001", at=MOMENTS[0])
@example(number="00253712345", caller="1010", at=MOMENTS[0])
@example(number="00553712345", caller="1010", at=MOMENTS[0])
def test_nothing_refusable_reaches_a_trunk(number: str, caller: str, at: datetime) -> None:
    person = PLAN.extensions[caller]
    decision = decide(CallRequest(caller=person, dialled=number, at=at, caller_number=caller), PLAN)
    legs = [decision] if isinstance(decision, ToTrunk) else []
    if isinstance(decision, RingMember) and decision.mobile is not None:
        legs.append(decision.mobile)
    for leg in legs:
        why = refusal(leg, person, at)
        assert why is None, (number, caller, why, [f"{s.rule}: {s.outcome}" for s in leg.steps])
