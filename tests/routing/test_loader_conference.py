"""Loading meet-me rooms: every problem at its place (PINs never shown);
the model built from a good file, PINs only as hashes; routing and
explaining a call to a room."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pbx.routing.engine import CallRequest, Feature, JoinConference, Reject, decide
from pbx.routing.explain import explain_call
from pbx.routing.loader import check_dialplan, load_dialplan

BASE = """\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  office: {name: Office, class_of_service: staff}
extensions:
  1001: {name: An, department: office, password: 'correct horse', language: zh}
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "11[345]", class: emergency}
classes_of_service:
  staff: {allow: [mobile]}
ivr_menus:
  main: {number: "800"}
"""

GOOD = BASE + """\
conferences:
  team: {number: "850", pin: "4321", moderator_pin: "98765", max_members: 5, language: en}
  open: {number: "851"}
"""

BAD = BASE + """\
conferences:
  a: {number: "1001"}
  b: {number: "800"}
  c: {number: "113"}
  d: {number: "851", pin: 12345}
  e: {number: "851", pin: "12"}
  f: {number: "852", pin: "24680", moderator_pin: "24680"}
  g: {number: "853", max_members: 1, colour: red}
  Bad: {number: "854"}
  h: {pin: "13579"}
"""

AT = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return [str(problem) for problem in check_dialplan(path)]


def test_every_problem_at_its_place_and_no_pin_shown(tmp_path: Path) -> None:
    found = problems(tmp_path, BAD)
    text = "\n".join(found)
    lines = BAD.splitlines()
    line_a = next(n for n, t in enumerate(lines, start=1) if t.startswith("  a:"))
    expected = [
        f"plan.yaml:{line_a}:15: number '1001' of conference 'a' is also extension '1001'",
        "number '800' of conference 'b' is also menu 'main''s number",
        "number '113' of conference 'c' collides with emergency numbers",
        "'pin' of conference 'd' must be a string, not an integer; put the value in quotes",
        "a conference PIN must be 4 to 16 digits",
        "conference 'f': the moderator PIN must differ from the PIN",
        "'max_members' of conference 'g' must be at least 2",
        "unknown key 'colour'",
        "conference name 'Bad' must be a lowercase word",
        "conference 'h' is missing required key 'number'",
        "number '851' of conference 'e' is already conference 'd''s number",
    ]
    for piece in expected:
        assert piece in text, (piece, text)
    for pin in ("12345", "24680", "13579"):
        assert pin not in text


def test_a_good_file_builds_rooms_with_hashed_pins(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(GOOD)
    plan = load_dialplan(path)
    team = plan.conferences["team"]
    assert (team.number, team.max_members, team.language) == ("850", 5, "en")
    assert team.role_for("4321") == "member" and team.role_for("98765") == "moderator"
    assert "4321" not in repr(plan.conferences)
    assert not plan.conferences["open"].asks_pin and plan.conferences["open"].max_members == 10
    assert plan.conference_at("851") is plan.conferences["open"]


def test_dialling_a_room_joins_it_and_explain_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(GOOD)
    plan = load_dialplan(path)
    caller = plan.extensions["1001"]
    decision = decide(CallRequest(caller=caller, dialled="850", at=AT, caller_number="1001"), plan)
    assert isinstance(decision, JoinConference) and decision.room.key == "team"
    assert decision.rule == "conferences.team"
    text = explain_call(plan, "1001", "850", AT)
    assert "conference room team (PIN asked" in text and "4321" not in text


PARKING = BASE + """\
parking: {slots: "701-720", ring_back: 45}
"""


def test_parking_slots_are_checked_and_dialling_one_picks_up(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + 'parking: {slots: "720-701"}\n')
    assert any("parking slots '720-701': FIRST must not be above LAST, both as long" in p for p in found), found
    found = problems(tmp_path, BASE + 'parking: {slots: "790-810"}\n')
    assert any("parking slot '800' is also a menu's number" in p for p in found), found
    found = problems(tmp_path, BASE + 'parking: {slots: "1000-1005"}\n')
    assert any("parking slot '1001' is also extension '1001'" in p for p in found), found
    found = problems(tmp_path, BASE + 'parking: {slots: "72", ring_back: 1}\n')
    assert any("parking slots '72' must be FIRST-LAST" in p for p in found), found
    assert any("'parking.ring_back' must be at least 10" in p for p in found), found

    path = tmp_path / "plan.yaml"
    path.write_text(PARKING)
    plan = load_dialplan(path)
    assert plan.parking is not None and plan.parking.ring_back == 45 and len(plan.parking.slots) == 20
    caller = plan.extensions["1001"]
    slot = decide(CallRequest(caller=caller, dialled="705", at=AT, caller_number="1001"), plan)
    assert isinstance(slot, Feature) and (slot.dialled.action, slot.dialled.code) == ("park_pickup", "705")
    park = decide(CallRequest(caller=caller, dialled="*70", at=AT, caller_number="1001"), plan)
    assert isinstance(park, Feature) and park.dialled.action == "park"
    assert isinstance(decide(CallRequest(caller=caller, dialled="721", at=AT, caller_number="1001"), plan), Reject)


def test_without_parking_star_70_is_not_available(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(GOOD)
    plan = load_dialplan(path)
    park = decide(CallRequest(caller=plan.extensions["1001"], dialled="*70", at=AT, caller_number="1001"), plan)
    assert isinstance(park, Reject) and (park.status, park.reason) == (501, "feature_not_available")


def test_an_inbound_number_dials_in_to_a_room(tmp_path: Path) -> None:
    text = GOOD + """\
trunks:
  t: {gateways: [{host: 192.0.2.10}]}
inbound:
  "+842873000850": {conference: team}
  "+842873000851": {conference: nowhere}
"""
    found = problems(tmp_path, text)
    assert any("inbound number '+842873000851' names unknown conference room 'nowhere'" in p for p in found), found
    path = tmp_path / "plan.yaml"
    path.write_text(text.replace('  "+842873000851": {conference: nowhere}\n', ""))
    plan = load_dialplan(path)
    decision = decide(CallRequest(caller=None, dialled="+842873000850", at=AT, caller_number="0912345678",
                                  trunk="t"), plan)
    assert isinstance(decision, JoinConference) and decision.room.key == "team"
    assert (decision.rule, decision.call_class) == ("inbound.+842873000850", "inbound")
