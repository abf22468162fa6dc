"""``pbx group add|remove|list`` and pbx.routing.members_file on real files: the
members file edited round-trip (comments and the other members kept), a
change that would break the dialplan rolled back byte for byte, clear
messages for unknown groups and members, concurrent changes serialised."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pbx.cli.main import main
from pbx.routing.members_file import GroupAdminError, add_member, remove_member
from pbx.routing.loader import load_dialplan
from pbx.routing.short_numbers import Member

PLAN = """\
domain: pbx.example.com
departments:
  plant: {name: Plant, class_of_service: all}
extensions:
  1201: {name: Tai, department: plant, password: 'correct horse'}
  1202: {name: Hoa, department: plant, password: 'correct horse'}
  1203: {name: Quan, department: plant, password: 'correct horse'}
  1204: {name: Loc, department: plant, password: 'correct horse'}
number_plans:
  vn:
    - {pattern: "11[345]", class: emergency}
    - {pattern: "0[35789]XXXXXXXX", class: mobile}
classes_of_service:
  all: {allow: [mobile]}
trunks:
  t: {gateways: [{host: 127.0.0.1}]}
routes:
  - {name: r, trunk: t}
groups:
  factory:
    members_file: groups/factory.yaml
  office:
    members:
      701: {extension: "1204"}
    members_file: groups/office.yaml
  inline:
    members:
      801: {extension: "1201"}
"""

FACTORY = """\
# Factory members: short number -> person.

