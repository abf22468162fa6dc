"""Loading short-number groups: every problem at its place, in the dialplan
or in a group's members file; members files relative to the file naming
them; a missing one is an empty group that a reload notices appearing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pbx.server.reload import DialplanReloader
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import check_dialplan, load_dialplan, read_dialplan
from tests.routing.test_loader import EXAMPLE

BASE = """\
domain: pbx.example.com
departments:
  sales: {name: Sales, class_of_service: all}
extensions:
  1001: {name: An, department: sales, password: 'correct horse'}
  1002: {name: Binh, department: sales, password: 'correct horse'}
number_plans:
  vn:
    - {pattern: "11[345]", class: emergency}
    - {pattern: "09XXXXXXXX", class: mobile}
classes_of_service:
  all: {allow: [mobile]}
feature_codes: {"*8": pickup, "77": voicemail}
trunks:
  t: {gateways: [{host: 127.0.0.1}]}
routes:
  - {name: r, trunk: t}
"""

GROUPS = """\
groups:
  office:
    members:
      601: {name: An, extension: "1001", mobile: "0912345678"}
      602: {name: Binh, extension: "1003"}
      1002: {name: Clash, extension: "1002"}
      113: {name: Rescue, mobile: "0912000113"}
      77: {name: Voice, extension: "1001"}
      6a1: {name: Bad}
      604: {name: Nobody}
      605: {extension: "1001", mobile: "1002", ring: sometimes}
      606: {mobile: "12345", desk_seconds: 5}
    members_file: office.yaml
    allow_outside: ["0[9"]
  shop:
    members_file: office.yaml
  empty: {}
  later:
    members_file: people/later.yaml
"""

OFFICE = """\
# office members
601: {name: An again, extension: "1002"}
610:
  name: Typo
  extension: "1010"
  mobil: "0912"
611: {name: Ring, extension: "1002", ring: desk_first}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_every_group_problem_with_its_place() -> None:
    write("plan.yaml", BASE + GROUPS)
    write("office.yaml", OFFICE)
    assert [str(p) for p in check_dialplan("plan.yaml")] == [
        "plan.yaml:22:36: member '602' of group 'office' names unknown extension '1003'; did you mean '1002'?",
        "plan.yaml:23:7: short number '1002' of group 'office' is also extension '1002' at plan.yaml:6:3",
        "plan.yaml:24:7: short number '113' of group 'office' collides with emergency numbers number_plans.vn[0]"
        " (11[345]) at plan.yaml:9:17",
        "plan.yaml:25:7: short number '77' of group 'office' is also feature code '77' at plan.yaml:13:31",
        "plan.yaml:25:36: extension '1001' is already member '601' of group 'office' at plan.yaml:21:7",
        "plan.yaml:26:7: short number '6a1' must be 2 to 8 digits",
        "plan.yaml:27:7: member '604' of group 'office' needs an extension, a mobile or a hunt_group",
        "plan.yaml:28:24: extension '1001' is already member '601' of group 'office' at plan.yaml:21:7",
        "plan.yaml:28:40: member '605' of group 'office': mobile '1002' is extension '1002'; give it as 'extension'",
        "plan.yaml:28:54: 'members.605.ring' of group 'office' must be one of 'together', 'desk_first'",
        "plan.yaml:29:21: warning: member '606' of group 'office': no number plan gives mobile '12345' an outside"
        " class: its calls are refused",
        "plan.yaml:29:30: warning: member '606' of group 'office': desk_seconds applies only with ring: desk_first",
        "plan.yaml:31:5: warning: group 'office': allow_outside applies only with in_group_only: true",
        "plan.yaml:31:21: pattern '0[9': '[' is never closed (character 2)",
        "plan.yaml:33:19: members file 'office.yaml' is already the members file of group 'office' at"
        " plan.yaml:30:19",
        "plan.yaml:34:3: warning: group 'empty' has no members and no members_file",
        "plan.yaml:36:19: warning: members file 'people/later.yaml' of group 'later' does not exist yet: the group"
        " has no members from it (pbx group add creates it)",
        # The members file's own problems, at their places in it.
        "office.yaml:2:1: short number '601' is already a member of group 'office' at plan.yaml:21:7",
        "office.yaml:5:14: member '610' of group 'office' names unknown extension '1010'; did you mean '1002'?",
        "office.yaml:6:3: unknown key 'mobil' in 'members.610' of group 'office'; did you mean 'mobile'?",
        "office.yaml:7:30: extension '1002' is already member '1002' of group 'office' at plan.yaml:23:7",
        "office.yaml:7:44: warning: member '611' of group 'office': desk_first needs both an extension and a"
        " mobile; only one rings",
    ]


