"""Who is asked for an account code, and what the call may do with one:
modes by company, department and extension; internal, short-number and
emergency calls never ask; a code dialled before the number; the walking
class of service; the settings and their problems with positions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pbx.routing.account_codes import masked, split_prefixed
from pbx.routing.dialplan import Dialplan
from pbx.routing.engine import (CallRequest, CodeRequired, Decision, Reject, Ring, RingMember, ToTrunk, decide,
                                decide_with_code)
from pbx.routing.explain import explain_call
from pbx.routing.loader import check_dialplan, load_dialplan

PLAN = """\
domain: pbx.example.com
account_codes:
  mode: none
  length: 6
  prefix: "*11"
  attempts: 2
  lockout: {failures: 4, window: 120, lock_seconds: 60, flag_after: 7}
departments:
  office: {name: Office, class_of_service: local_only}
  accounting: {name: Accounting, class_of_service: local_only, account_codes: all_outbound}
extensions:
  1001: {name: Boss, department: office, password: boss-secret-1001, class_of_service: everything}
  1008: {name: Mai, department: accounting, password: mai-secret-1008}
  1099: {name: Reception, department: office, password: reception-1099, account_codes: restricted}
  1100: {name: Clerk, department: office, password: clerk-secret-1100}
number_plans:
  vietnam:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    area_code: "28"
    entries:
      - {pattern: "11[345]", class: emergency}
      - {pattern: "00 .", class: international}
      - {pattern: "0[35789] XXXX XXXX", class: mobile}
      - {pattern: "[2-9] XXX XXXX", class: local}
number_lists:
  fraud: ["+53"]
blacklist: [fraud]
classes_of_service:
  local_only: {allow: [local]}
  everything: {allow: [local, mobile, international]}
trunks:
  provider:
    gateways: [{host: 127.0.0.1, port: 5070}]
    rewrites:
      - {match: "00", strip: 2, prepend: "+"}
      - {match: "0", strip: 1, prepend: "+84"}
      - {match: "", prepend: "+8428"}
routes:
  - {name: emergency, classes: [emergency], trunk: provider}
  - {name: out, pattern: "X.", trunk: provider}
groups:
  office:
    name: Office
    members:
      601: {name: Boss, extension: "1001"}
      602: {name: Reception, extension: "1099", mobile: "0903000102"}