601: {name: Tai, extension: '1201', mobile: '0987000201'}   # the foreman
# quality control
602: {name: Hoa, extension: '1202'}
"""


@pytest.fixture
def dialplan(tmp_path: Path) -> Path:
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "factory.yaml").write_text(FACTORY, encoding="utf-8")
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN, encoding="utf-8")
    return path


def factory(dialplan: Path) -> str:
    return (dialplan.parent / "groups" / "factory.yaml").read_text(encoding="utf-8")


def test_add_keeps_comments_and_the_other_members(dialplan: Path) -> None:
    change = add_member(dialplan, "factory", Member(short="603", name="Quân", extension="1203", mobile="0987000203",
                                                    ring="desk_first", desk_seconds=20))
    assert (change.action, change.members_file) == ("added", dialplan.parent / "groups" / "factory.yaml")
    assert factory(dialplan) == FACTORY + (
        "603: {name: Quân, extension: '1203', mobile: '0987000203', ring: desk_first, desk_seconds: 20}\n")
    member = load_dialplan(dialplan).groups["factory"].members["603"]
    assert (member.name, member.extension, member.mobile, member.ring, member.desk_seconds) == (
        "Quân", "1203", "0987000203", "desk_first", 20)


def test_add_replaces_a_member_in_place(dialplan: Path) -> None:
    change = add_member(dialplan, "factory", Member(short="601", name="Tai", mobile="0987000299"))
    assert change.action == "replaced"
    text = factory(dialplan)
    assert "601: {name: Tai, mobile: '0987000299'}" in text
    assert text.index("601:") < text.index("# quality control") < text.index("602:")
    assert "# Factory members" in text
    group = load_dialplan(dialplan).groups["factory"]
    assert list(group.members) == ["601", "602"] and group.members["601"].extension is None


def test_remove_keeps_the_rest(dialplan: Path) -> None:
    change = remove_member(dialplan, "factory", "601")
    assert change.action == "removed"
    text = factory(dialplan)
    assert "601" not in text and "602: {name: Hoa, extension: '1202'}" in text
    assert text.startswith("# Factory members")
    assert list(load_dialplan(dialplan).groups["factory"].members) == ["602"]


def test_add_creates_a_missing_members_file(dialplan: Path) -> None:
    office = dialplan.parent / "groups" / "office.yaml"
    assert not office.exists()
    add_member(dialplan, "office", Member(short="0702", extension="1203"))
    assert office.read_text(encoding="utf-8") == (
        "# Members of short-number group 'office': short number -> person.\n"
        "# Managed by `pbx group add|remove`; hand edits are fine too.\n"
        "'0702': {extension: '1203'}\n")
    assert list(load_dialplan(dialplan).groups["office"].members) == ["701", "0702"]


@pytest.mark.parametrize(
    ("group", "member", "problems"),
    [
        ("factory", Member(short="1202", extension="1203"),
         ["groups/factory.yaml:6:1: short number '1202' of group 'factory' is also extension '1202' at plan.yaml:6:3"]),
        ("factory", Member(short="603", extension="1299"),
         ["groups/factory.yaml:6:18: member '603' of group 'factory' names unknown extension '1299'"]),
        ("factory", Member(short="113", mobile="0987000113"),
         ["groups/factory.yaml:6:1: short number '113' of group 'factory' collides with emergency numbers"
          " number_plans.vn[0] (11[345]) at plan.yaml:11:17"]),
        ("office", Member(short="701", extension="1203"),
         ["groups/office.yaml:3:1: short number '701' is already a member of group 'office' at plan.yaml:24:7"]),
    ],
)
def test_a_change_that_breaks_the_plan_is_rolled_back(dialplan: Path, monkeypatch: pytest.MonkeyPatch, group: str,
                                                      member: Member, problems: list[str]) -> None:
    monkeypatch.chdir(dialplan.parent)
    office = dialplan.parent / "groups" / "office.yaml"
    with pytest.raises(GroupAdminError, match="the change would make the dialplan invalid; nothing was changed") as err:
        add_member(Path("plan.yaml"), group, member)
    assert [str(p) for p in err.value.problems] == problems
    assert factory(dialplan) == FACTORY
    assert not office.exists()   # a file the change created is gone again
    assert load_dialplan(dialplan).groups["factory"].members.keys() == {"601", "602"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: add_member(p, "warehouse", Member(short="11", extension="1201")),
         "no short-number group 'warehouse' in .*plan.yaml \\(groups: factory, inline, office\\)"),
        (lambda p: add_member(p, "inline", Member(short="802", extension="1202")),
         "group 'inline' lists its members inline in the dialplan; give it a members_file"),
        (lambda p: remove_member(p, "factory", "699"),
         "group 'factory' has no member with short number '699' in .*factory.yaml$"),
        (lambda p: remove_member(p, "office", "701"),
         "group 'office' has no member with short number '701' in .*office.yaml; it is written in the"
         " dialplan itself at .*plan.yaml:24:7: remove it there"),
    ],
)
def test_clear_refusals(dialplan: Path, call: Callable[[Path], object], message: str) -> None:
    with pytest.raises(GroupAdminError, match=message):
        call(dialplan)
    assert factory(dialplan) == FACTORY


def test_a_broken_dialplan_is_not_touched(dialplan: Path) -> None:
    dialplan.write_text(PLAN.replace("extension: \"1204\"", "extension: \"1299\""), encoding="utf-8")
    with pytest.raises(GroupAdminError, match="has errors; fix them first") as err:
        add_member(dialplan, "factory", Member(short="603", extension="1203"))
    assert any("unknown extension '1299'" in str(p) for p in err.value.problems)
    assert factory(dialplan) == FACTORY


def test_concurrent_changes_are_all_kept(dialplan: Path) -> None:
    errors: list[BaseException] = []

    def add(short: str, extension: str) -> None:
        try:
            add_member(dialplan, "factory", Member(short=short, extension=extension))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(short, extension))
               for short, extension in (("603", "1203"), ("604", "1204"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    # Whichever got the lock first, neither change is lost.
    assert set(load_dialplan(dialplan).groups["factory"].members) == {"601", "602", "603", "604"}


# ---------------------------------------------------------------- the command line


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["group", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_add_list_remove_without_a_server(dialplan: Path) -> None:
    pid_file = dialplan.parent / "pbx.pid"
    code, out, _ = run("add", "factory", "603", "--name", "Quân", "--extension", "1203", "--mobile", "0987000203",
                       "--ring", "desk_first", "--desk-seconds", "12", "--dialplan", str(dialplan),
                       "--pid-file", str(pid_file))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"added member 603 of group factory in {dialplan.parent / 'groups' / 'factory.yaml'}"
    assert lines[1].startswith(f"no server was asked to reload (cannot read pid file {pid_file}")
    code, out, _ = run("list", "factory", "--dialplan", str(dialplan))
    assert code == 0
    assert out.splitlines() == [
        f"factory: members file {dialplan.parent / 'groups' / 'factory.yaml'}",
        "  601      Tai                      extension 1201     mobile 0987000201     together",
        "  602      Hoa                      extension 1202     mobile -              -",
        "  603      Quân                     extension 1203     mobile 0987000203     desk first, mobile after 12 s",
    ]
    code, out, _ = run("remove", "factory", "601", "--dialplan", str(dialplan), "--pid-file", str(pid_file))
    assert code == 0 and out.startswith("removed member 601 of group factory from ")
    assert list(load_dialplan(dialplan).groups["factory"].members) == ["602", "603"]


def test_cli_gives_a_short_number_to_a_hunt_group(dialplan: Path) -> None:
    dialplan.write_text(PLAN + 'hunt_groups:\n  "500": {name: Plant team, members: ["1201", "1202"]}\n',
                        encoding="utf-8")
    code, out, _ = run("add", "factory", "650", "--name", "Plant team", "--hunt-group", "500",
                       "--dialplan", str(dialplan), "--pid-file", str(dialplan.parent / "pbx.pid"))
    assert code == 0, out
    assert "650: {name: Plant team, hunt_group: '500'}" in factory(dialplan)
    code, out, _ = run("list", "factory", "--dialplan", str(dialplan))
    assert out.splitlines()[-1] == "  650      Plant team               hunt group 500"
    code, _, err = run("add", "factory", "651", "--hunt-group", "501", "--dialplan", str(dialplan))
    assert code == 1 and "names unknown hunt group '501'; did you mean '500'?" in err
    assert "651" not in factory(dialplan)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "factory", "603"), "pbx group: member '603' needs an extension, a mobile or a hunt group"),
        (("add", "factory", "603", "--hunt-group", "500", "--extension", "1203"),
         "pbx group: member '603' is hunt group '500': it has no extension or mobile of its own"),
        (("add", "factory", "6x3", "--extension", "1203"), "pbx group: short number '6x3' must be 2 to 8 digits"),
        (("remove", "nowhere", "601"), "pbx group: no short-number group 'nowhere'"),
        (("list", "nowhere"), "pbx group: no short-number group 'nowhere'"),
    ],
)
def test_cli_refusals_exit_1(dialplan: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = run(*args, "--dialplan", str(dialplan))
    assert code == 1 and out == ""
    assert err.splitlines()[-1].startswith(message)


def test_cli_shows_the_problems_of_a_rolled_back_change(dialplan: Path) -> None:
    code, _, err = run("add", "factory", "1202", "--extension", "1203", "--dialplan", str(dialplan))
    assert code == 1
    assert err.splitlines() == [
        f"{dialplan.parent / 'groups' / 'factory.yaml'}:6:1: short number '1202' of group 'factory' is also"
        f" extension '1202' at {dialplan}:6:3",
        "pbx group: the change would make the dialplan invalid; nothing was changed",
    ]
    assert factory(dialplan) == FACTORY
