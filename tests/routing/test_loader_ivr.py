"""Loading auto attendant menus and media settings: every problem at its
place; the model built from a good file; routing to a menu by number and
by DID, its closed-hours menu by the schedule and by an administrator's
override; where a menu's choices lead."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pbx.routing.dialplan import Dialplan
from pbx.routing.engine import CallRequest, Hunt, Reject, Ring, RunIvr, ToTrunk, decide, decide_menu_destination
from pbx.routing.ivr import Destination, HoursOverride, hours_state
from pbx.routing.loader import check_dialplan, load_dialplan

BASE = """\
domain: pbx.example.com
timezone: Asia/Ho_Chi_Minh
departments:
  office: {name: Office, class_of_service: staff}
extensions:
  1001: {name: An, department: office, password: 'correct horse', class_of_service: boss}
  1002: {name: Binh, department: office, password: 'correct horse', language: zh,
         incoming: {blacklist: [ex_partner]}}
  1003: {name: Cuong, department: office, password: 'correct horse', status: suspended}
number_lists:
  ex_partner: ["+84 912 000 111"]
number_plans:
  vn:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "11[345]", class: emergency}
      - {pattern: "0[35789]XXXXXXXX", class: mobile}
      - {pattern: "00 .", class: international}
classes_of_service:
  staff: {allow: [mobile]}
  boss: {allow: [mobile, international]}
  none: {}
schedules:
  hours: {open: [{days: mon-fri, from: "08:00", to: "17:00"}]}
trunks:
  t: {gateways: [{host: 127.0.0.1}]}
routes:
  - {name: r, trunk: t}
"""

GOOD = BASE + """\
media: {rtp_ports: "30000-30999", language: vi, tones: US, announce_refusals: false}
inbound:
  "+842800": {menu: main}
ivr_menus:
  main:
    number: "800"
    options:
      "1": {extension: "1002"}
      "2": {menu: closed}
      "3": {number: "0912345678"}
      "5": {hunt_group: "510"}
      "9": {hangup: true}
    dial_by_extension: true
    timeout: 4
    retries: 3
    fallback: {extension: "1001"}
    hours: hours
    closed: closed
    class_of_service: staff
    department: office
  closed: {greeting: closed, retries: 0}
groups:
  team:
    name: Team
    members:
      601: {name: Binh, extension: "1002"}
hunt_groups:
  "510": {name: Team, strategy: linear, members: ["1002", "1001"]}
"""

BAD = BASE + """\
media: {rtp_ports: "3000-2000", tones: FR, language: fr}
ivr_menus:
  main:
    number: "1001"
    options:
      "1": {extension: "1009"}
      "2": {menu: nowhere}
      "3": {number: "0912345678"}
      "x": {hangup: true}
      "4": {extension: "1001", menu: main}
      "5": {hunt_group: "599"}
    hours: nope
    greeting: no_such_prompt
  loop_a: {hours: hours, closed: loop_b}
  loop_b: {hours: hours, closed: loop_a}
  half: {closed: loop_a}
  twin: {number: "113"}
