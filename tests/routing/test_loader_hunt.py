"""pbx check on hunt_groups: every problem at its place (path:line:col),
queues, announcements and IVR menus as overflow destinations checked, loops
refused, and the example's groups as they are promised."""

from __future__ import annotations

from pathlib import Path

from pbx.routing.hunt_groups import Destination, QueueSettings
from pbx.routing.loader import check_dialplan, load_dialplan

REPO = Path(__file__).resolve().parents[2]

HEAD = """\
domain: pbx.example.com
departments:
  desk: {name: Desk}
extensions:
  1001: {name: A, department: desk, password: a-secret-1001}
  1002: {name: B, department: desk, password: b-secret-1002}
schedules:
  hours: {open: [{days: mon-fri, from: "08:00", to: "17:00"}]}
feature_codes:
  "*4599": something
hunt_groups:
"""


def problems(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(HEAD + body)
    return [f"{p.line}:{p.column}: {p.message}" for p in check_dialplan(path) if p.is_error]


def test_problems_are_reported_where_they_are(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
  "500":
    name: Sales
    members: ["1001", "1003", "1001", {number: "0912345678"}]
    queue: {max_wait: 60}
    overflow:
      busy: {announcement: closed}
      no_answer: {ivr: main}
      none_registered: {extension: "1009"}
  "501": {name: Loop, members: ["1002"], overflow: {default: {hunt_group: "502"}}}
  "502": {name: Back, members: ["1002"], overflow: {busy: {hunt_group: "501"}}}
  "1001": {name: Clash, members: ["1002"]}
  "503": {name: Hours, members: ["1002"], during: hours}
  "504": {name: Bad, members: ["1002"], strategy: fastest}
""")
    assert [line.replace(str(tmp_path / "plan.yaml"), "plan.yaml") for line in found] == [
        "10:3: feature code '*4599' is taken by the hunt group agent codes (*45, *46)",
        "12:3: hunt group '500' calls outside numbers: give it a 'department' (whose number plan, caller ID"
        " and class of service they are called with)",
        "14:23: hunt group '500' names unknown extension '1003'; did you mean '1002'?",
        "14:31: hunt group '500': member '1001' is already listed at plan.yaml:14:15",
        "18:24: hunt group '500': overflow no_answer names unknown IVR menu 'main'",
        "19:36: hunt group '500': overflow none_registered names unknown extension '1009'; did you mean '1002'?",
        "20:62: hunt group '501' sends calls round in a loop: 501 -> 502 -> 501",
        "22:3: hunt group number '1001' is also extension '1001' at plan.yaml:5:3",
        "23:43: hunt group '503': 'during' needs an 'otherwise' group for the rest of the time",
        "24:51: strategy 'fastest' must be one of linear, circular, ring_all, longest_idle, random, fewest_calls",
    ]


def test_the_example_groups_are_as_promised() -> None:
    plan = load_dialplan(REPO / "dialplans" / "example.yaml")
    sales, support = plan.hunt_groups["500"], plan.hunt_groups["501"]
    assert (sales.name, sales.strategy, [m.key for m in sales.members]) == ("Sales", "ring_all",
                                                                            ["1003", "1004", "1005"])
    assert (support.name, support.strategy, [m.key for m in support.members]) == ("Support", "linear",
                                                                                  ["1006", "1007"])
    assert (support.member_seconds, support.total_seconds) == (15, 40)
    destination = support.overflow.get("no_answer")
    assert destination is not None and destination.extension == "1099"


def test_a_queue_and_media_destinations_are_built_and_checked(tmp_path: Path) -> None:
    body = """\
  "500":
    name: Sales
    members: ["1001"]
    queue: {max_wait: 60, max_length: 3, announce_position_every: 90, conditions: [busy, no_answer, busy]}
    overflow:
      busy: {announcement: closed}
      no_answer: {announcement: our_own_words}
  "501":
    name: Desk
    members: ["1002"]
    skip_busy: true
    queue: {conditions: [lunch], max_wait: 0}
    overflow: {default: {extension: "1001", ivr: main}}
"""
    path = tmp_path / "plan.yaml"
    path.write_text(HEAD.replace('feature_codes:\n  "*4599": something\n', "") + body)
    found = [f"{p.line}:{p.column}: {p.severity}: {p.message}" for p in check_dialplan(path)]
    assert found == [
        "13:5: warning: hunt group '500': a queue on 'busy' without skip_busy: true queues only when every member"
        " answers busy (members on a call are rung, call waiting)",
        "13:67: warning: hunt group '500': announce_position_every (90) is not below max_wait (60): the position"
        " is said only once",
        "13:83: error: hunt group '500': a queue condition is listed twice",
        "16:33: warning: hunt group '500': overflow no_answer: no prompt 'our_own_words' ships with the PBX; put"
        " your recording in media.prompt_dir (<dir>/<language>/our_own_words.wav)",
        "21:26: error: a queue condition is busy or no_answer",
        "21:44: error: 'queue.max_wait' of hunt group '501' must be at least 1, not 0",
        "22:25: error: hunt group '501': overflow default: give 'extension', 'hunt_group', 'number', 'ivr' or"
        " 'announcement', exactly one",
    ]
    path.write_text(HEAD.replace('feature_codes:\n  "*4599": something\n', "") + body.split('  "501"')[0]
                    .replace(", busy]", "]"))
    plan = load_dialplan(path)
    group = plan.hunt_groups["500"]
    assert group.queue == QueueSettings(max_wait=60, max_length=3, announce_position_every=90,
                                        conditions=("busy", "no_answer"))
    assert group.queues_on("no_answer") and not group.queues_on("nobody_logged_in")
    assert group.overflow.get("busy") == Destination(announcement="closed")
