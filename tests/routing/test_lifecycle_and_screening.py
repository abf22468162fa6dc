"""Routing of the number lifecycle (status, valid_from/valid_until) and of
incoming black and white lists: decisions compared row by row, and the
loader's messages with positions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pbx.routing.engine import CallRequest, Reject, Ring, ToTrunk, decide
from pbx.routing.loader import check_dialplan, load_dialplan

PLAN = """\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  sales: {name: Sales, class_of_service: out}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}
  1002: {name: Binh, department: sales, password: binh-secret-1002, status: suspended}
  1003: {name: Chau, department: sales, password: chau-secret-1003, status: retired}
  1004: {name: Dung, department: sales, password: dung-secret-1004, status: suspended, inactive_status: 404}
  1005: {name: Expo desk, department: sales, password: expo-secret-1005, project: expo,
         valid_from: "2026-12-01", valid_until: "2026-12-31"}
  1006: {name: Giang, department: sales, password: giang-secret-1006,
         incoming: {whitelist: [family], whitelist_only: true}}
number_plans:
  vietnam:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "11[345]", class: emergency}
      - {pattern: "0[35789]XXXXXXXX", class: mobile}
number_lists:
  nuisance: ["+84 90 999 XXXX"]
  partners: ["+84 90 999 0001"]
  family: ["+84 91 111 2222"]
  customers: ["+84 98 XXX XXXX"]
classes_of_service:
  out: {allow: [mobile]}
trunks:
  viettel: {gateways: [{host: 198.51.100.1}]}
routes:
  - {name: vn, trunk: viettel}
inbound:
  "+842873000100": {extension: "1001"}
  "+842873000102": {extension: "1002"}
  "+842873000105": {extension: "1005"}
  "+842873000106": {extension: "1006"}
  "+842873000300": {extension: "1001"}
incoming:
  blacklist: [nuisance]
  whitelist: [partners]
  dids:
    "+842873000300": {whitelist: [customers], whitelist_only: true}
