"""Loading ``recording:``: the model from a good file, each wrong name at
its place (``pbx check``)."""

from __future__ import annotations

from pathlib import Path

from pbx.recording.policy import RecordingMode, RecordingSettings, RouteRecording
from pbx.routing.loader import check_dialplan, load_dialplan

BASE = """\
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An, department: sales, password: 'correct horse'}
trunks:
  viettel: {gateways: [{host: 127.0.0.1}]}
routes:
  - {name: abroad, pattern: "00X.", trunk: viettel}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return [str(problem) for problem in check_dialplan(path)]


def test_a_full_recording_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE + """\
recording:
  directory: /srv/recordings
  retention_days: 30
  max_megabytes: 500
  announce: false
  extensions: {"1001": on_demand}
  departments: {sales: always}
  routes:
    abroad: {mode: always, announce: true}
""")
    assert load_dialplan(path).recording == RecordingSettings(
        directory="/srv/recordings", retention_days=30, max_megabytes=500, announce=False,
        extensions={"1001": RecordingMode.ON_DEMAND}, departments={"sales": RecordingMode.ALWAYS},
        hunt_groups={}, routes={"abroad": RouteRecording(mode=RecordingMode.ALWAYS, announce=True)})


def test_without_a_section_nothing_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE)
    assert not load_dialplan(path).recording.enabled


def test_unknown_names_are_reported_where_they_are(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + """\
recording:
  extensions: {"1002": always}
  departments: {sals: always}
  routes: {abraod: never}
""")
    assert [p.split(":", 1)[1] for p in found] == [
        "11:16: recording extensions: no extension '1002'; did you mean '1001'?",
        "12:17: recording departments: no department 'sals'; did you mean 'sales'?",
        "13:12: recording routes: no route 'abraod'; did you mean 'abroad'?",
    ]


def test_a_bad_mode_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "recording:\n  default: sometimes\n")
    assert any("must be always, on_demand or never" in p for p in found), found