GOOD = BASE + """\
groups:
  office:
    name: Office
    members:
      601: {name: An, extension: "1001", mobile: "0912345678", ring: desk_first}
    members_file: office.yaml
"""


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param("602: {name: Binh, extension: '1002'\n", [
            "office.yaml:2:1: YAML syntax error: expected ',' or '}', but got '<stream end>'"
            " (while parsing a flow mapping at line 1, column 6)"], id="syntax"),
        pytest.param("- 602\n- 603\n", [
            "office.yaml:1:1: a members file must map short numbers to members"
            " (601: {name: ..., extension: ...}), not a list"], id="a-list"),
        pytest.param("602: {extension: 1002}\n603: {extension: '1002'}\n603: {mobile: '0912000003'}\n", [
            "office.yaml:1:18: 'members.602.extension' of group 'office' must be a string, not an integer;"
            " put the value in quotes",
            "office.yaml:3:1: duplicate key '603'; first given at office.yaml:2:1"], id="types-and-duplicates"),
        pytest.param("domain: pbx.example.com\n", [
            "office.yaml:1:1: short number 'domain' must be 2 to 8 digits",
            "office.yaml:1:9: 'members.domain' of group 'office' must be a mapping, not a string"],
            id="a-dialplan-by-mistake"),
    ],
)
def test_members_file_problems_at_their_place(members: str, expected: list[str]) -> None:
    write("plan.yaml", GOOD)
    write("office.yaml", members)
    assert [str(p) for p in check_dialplan("plan.yaml")] == expected


def test_a_members_file_that_is_a_directory_or_a_fifo() -> None:
    write("plan.yaml", GOOD)
    Path("office.yaml").mkdir()
    assert [str(p) for p in check_dialplan("plan.yaml")] == [
        "office.yaml:1:1: members file of group 'office' is a directory"]
    Path("office.yaml").rmdir()
    os.mkfifo("office.yaml")   # reading it would wait for a writer for ever
    assert [str(p) for p in check_dialplan("plan.yaml")] == [
        "office.yaml:1:1: members file of group 'office' is not a regular file"]


def test_members_from_both_places_make_the_group() -> None:
    write("plan.yaml", GOOD)
    write("office.yaml", "# people\n602: {name: Binh, extension: '1002', mobile: '0912000002'}\n")
    result = read_dialplan("plan.yaml")
    assert result.problems == ()
    plan = result.dialplan
    assert plan is not None
    office = plan.groups["office"]
    assert (office.name, office.members_file, office.in_group_only) == ("Office", "office.yaml", False)
    assert [(m.short, m.extension, m.mobile, m.ring) for m in office.members.values()] == [
        ("601", "1001", "0912345678", "desk_first"), ("602", "1002", "0912000002", "together")]
    assert plan.place("groups.office.members.601") == "plan.yaml:22:7"
    assert plan.place("groups.office.members.602") == "office.yaml:2:1"
    assert plan.sources == ("plan.yaml", "office.yaml")


def test_a_members_file_is_relative_to_the_file_that_names_it() -> None:
    write("main.yaml", BASE + "include: [sites/shop.yaml]\n")
    write("sites/shop.yaml", "groups:\n  shop: {members_file: shop-people.yaml, in_group_only: true,"
          " allow_outside: ['09XXXXXXXX']}\n")
    write("sites/shop-people.yaml", "11: {extension: '1001'}\n12: {extension: '1020'}\n")
    assert [str(p) for p in check_dialplan("main.yaml")] == [
        "sites/shop-people.yaml:2:17: member '12' of group 'shop' names unknown extension '1020';"
        " did you mean '1002'?"]
    write("sites/shop-people.yaml", "11: {extension: '1001'}\n12: {extension: '1002'}\n")
    plan = load_dialplan("main.yaml")
    shop = plan.groups["shop"]
    assert shop.members_file == "sites/shop-people.yaml"
    assert [p.text for p in shop.allow_outside] == ["09XXXXXXXX"]
    assert plan.sources == ("main.yaml", "sites/shop.yaml", "sites/shop-people.yaml")


