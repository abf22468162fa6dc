"""Numbers in E.164 (issue 12 §3): what a number plan's country facts make
of a dialled number, what may be sent to a trunk, list entries written in
E.164 that hold whatever prefix the caller used, and the refusals for
numbers that are not numbers (``00*53…``, ``00+53…``, ``0000053…``)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from pbx.cli.main import main
from pbx.routing.dialplan import Dialplan
from pbx.routing.engine import CallRequest, Decision, Reject, ToTrunk, decide
from pbx.routing.loader import check_dialplan, load_dialplan
from pbx.routing.numbering import (InE164, Malformed, NotE164, Numbering, dialled_form, list_entry, sendable,
                                  to_e164)
from pbx.routing.patterns import PatternError, parse_pattern
from pbx.routing.rights import check_number
from tests.routing.test_loader import EXAMPLE

PLAN: Dialplan = load_dialplan(EXAMPLE)
BUSINESS = datetime(2027, 3, 10, 3, 0, tzinfo=timezone.utc)  # Wed 10:00 HCMC, 11:00 Taipei

VIETNAM = Numbering(country_code="84", national_prefix="0", international_prefixes=("00",), area_code="28")
TAIWAN = Numbering(country_code="886", national_prefix="0",
                   international_prefixes=("002", "005", "006", "007", "009"), area_code="2")


def route(caller: str, dialled: str, plan: Dialplan = PLAN, at: datetime = BUSINESS) -> Decision:
    return decide(CallRequest(caller=plan.extensions[caller], dialled=dialled, at=at, caller_number=caller), plan)


# ---------------------------------------------------------------- to E.164


@pytest.mark.parametrize(
    ("numbering", "number", "local", "e164", "fact"),
    [
        (VIETNAM, "0081312345678", False, "+81312345678", "international_prefixes"),
        (VIETNAM, "0912345678", False, "+84912345678", "national_prefix"),
        (VIETNAM, "38221234", True, "+842838221234", "area_code"),
        (VIETNAM, "19001234", False, "+8419001234", "country_code"),
        (VIETNAM, "+84912345678", False, "+84912345678", ""),
        (TAIWAN, "00253712345", False, "+53712345", "international_prefixes"),
        (TAIWAN, "00553712345", False, "+53712345", "international_prefixes"),
        (TAIWAN, "0227200100", False, "+886227200100", "national_prefix"),
        (TAIWAN, "27201234", True, "+886227201234", "area_code"),
    ],
)
def test_to_e164(numbering: Numbering, number: str, local: bool, e164: str, fact: str) -> None:
    found = to_e164(number, numbering, local=local)
    assert isinstance(found, InE164)
    assert (found.number, found.fact) == (e164, fact)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("0000053712345678", "no country code begins with 0"),
        ("00*53712345678", "'*' is not a digit"),
        ("00+53712345678", "'+' is not a digit"),
        ("0012345678901234567", "17 digits, E.164 allows at most 15"),
        ("00", "nothing follows the prefix"),
        ("0#1", "'#' is not a digit"),
    ],
)
def test_what_is_no_number_in_e164(number: str, why: str) -> None:
    found = to_e164(number, VIETNAM)
    assert isinstance(found, Malformed)
    assert found.why.endswith(f"which is no number: {why}")


@pytest.mark.parametrize(
    ("number", "expected"),
    [("+84912345678", True), ("0912345678", True), ("00553712345", True), ("113", True),
     ("+*53712345678", False), ("++53712345678", False), ("+00053712345678", False), ("+1234567890123456", False),
     ("*97", False), ("09#1", False), ("", False), ("0053;user=phone", False), ("00%2A53", False), ("+", False),
     ("0" * 21, False)],
)
def test_only_e164_or_national_digits_may_be_sent(number: str, expected: bool) -> None:
    assert sendable(number) is expected


def test_facts_check_themselves() -> None:
    with pytest.raises(ValueError, match="country code"):
        Numbering(country_code="084")
    with pytest.raises(ValueError, match="digits"):
        Numbering(country_code="84", international_prefixes=("0x",))


# ---------------------------------------------------------------- patterns and list entries


def test_an_open_tail_takes_digits_only() -> None:
    international = parse_pattern("00 .")
    assert international.matches("0053712345678")
    for trick in ("00*53712345678", "00+53712345678", "00#53", "0053*"):
        assert not international.matches(trick), trick
    assert parse_pattern("*9 X!").matches("*91")  # named characters still match


@pytest.mark.parametrize(
    ("pattern", "number", "expected"),
    [("[2-9] XXX XXXX", "7777", True), ("[2-9] XXX XXXX", "77777777", False), ("00 .", "00", True),
     ("00 .", "00*", False), ("1080", "10", True), ("1080", "1080", False), ("11[2345]", "11", True),
     ("0X!", "0", True), ("0X!", "1", False)],
)
def test_could_extend(pattern: str, number: str, expected: bool) -> None:
    assert parse_pattern(pattern).could_extend(number) is expected


def test_regular_expressions_cannot_say_whether_a_number_is_incomplete() -> None:
    assert parse_pattern("^00[0-9]+$").could_extend("00") is None


@pytest.mark.parametrize(
    ("entry", "matches", "misses"),
    [
        ("+53", ["+53712345678", "+5371"], ["+52712345678", "+253712345"]),  # a country code: all of it
        ("+53 .", ["+53712345678"], ["+52712345678"]),
        ("+84 28 3822 XXXX", ["+842838221234"], ["+8428382212345", "02838221234"]),
        ("^\\+88[23][0-9]+$", ["+88212345"], ["+88112345"]),
    ],
)
def test_list_entries_are_e164(entry: str, matches: list[str], misses: list[str]) -> None:
    pattern = list_entry(entry)
    assert pattern.text == entry
    assert all(pattern.matches(n) for n in matches)
    assert not any(pattern.matches(n) for n in misses)


@pytest.mark.parametrize("entry", ["00 53 .", "0903 123 456", "1900 6XXX", "53", "^00[0-9]+$", "^53"])
def test_list_entries_in_a_dialled_form_are_refused(entry: str) -> None:
    with pytest.raises(NotE164):
        list_entry(entry)


def test_a_bad_list_entry_is_a_pattern_error_first() -> None:
    with pytest.raises(PatternError) as caught:
        list_entry("12a")
    assert not isinstance(caught.value, NotE164)


# ---------------------------------------------------------------- the example's numbers


@pytest.mark.parametrize(
    ("caller", "dialled", "status", "reason"),
    [
        # The attack run's numbers: none is a number, so none reaches a trunk.
        ("1001", "00*53712345678", 404, "unknown_number"),
        ("1001", "00+53712345678", 404, "unknown_number"),
        ("1001", "0000053712345678", 404, "malformed_number"),
        ("1001", "00#53712345678", 404, "unknown_number"),
        ("1001", "0053712345678*", 404, "unknown_number"),
        ("1001", "+53712345678", 403, "blacklisted"),  # dialled in E.164: the black list sees +53
        ("1001", "0912*345678", 404, "unknown_number"),
        # More digits would make these numbers: RFC 3261 §21.4.22.
        ("1001", "00", 484, "incomplete_number"),
        ("1001", "091234567", 484, "incomplete_number"),
        ("1001", "100", 484, "incomplete_number"),  # extension 1001 begins so
        ("1010", "002", 484, "incomplete_number"),
        ("1010", "002*53712345", 404, "unknown_number"),
        # Cuba from every international prefix of either plan: one entry, +53.
        ("1001", "0053712345678", 403, "blacklisted"),
        ("1010", "00253712345", 403, "blacklisted"),
        ("1010", "00553712345", 403, "blacklisted"),
        ("1010", "00953712345", 403, "blacklisted"),
        ("1001", "0088212345678", 403, "blacklisted"),
        ("1010", "0028821234567", 403, "blacklisted"),
    ],
)
def test_numbers_that_must_not_leave(caller: str, dialled: str, status: int, reason: str) -> None:
    decision = route(caller, dialled)
    assert isinstance(decision, Reject), decision
    assert (decision.status, decision.reason) == (status, reason), decision.detail


@pytest.mark.parametrize(
    ("caller", "dialled", "number", "e164"),
    [
        # 002 + 52 is Mexico from Taipei: the old "00 252 ." entry for
        # Somalia refused it; "+252" does not.
        ("1010", "00252712345", "+52712345", "+52712345"),
        ("1010", "00552712345", "00552712345", "+52712345"),  # sent as dialled, through carrier 005
        ("1010", "0227201234", "0227201234", "+886227201234"),
        ("1001", "0081312345678", "+81312345678", "+81312345678"),
        ("1001", "38221234", "+842838221234", "+842838221234"),
        ("1001", "113", "113", None),  # emergency: no E.164 form, never listed
    ],
)
def test_what_goes_out_and_its_e164_form(caller: str, dialled: str, number: str, e164: str | None) -> None:
    decision = route(caller, dialled)
    assert isinstance(decision, ToTrunk), decision
    assert (decision.number, decision.e164) == (number, e164)


def test_white_list_matches_the_e164_form_of_a_local_number() -> None:
    # "+84 28 3822 XXXX" holds the customer's switchboard dialled with its
    # area code (028 3822 ...) and without it (3822 ...).
    for dialled in ("02838221234", "38221234"):
        verdict = check_number(PLAN, PLAN.extensions["1007"], dialled, BUSINESS)
        assert (verdict.allowed, verdict.reason, verdict.rule) == (True, "whitelisted", "number_lists.customers[2]")


def test_a_leg_for_someone_is_refused_like_their_own_call() -> None:
    verdict = check_number(PLAN, PLAN.extensions["1001"], "00*53712345678", BUSINESS)
    assert (verdict.allowed, verdict.reason) == (False, "unknown_number")
    verdict = check_number(PLAN, PLAN.extensions["1001"], "0000053712345678", BUSINESS)
    assert (verdict.allowed, verdict.reason) == (False, "malformed_number")


def test_a_refused_number_is_never_a_trunk_call() -> None:
    with pytest.raises(ValueError):
        ToTrunk(trunk="viettel", number="+*53712345678", caller_id=None, rule="routes.x", call_class="international")


# ---------------------------------------------------------------- plans and trunks that disagree


BASE = """\
domain: pbx.example.com
departments:
  sales: {name: Sales, class_of_service: world}