"""

OPEN = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)     # Wed 10:00 in Ho Chi Minh City
CLOSED = datetime(2027, 3, 10, 13, 0, tzinfo=UTC)  # Wed 20:00


def load(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return [str(problem).split(":", 1)[1] for problem in check_dialplan(path)]


def test_every_problem_at_its_place(tmp_path: Path) -> None:
    messages = load(tmp_path, BAD)
    lines = BAD.splitlines()
    option_1 = next(n for n, text in enumerate(lines, start=1) if '"1": {extension: "1009"}' in text)
    expected = [
        f"{option_1}:24: menu 'main' option '1' names unknown extension '1009'",
        "tones 'FR' must be one of VN, TW, CN, US",
        "language 'fr' must be vi, zh or en",
        "menu 'main' option '2' names unknown menu 'nowhere'",
        "menu 'main' option '5' names unknown hunt group '599'",
        "menu 'main' option '3': an outside number needs the menu's class_of_service",
        "menu option 'x' must be 1 to 8 keys",
        "a menu destination is one of",
        "menu 'main' names unknown schedule 'nope'",
        "menu 'main': 'hours' (a schedule) and 'closed' (the menu for closed hours) go together",
        "warning: menu 'main': no prompt 'no_such_prompt' ships with the PBX",
        "menu 'loop_a': its closed-hours menus lead back to it",
        "menu 'loop_b': its closed-hours menus lead back to it",
        "number '1001' of menu 'main' is also extension '1001'",
        "number '113' of menu 'twin' collides with emergency numbers",
    ]
    text = "\n".join(messages)
    for piece in expected:
        assert piece in text, (piece, text)
    assert sum("menu 'half'" in m for m in messages) == 1  # closed without hours


def test_a_good_file_builds_menus_and_media(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(GOOD)
    plan = load_dialplan(path)
    media = plan.media
    assert (media.rtp_first, media.rtp_last, media.language, media.tones, media.announce_refusals) == (
        30000, 30999, "vi", "US", False)
    main = plan.ivr_menus["main"]
    assert main.options["1"] == Destination("extension", "1002")
    assert main.options["3"] == Destination("number", "0912345678")
    assert main.options["5"] == Destination("hunt_group", "510")
    assert (main.number, main.timeout, main.retries, main.fallback) == ("800", 4.0, 3, Destination("extension", "1001"))
    assert plan.menu_at("800") is main
    assert plan.language_for(plan.extensions["1002"]) == "zh" and plan.language_for(None) == "vi"


@pytest.fixture
def plan(tmp_path: Path) -> Dialplan:
    path = tmp_path / "plan.yaml"
    path.write_text(GOOD)
    return load_dialplan(path)


def test_the_menu_number_and_the_did_answer_by_the_hours(plan: Dialplan) -> None:
    caller = plan.extensions["1001"]
    for at, menu in ((OPEN, "main"), (CLOSED, "closed")):
        inside = decide(CallRequest(caller=caller, dialled="800", at=at, caller_number="1001"), plan)
        outside = decide(CallRequest(caller=None, trunk="t", dialled="+842800", at=at), plan)
        assert isinstance(inside, RunIvr) and isinstance(outside, RunIvr)
        assert (inside.menu.key, inside.call_class, outside.menu.key, outside.call_class) == (
            menu, "internal", menu, "inbound")


def test_an_administrator_override_beats_the_schedule_until_it_ends(plan: Dialplan) -> None:
    caller = plan.extensions["1001"]
    closed = {"hours": HoursOverride(schedule="hours", mode="closed", until=OPEN + timedelta(hours=1))}
    decision = decide(CallRequest(caller=caller, dialled="800", at=OPEN, caller_number="1001", hours=closed), plan)
    assert isinstance(decision, RunIvr) and decision.menu.key == "closed"
    assert "set closed by an administrator" in decision.steps[-1].outcome
    later = OPEN + timedelta(hours=2)
    assert hours_state(plan.schedules["hours"], later, closed)[0] is True
    everything = {"*": HoursOverride(schedule="*", mode="open")}
    assert hours_state(plan.schedules["hours"], CLOSED, everything) == (
        True, "hours set open by an administrator (every schedule)")


def test_where_a_menus_choices_lead(plan: Dialplan) -> None:
    main = plan.ivr_menus["main"]
    broke = replace(main, key="broke", class_of_service=None)  # the loader refuses it; built by hand
    from_outside = CallRequest(caller=None, trunk="t", dialled="+842800", at=OPEN)
    ring = decide_menu_destination(plan, main, main.options["1"], "ivr_menus.main.options.1", from_outside)
    assert isinstance(ring, Ring) and ring.extension.number == "1002"
    # A hunt group hunts as when its number is dialled, in the caller's class.
    hunt = decide_menu_destination(plan, main, main.options["5"], "ivr_menus.main.options.5", from_outside)
    assert isinstance(hunt, Hunt) and hunt.group.number == "510" and hunt.call_class == "inbound"
    assert [step.outcome for step in hunt.steps][0] == "menu main: hunt group 510"
    # An outside number goes out with the menu's rights, never the caller's ...
    out = decide_menu_destination(plan, main, main.options["3"], "ivr_menus.main.options.3", from_outside)
    assert isinstance(out, ToTrunk) and (out.trunk, out.call_class) == ("t", "mobile")
    # ... and a menu without rights has none (the loader warns of it too).
    refused = decide_menu_destination(plan, broke, broke.options["3"], "ivr_menus.broke.options.3", from_outside)
    assert isinstance(refused, Reject) and (refused.status, refused.reason) == (403, "menu_has_no_rights")


def test_an_outside_number_beyond_the_menus_rights_is_refused_whoever_calls(plan: Dialplan) -> None:
    """The menu's class (staff: mobile only) decides, not the caller's (1001
    may call abroad): a menu is never a way to lend or borrow rights."""
    main = plan.ivr_menus["main"]
    abroad = Destination("number", "0081312345678")
    for caller in (CallRequest(caller=plan.extensions["1001"], dialled="800", at=OPEN, caller_number="1001"),
                   CallRequest(caller=None, trunk="t", dialled="+842800", at=OPEN)):
        direct = decide(replace(caller, dialled="0081312345678"), plan) if caller.caller else None
        assert direct is None or isinstance(direct, ToTrunk)  # 1001 itself may
        refused = decide_menu_destination(plan, main, abroad, "ivr_menus.main.options.4", caller)
        assert isinstance(refused, Reject) and refused.status == 403, refused


def test_a_menu_is_no_way_round_an_extensions_own_refusals(plan: Dialplan) -> None:
    """1002 refuses a caller on its own black list, 1003 is suspended: as
    when called directly, whether the menu's option or dial-by-extension
    leads there, and whoever the member whose desk it is."""
    main = plan.ivr_menus["main"]
    blocked = CallRequest(caller=None, trunk="t", dialled="+842800", at=OPEN, caller_number="0912000111")
    anyone = replace(blocked, caller_number="0912000222")
    to_binh = Destination("extension", "1002")
    refused = decide_menu_destination(plan, main, to_binh, "ivr_menus.main.options.1", blocked)
    assert isinstance(refused, Reject) and (refused.status, refused.reason) == (603, "caller_blocked"), refused
    assert isinstance(decide_menu_destination(plan, main, to_binh, "ivr_menus.main.options.1", anyone), Ring)
    inside = CallRequest(caller=plan.extensions["1001"], dialled="800", at=OPEN, caller_number="1001")
    for caller in (anyone, inside):
        away = decide_menu_destination(plan, main, Destination("extension", "1003"),
                                       "ivr_menus.main.dial_by_extension", caller)
        assert isinstance(away, Reject) and (away.status, away.reason) == (480, "extension_suspended"), away
    member = decide_menu_destination(plan, main, Destination("member", "team/601"), "ivr_menus.main.options.6",
                                     blocked)
    assert isinstance(member, Reject) and member.status == 603, member


def test_the_example_dialplan_answers_800_and_the_sales_line() -> None:
    plan = load_dialplan(Path(__file__).resolve().parents[2] / "dialplans" / "example.yaml")
    main = plan.ivr_menus["main"]
    assert plan.menu_at("800") is main
    assert main.options["1"] == Destination("extension", "1002")
    assert main.options["0"] == Destination("extension", "1099")
    assert main.closed == "after_hours" and plan.ivr_menus["after_hours"].greeting == "closed"
    assert plan.inbound["+842873000200"].menu == "main"