def test_a_missing_members_file_is_watched_and_its_arrival_reloads() -> None:
    write("plan.yaml", GOOD)
    result = read_dialplan("plan.yaml")
    assert [str(p) for p in result.problems] == [
        "plan.yaml:23:19: warning: members file 'office.yaml' of group 'office' does not exist yet: the group"
        " has no members from it (pbx group add creates it)"]
    plan = result.dialplan
    assert plan is not None and list(plan.groups["office"].members) == ["601"]
    assert plan.sources == ("plan.yaml", "office.yaml")

    applied: list[Dialplan] = []
    reloader = DialplanReloader(Path("plan.yaml"), plan, applied.append)
    assert not reloader.changed()
    write("office.yaml", "602: {extension: '1002'}\n")
    assert reloader.changed()
    assert asyncio.run(reloader.reload("test")) is True
    (new,) = applied
    assert list(new.groups["office"].members) == ["601", "602"]
    # Removing a member is a change like any other.
    write("office.yaml", "{}\n")
    assert reloader.changed()
    assert asyncio.run(reloader.reload("test")) is True
    assert list(applied[-1].groups["office"].members) == ["601"]


def test_the_example_groups() -> None:
    result = read_dialplan(EXAMPLE)
    assert result.problems == ()
    plan = result.dialplan
    assert plan is not None
    assert list(plan.groups) == ["head_office", "factory"]
    head, factory = plan.groups["head_office"], plan.groups["factory"]
    assert head.members["601"].extension == "1001" and factory.members["601"].extension == "1201"
    assert (head.in_group_only, head.members_file) == (False, None)
    assert factory.in_group_only and factory.members_file == str(EXAMPLE.parent / "groups" / "factory.yaml")
    assert [p.text for p in factory.allow_outside] == ["1800 XXXX", "1800 XXXXXX", "0274 3700 XXX"]
    assert head.members["601"].ring == "desk_first" and head.members["601"].desk_seconds == 15


def test_an_inbound_number_given_to_a_member_names_one_that_exists(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE + """\
groups:
  office:
    members:
      601: {name: An, extension: "1001", mobile: "0912345678"}
inbound:
  "+842873000601": {member: office/601}
  "+842873000602": {member: office/602}
  "+842873000603": {member: ofice/601}
  "+842873000604": {member: office/601, extension: "1001"}
  "+842873000605": {name: nobody}
  "+842873000606": {member: "office-601"}
""")
    messages = [f"{p.line}:{p.column}: {p.message}" for p in check_dialplan(path) if p.is_error]
    # Column of the value for a bad reference; of the entry for a bad shape.
    assert messages == [
        "24:29: inbound number '+842873000602': group 'office' has no member '602'",
        "25:29: inbound number '+842873000603' names unknown group 'ofice'; did you mean 'office'?",
        "26:20: inbound number '+842873000604': give 'extension', 'member', 'hunt_group' or 'menu', exactly one",
        "27:20: inbound number '+842873000605': give 'extension', 'member', 'hunt_group' or 'menu', exactly one",
        "27:21: unknown key 'name' in inbound number '+842873000605'"
        " (expected one of: extension, hunt_group, member, menu, during, outside, otherwise)",
        "28:29: member 'office-601' must be GROUP/SHORT, e.g. head_office/601",
    ], messages

    path.write_text(BASE + """\
groups:
  office:
    members:
      601: {name: An, extension: "1001", mobile: "0912345678"}
inbound:
  "+842873000601": {member: office/601}
""")
    plan = load_dialplan(path)
    assert plan.inbound["+842873000601"].member == ("office", "601")


TEAMS = BASE + """\
hunt_groups:
  "500": {name: Sales, strategy: ring_all, members: ["1001", "1002"]}
groups:
  office:
    members:
      601: {name: An, extension: "1001"}
      650: {name: Sales team, hunt_group: "500"}
      651: {name: Typo, hunt_group: "510"}
      652: {name: Both, hunt_group: "500", extension: "1002", ring: desk_first}
      653: {hunt_group: 500}
"""


def test_a_short_number_may_ring_a_hunt_group() -> None:
    write("plan.yaml", TEAMS)
    assert [str(p) for p in check_dialplan("plan.yaml")] == [
        "plan.yaml:25:37: member '651' of group 'office' names unknown hunt group '510'; did you mean '500'?",
        "plan.yaml:26:44: member '652' of group 'office' is hunt group '500': it has no extension of its own",
        "plan.yaml:26:63: member '652' of group 'office' is hunt group '500': it has no ring of its own",
        "plan.yaml:27:25: 'members.653.hunt_group' of group 'office' must be a string, not an integer;"
        " put the value in quotes",
    ]
    write("plan.yaml", TEAMS.split("      651:")[0])
    plan = load_dialplan("plan.yaml")
    team = plan.groups["office"].members["650"]
    assert (team.hunt_group, team.extension, team.mobile, team.long_numbers()) == ("500", None, None, ())