extensions:
  1001: {name: An, department: sales, password: "correct horse"}
classes_of_service:
  world: {allow: [international, mobile]}
trunks:
  t:
    gateways: [{host: 127.0.0.1}]
    rewrites: [%s]
routes:
  - {name: r, trunk: t}
"""
FACTS = """\
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "00 .", class: international}
      - {pattern: "^0[35789][0-9]{8}$", class: mobile}
"""
BARE = """\
number_plans:
  vn:
    - {pattern: "00 .", class: international}
    - {pattern: "^0[35789][0-9*]{8}$", class: mobile}
"""
LISTS = """\
number_lists:
  fraud: ["+53"]
blacklist: [fraud]
"""


def plan_of(tmp_path: Path, rewrites: str, numbers: str, lists: str = "") -> Dialplan:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE % rewrites + numbers + lists, encoding="utf-8")
    return load_dialplan(path)


def test_a_rewrite_that_makes_no_number_is_refused(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, '{match: "00", strip: 2, prepend: "+"}', BARE)
    decision = route("1001", "0000053712345678", plan)
    assert isinstance(decision, Reject)
    assert (decision.status, decision.reason, decision.rule) == (404, "malformed_number", "trunks.t.rewrites[0]")
    # A regex entry that takes '*' classifies it; the trunk is still not sent it.
    decision = route("1001", "09*2345678", plan)
    assert isinstance(decision, Reject) and decision.reason == "malformed_number"


def test_a_trunk_that_sends_another_e164_number_than_the_plan_makes_is_refused(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, '{match: "0", strip: 1, prepend: "+886"}', FACTS)
    decision = route("1001", "0912345678", plan)
    assert isinstance(decision, Reject)
    assert (decision.status, decision.reason) == (500, "number_mismatch")
    assert "+886912345678" in decision.detail and "+84912345678" in decision.detail


def test_without_facts_the_trunk_e164_form_is_matched(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, '{match: "00", strip: 2, prepend: "+"}', BARE, LISTS)
    decision = route("1001", "0053712345678", plan)
    assert isinstance(decision, Reject) and decision.reason == "blacklisted", decision
    assert decision.steps[-1].outcome == "+53712345678 matches +53 on black list 'fraud' (company-wide)"


def test_without_any_e164_form_a_black_list_refuses(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, "", BARE, LISTS)  # the trunk is sent 0053...: no E.164 anywhere
    decision = route("1001", "0053712345678", plan)
    assert isinstance(decision, Reject)
    assert (decision.status, decision.reason, decision.rule) == (403, "unverifiable_number", "blacklist")


def test_with_facts_a_national_trunk_is_still_checked(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, "", FACTS, LISTS)  # sent as dialled, listed by its E.164 form
    decision = route("1001", "0053712345678", plan)
    assert isinstance(decision, Reject) and decision.reason == "blacklisted"
    decision = route("1001", "0052712345678", plan)
    assert isinstance(decision, ToTrunk) and (decision.number, decision.e164) == ("0052712345678", "+52712345678")


# ---------------------------------------------------------------- pbx check


CHECKED = """\
domain: pbx.example.com
departments:
  sales: {name: Sales, class_of_service: sales}