"""

ON = datetime(2026, 12, 10, 3, 0, tzinfo=UTC)
BEFORE = datetime(2026, 11, 30, 16, 59, tzinfo=UTC)   # 23:59 on 30 November in Ho Chi Minh City
LAST_MINUTE = datetime(2026, 12, 31, 16, 59, tzinfo=UTC)  # 23:59 on 31 December there
AFTER = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)      # midnight: the number has expired


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> object:
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    path.write_text(PLAN)
    return load_dialplan(path)


def outcome(decision: object) -> tuple[object, ...]:
    if isinstance(decision, Reject):
        return ("reject", decision.status, decision.reason, decision.rule)
    if isinstance(decision, Ring):
        return ("ring", decision.extension.number)
    assert isinstance(decision, ToTrunk)
    return ("trunk", decision.number)


@pytest.mark.parametrize(("caller", "dialled", "at", "expected"), [
    ("1001", "1002", ON, ("reject", 480, "extension_suspended", "extensions.1002.status")),
    ("1001", "1003", ON, ("reject", 404, "extension_retired", "extensions.1003.status")),
    ("1001", "1004", ON, ("reject", 404, "extension_suspended", "extensions.1004.status")),
    ("1001", "1005", BEFORE, ("reject", 480, "extension_not_yet_valid", "extensions.1005.valid_from")),
    ("1001", "1005", ON, ("ring", "1005")),
    ("1001", "1005", LAST_MINUTE, ("ring", "1005")),
    ("1001", "1005", AFTER, ("reject", 480, "extension_expired", "extensions.1005.valid_until")),
    ("1002", "1001", ON, ("reject", 403, "caller_suspended", "extensions.1002.status")),
    ("1002", "0912345678", ON, ("reject", 403, "caller_suspended", "extensions.1002.status")),
    ("1002", "113", ON, ("trunk", "113")),  # emergency numbers are never blocked
    ("1005", "0912345678", AFTER, ("reject", 403, "caller_expired", "extensions.1005.valid_until")),
    ("1005", "0912345678", ON, ("trunk", "0912345678")),
])
def test_lifecycle_of_callers_and_callees(plan: object, caller: str, dialled: str, at: datetime,
                                          expected: tuple[object, ...]) -> None:
    from pbx.routing.dialplan import Dialplan

    assert isinstance(plan, Dialplan)
    decision = decide(CallRequest(caller=plan.extensions[caller], dialled=dialled, at=at, caller_number=caller),
                      plan)
    assert outcome(decision) == expected


@pytest.mark.parametrize(("did", "presented", "at", "expected"), [
    ("+842873000100", "0909990005", ON, ("reject", 603, "caller_blocked", "incoming.blacklist[0]")),
    ("+842873000100", "+84909990005", ON, ("reject", 603, "caller_blocked", "incoming.blacklist[0]")),
    ("+842873000100", "0909990001", ON, ("ring", "1001")),   # a partner: the white list beats the black one
    ("+842873000100", "0912345678", ON, ("ring", "1001")),
    ("+842873000100", "", ON, ("ring", "1001")),             # withheld: on no black list
    ("+842873000300", "0981234567", ON, ("ring", "1001")),   # a customer on the support line
    ("+842873000300", "0912345678", ON,
     ("reject", 603, "caller_blocked", "incoming.dids.+842873000300.whitelist_only")),
    ("+842873000300", "", ON, ("reject", 603, "caller_blocked", "incoming.dids.+842873000300.whitelist_only")),
    ("+842873000106", "0911112222", ON, ("ring", "1006")),
    ("+842873000106", "0912345678", ON, ("reject", 603, "caller_blocked", "extensions.1006.incoming.whitelist_only")),
    ("+842873000102", "0912345678", ON, ("reject", 480, "extension_suspended", "extensions.1002.status")),
    ("+842873000105", "0912345678", AFTER, ("reject", 480, "extension_expired", "extensions.1005.valid_until")),
])
def test_callers_from_outside_are_screened_and_inactive_numbers_refused(
        plan: object, did: str, presented: str, at: datetime, expected: tuple[object, ...]) -> None:
    from pbx.routing.dialplan import Dialplan

    assert isinstance(plan, Dialplan)
    decision = decide(CallRequest(caller=None, trunk="viettel", dialled=did, at=at, caller_number=presented), plan)
    assert outcome(decision) == expected


def test_loader_reports_lifecycle_and_list_mistakes_where_they_are(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace('valid_until: "2026-12-31"', 'valid_until: "2026-11-30"')
                    .replace("whitelist: [family]", "whitelist: [famly]")
                    .replace('"+842873000300": {whitelist', '"+842873000999": {whitelist')
                    .replace("status: retired", "status: gone"))
    found = [f"{p.line}:{p.column}: {p.message}" for p in check_dialplan(path)]
    assert found == [
        "8:77: 'status' of extension '1003' must be one of 'active', 'suspended', 'retired'",
        "11:49: extension '1005': valid_until must be after valid_from",
        "13:33: extension '1006' names unknown number list 'famly'; did you mean 'family'?",
        "43:5: incoming lists for '+842873000999', which is not one of the inbound numbers;"
        " did you mean '+842873000300'?",
    ]


def test_incoming_blocked_is_refuse_or_announce(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("  blacklist: [nuisance]\n", "  blacklist: [nuisance]\n  blocked: announce\n"))
    assert load_dialplan(path).incoming.announce is True
    path.write_text(PLAN.replace("  blacklist: [nuisance]\n", "  blacklist: [nuisance]\n  blocked: shout\n"))
    assert [f"{p.line}:{p.column}: {p.message}" for p in check_dialplan(path)] == [
        "41:12: incoming blocked 'shout' must be refuse (603 at once) or announce (say 'not available' in early"
        " media, then 603)"]