"""

AT = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)
INTERNATIONAL, MOBILE, LOCAL = "0081312345678", "0912345678", "38221234"


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Dialplan:
    path = tmp_path_factory.mktemp("codes") / "plan.yaml"
    path.write_text(PLAN)
    return load_dialplan(path)


def request(plan: Dialplan, caller: str, dialled: str, *, given: bool = False) -> CallRequest:
    return CallRequest(caller=plan.extensions[caller], dialled=dialled, at=AT, caller_number=caller,
                       code_given=given)


def summary(decision: Decision) -> str:
    if isinstance(decision, CodeRequired):
        return f"code:{decision.mode}"
    if isinstance(decision, Reject):
        return f"reject:{decision.reason}"
    return type(decision).__name__


@pytest.mark.parametrize(("caller", "dialled", "expected"), [
    # restricted: its own class of service freely, the rest asks for a code
    ("1099", LOCAL, "ToTrunk"),
    ("1099", MOBILE, "code:restricted"),
    ("1099", INTERNATIONAL, "code:restricted"),
    ("1099", "113", "ToTrunk"),                       # emergency never asks
    ("1099", "1100", "Ring"),                         # internal never asks
    ("1099", "601", "RingMember"),                    # nor a short number
    ("1099", "005312345678", "reject:blacklisted"),   # no code opens a black list
    ("1099", "0012", "code:restricted"),
    # all_outbound (the department's): every outside call
    ("1008", LOCAL, "code:all_outbound"),
    ("1008", INTERNATIONAL, "code:all_outbound"),
    ("1008", "115", "ToTrunk"),
    ("1008", "1001", "Ring"),
    # none (the company default): refused as before
    ("1100", MOBILE, "reject:mobile_not_allowed"),
    ("1100", LOCAL, "ToTrunk"),
])
def test_who_is_asked(plan: Dialplan, caller: str, dialled: str, expected: str) -> None:
    decision = decide(request(plan, caller, dialled), plan)
    assert summary(decision) == expected, decision.steps
    if isinstance(decision, CodeRequired):
        assert decision.steps[-1].rule in (f"extensions.{caller}.account_codes",
                                           "departments.accounting.account_codes")
        assert plan.place(decision.rule) is not None


def test_a_member_mobile_leg_does_not_ask(plan: Dialplan) -> None:
    decision = decide(request(plan, "1001", "602"), plan)
    assert isinstance(decision, RingMember) and decision.mobile is not None


def test_a_code_dialled_with_the_number_is_checked_even_where_nobody_asks(plan: Dialplan) -> None:
    decision = decide(request(plan, "1100", LOCAL, given=True), plan)
    assert isinstance(decision, CodeRequired) and decision.given and decision.mode == "prefix"
    # ... but internal and emergency numbers go as dialled
    assert isinstance(decide(request(plan, "1100", "1001", given=True), plan), Ring)
    assert isinstance(decide(request(plan, "1100", "113", given=True), plan), ToTrunk)


def test_the_call_then_has_the_code_owners_class_of_service(plan: Dialplan) -> None:
    call = request(plan, "1099", INTERNATIONAL)
    allowed = decide_with_code(call, plan, "everything", "#3 Boss")
    assert isinstance(allowed, ToTrunk) and allowed.number == "+81312345678"
    assert allowed.steps[0].outcome == "account code #3 Boss: class of service 'everything' instead of 1099's own"
    refused = decide_with_code(call, plan, "local_only", "#4 Clerk")
    assert isinstance(refused, Reject) and refused.reason == "international_not_allowed"
    unknown = decide_with_code(call, plan, "gone", "#5 Old")
    assert isinstance(unknown, Reject) and unknown.reason == "unknown_class_of_service"
    # The black list holds whatever the code.
    assert isinstance(decide_with_code(request(plan, "1099", "005312345678"), plan, "everything", "#3"), Reject)


def test_the_settings_are_read(plan: Dialplan) -> None:
    settings = plan.account_codes
    assert (settings.mode, settings.length, settings.prefix, settings.attempts) == ("none", 6, "*11", 2)
    assert (settings.lockout.failures, settings.lockout.window, settings.lockout.lock_seconds,
            settings.lockout.flag_after) == (4, 120, 60, 7)
    assert plan.account_code_mode(plan.extensions["1008"]) == ("all_outbound", "departments.accounting.account_codes")
    assert plan.account_code_mode(plan.extensions["1100"]) == ("none", "account_codes.mode")


@pytest.mark.parametrize(("dialled", "code", "number"), [
    ("*11483948#0912345678", "483948", "0912345678"),
    ("*11483948%230912345678", "483948", "0912345678"),
    ("*11#0912345678", None, None),
    ("*11483948", None, None),
    ("*114839a8#0912345678", None, None),
    ("*12483948#0912345678", None, None),
])
def test_a_code_before_the_number(dialled: str, code: str | None, number: str | None) -> None:
    found = split_prefixed(dialled, "*11")
    assert (found.code if found else None, found.number if found else None) == (code, number)
    if found is not None and code is not None:
        assert code not in repr(found) and code not in masked(dialled, "*11")
        assert masked(dialled, "*11") == "*11(code)#0912345678"


def test_explain_says_when_a_code_is_asked_and_what_it_opens(plan: Dialplan) -> None:
    text = explain_call(plan, "1099", INTERNATIONAL, AT)
    assert "decision: the PBX answers and asks for an account code, ended by #" in text
    assert "everything: allowed, through trunk provider as +81312345678" in text
    assert "local_only: refused with 403 (international_not_allowed)" in text


def test_problems_are_reported_at_their_place(tmp_path: Path) -> None:
    bad = PLAN.replace("  mode: none\n", "  mode: always\n").replace('prefix: "*11"', 'prefix: "*8"') \
        .replace("  1100: {name: Clerk, department: office, password: clerk-secret-1100}",
                 "  1100: {name: Clerk, department: office, password: clerk-secret-1100, account_codes: yes}") \
        + 'feature_codes:\n  "*8": call pickup\n'
    path = tmp_path / "plan.yaml"
    path.write_text(bad)
    problems = [str(problem) for problem in check_dialplan(path)]
    lines = bad.splitlines()
    mode_line = next(n for n, text in enumerate(lines, start=1) if "mode: always" in text)
    assert any(p.startswith(f"{path}:{mode_line}:9: account_codes 'always' must be none, all_outbound")
               for p in problems), problems
    assert any("account_codes prefix '*8' overlaps feature code '*8'" in p for p in problems), problems
    clerk_line = next(n for n, text in enumerate(lines, start=1) if "account_codes: yes" in text)
    assert any(p.startswith(f"{path}:{clerk_line}:") and "account_codes 'yes' must be" in p for p in problems), problems


def test_a_code_carries_the_same_rights_from_any_phone(plan: Dialplan) -> None:
    """Whichever phone it is keyed on (restricted, all_outbound, or none with
    the dial prefix; each phone's own class of service only local), the code
    opens what its class of service opens and nothing else."""
    for caller, given in (("1099", False), ("1008", False), ("1100", True)):
        assert isinstance(decide(request(plan, caller, INTERNATIONAL, given=given), plan), CodeRequired), caller
        call = request(plan, caller, INTERNATIONAL, given=given)
        allowed = decide_with_code(call, plan, "everything", "#3 Boss")
        assert isinstance(allowed, ToTrunk), (caller, allowed)
        assert (allowed.trunk, allowed.number, allowed.call_class) == ("provider", "+81312345678", "international")
        refused = decide_with_code(call, plan, "local_only", "#4 Clerk")
        assert isinstance(refused, Reject) and refused.reason == "international_not_allowed", caller