extensions:
  1001: {name: An, department: sales, password: "correct horse"}
number_plan: vn
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "00 .", class: international}
      - {pattern: "0[35789] XXXX XXXX", class: mobile}
      - {pattern: "1900 XXXX", class: premium}
number_lists:
  old: ["00 53 .", "0903 123 456", "1900 6XXX", "^00"]
  new: ["+53", "+0 1 .", "+84 *1", "+84 1900 6XXX"]
blacklist: [old, new]
classes_of_service:
  sales: {allow: [mobile]}
trunks:
  t: {gateways: [{host: 127.0.0.1}]}
routes:
  - {name: r, trunk: t}
"""
WHY = ("is not in E.164: list entries are matched against the number in E.164 (+ and the country code),"
       " whatever prefix the caller dialled; write it as")


def test_check_names_the_old_list_form_and_lists_no_plan_can_produce(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plan.yaml").write_text(CHECKED, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_dialplan("plan.yaml")] == [
        f"plan.yaml:17:9: number list entry '00 53 .' {WHY} '+53 .'",
        f"plan.yaml:17:20: number list entry '0903 123 456' {WHY} '+84903123456'",
        f"plan.yaml:17:36: number list entry '1900 6XXX' {WHY} '+8419006XXX'",
        "plan.yaml:17:49: number list entry '^00' is not in E.164: a regular expression in a list is matched"
        " against the number in E.164, so it must begin with ^\\+; write it with + and the country code"
        " (+53 for Cuba)",
        "plan.yaml:18:16: warning: no number plan can produce list entry '+0 1 .': no number a caller may dial"
        " has this E.164 form",
        "plan.yaml:18:26: warning: no number plan can produce list entry '+84 *1': no number a caller may dial"
        " has this E.164 form",
    ]


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ("country_code: 84", "plan.yaml:9:19: 'country_code' of number plan 'vn' must be a string, not an integer;"
                             " put the value in quotes"),
        ("country_code: '084'", "plan.yaml:9:19: 'country_code' of number plan 'vn' must be 1 to 3 digits, not"
                                " starting with 0, in quotes (\"84\")"),
        ("country_code: '84'\n    international_prefixes: ['0x']",
         "plan.yaml:10:30: 'international_prefixes[0]' of number plan 'vn' must be digits in quotes (\"00\")"),
        ("national_prefix: '0'", "plan.yaml:8:3: number plan 'vn' is missing required key 'country_code'"),
    ],
)
def test_facts_are_checked_with_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, facts: str,
                                       expected: str) -> None:
    text = CHECKED.replace("""    country_code: "84"\n""", "").replace("""    national_prefix: "0"\n""", f"    {facts}\n")
    (tmp_path / "plan.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert str(check_dialplan("plan.yaml")[0]) == expected


def test_a_plan_without_facts_is_a_warning_where_lists_are_used(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plan.yaml").write_text(BASE % "" + BARE + LISTS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_dialplan("plan.yaml")] == [
        "plan.yaml:15:3: warning: number plan 'vn' has no country_code: lists see its numbers in E.164 only where"
        " their trunk is sent E.164, and black lists refuse the rest (unverifiable_number)",
    ]


def _line_of(text: str) -> int:
    """The line of the example dialplan that holds ``text`` (1-based)."""
    (number,) = [n for n, line in enumerate(EXAMPLE.read_text(encoding="utf-8").splitlines(), 1) if text in line]
    return number


def test_rules_of_a_plan_with_facts_have_places() -> None:
    entry = _line_of('pattern: "002 .", class: international')
    assert PLAN.place("number_plans.taiwan[5]") == f"{EXAMPLE}:{entry}:9"
    prefixes = _line_of('international_prefixes: ["002"')
    assert (PLAN.place("number_plans.taiwan.international_prefixes") or "").startswith(f"{EXAMPLE}:{prefixes}:")
    assert PLAN.number_plans["taiwan"].numbering == TAIWAN
    assert PLAN.number_plans["vietnam"].numbering == VIETNAM


# ---------------------------------------------------------------- pbx explain


def test_explain_shows_the_e164_form_it_matched_on() -> None:
    result = CliRunner().invoke(main, ["explain", "--dialplan", str(EXAMPLE), "--from", "1010",
                                       "--to", "00553712345", "--at", "2027-03-10 10:00"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "     00553712345 is +53712345 in E.164 (international prefix 005 dropped)" in out
    assert "     +53712345 matches +53 on black list 'fraud_destinations' (company-wide)" in out
    assert "decision: refuse with 403 (blacklisted)" in out
    result = CliRunner().invoke(main, ["explain", "--dialplan", str(EXAMPLE), "--from", "1010",
                                       "--to", "00552712345", "--at", "2027-03-10 10:00"])
    assert "decision: call 00552712345 (E.164 +52712345) through trunk cht, caller ID 0227200100" in result.stdout


# ---------------------------------------------------------------- dialled in E.164


@pytest.mark.parametrize(("numbering", "number", "form"), [
    (VIETNAM, "+84912345678", "0912345678"),
    (VIETNAM, "+81312345678", "0081312345678"),
    (TAIWAN, "+886227200200", "0227200200"),
    (TAIWAN, "+53712345", "00253712345"),
    (VIETNAM, "+*53712345", None),
    (VIETNAM, "0912345678", None),
    (Numbering(country_code="84"), "+81312345678", None),  # no prefix to dial abroad with
])
def test_a_number_dialled_in_e164_takes_the_plans_own_form(numbering: Numbering, number: str,
                                                           form: str | None) -> None:
    assert dialled_form(number, numbering) == form


def test_softphones_dialling_e164_are_routed_and_checked_like_anyone() -> None:
    # A Linphone address book holds +84…: it goes out as the same call as 09…,
    decision = route("1001", "+84912345678")
    assert isinstance(decision, ToTrunk) and (decision.number, decision.e164) == ("+84912345678", "+84912345678")
    assert decision.call_class == "mobile"
    # and the lists and classes see it the same way: +53 is black-listed from Taipei,
    refused = route("1010", "+53712345")
    assert isinstance(refused, Reject) and refused.reason == "blacklisted"
    # while E.164 tricks stay unknown numbers.
    assert isinstance(route("1001", "+84*912345678"), Reject)
