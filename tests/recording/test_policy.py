"""Which calls are recorded, and the *1 toggle: table-driven, pure."""

from __future__ import annotations

import pytest

from pbx.recording.policy import CallRecording, Party, RecordingMode, RecordingSettings, RouteRecording, Toggle, decide

ALWAYS, ON_DEMAND, NEVER = RecordingMode.ALWAYS, RecordingMode.ON_DEMAND, RecordingMode.NEVER

SETTINGS = RecordingSettings(
    extensions={"2001": ALWAYS, "2003": ON_DEMAND, "2005": NEVER},
    departments={"sales": ALWAYS, "support": ON_DEMAND},
    hunt_groups={"600": ALWAYS},
    routes={"abroad": RouteRecording(mode=ALWAYS, announce=True), "lawyers": RouteRecording(mode=NEVER),
            "quiet": RouteRecording(mode=ALWAYS, announce=False)},
    announce=True,
)


def ext(number: str, department: str = "ops") -> Party:
    return Party(extension=number, department=department)


OUTSIDE = Party()


@pytest.mark.parametrize(("caller", "callee", "route", "hunt", "expected"), [
    (ext("2001"), ext("2002"), None, None, CallRecording(mode=ALWAYS, announce=True, why="extensions.2001")),
    (ext("2002"), ext("2001"), None, None, CallRecording(mode=ALWAYS, announce=True, why="extensions.2001")),
    (ext("2002"), ext("2004"), None, None, CallRecording(mode=NEVER, announce=True, why="default")),
    # on demand: only the extension that has it may toggle
    (ext("2003"), ext("2002"), None, None,
     CallRecording(mode=ON_DEMAND, announce=True, togglers=frozenset({0}), why="extensions.2003")),
    (OUTSIDE, ext("2003"), None, None,
     CallRecording(mode=ON_DEMAND, announce=True, togglers=frozenset({1}), why="extensions.2003")),
    # always beats on demand; an extension's own setting beats its department's
    (ext("2003"), ext("2010", "sales"), None, None,
     CallRecording(mode=ALWAYS, announce=True, togglers=frozenset({0}), why="departments.sales")),
    (ext("2005", "sales"), ext("2002"), None, None, CallRecording(mode=NEVER, announce=True, why="extensions.2005")),
    (ext("2010", "support"), OUTSIDE, None, None,
     CallRecording(mode=ON_DEMAND, announce=True, togglers=frozenset({0}), why="departments.support")),
    # a hunt group that records
    (OUTSIDE, ext("2002"), None, "600", CallRecording(mode=ALWAYS, announce=True, why="hunt_groups.600")),
    # a route decides alone, with its own announcement
    (ext("2002"), OUTSIDE, "abroad", None, CallRecording(mode=ALWAYS, announce=True, why="routes.abroad")),
    (ext("2001"), OUTSIDE, "lawyers", None, CallRecording(mode=NEVER, announce=True, why="routes.lawyers")),
    (ext("2002"), OUTSIDE, "quiet", None, CallRecording(mode=ALWAYS, announce=False, why="routes.quiet")),
    (ext("2002"), OUTSIDE, "other", None, CallRecording(mode=NEVER, announce=True, why="default")),
])
def test_the_mode_of_a_call(caller: Party, callee: Party, route: str | None, hunt: str | None,
                            expected: CallRecording) -> None:
    assert decide(SETTINGS, caller=caller, callee=callee, route=route, hunt_group=hunt) == expected


def test_a_plan_that_records_nothing_anchors_nothing() -> None:
    assert not RecordingSettings().enabled
    assert SETTINGS.enabled
    assert RecordingSettings(default=ON_DEMAND).enabled


@pytest.mark.parametrize(("keys", "flips"), [
    ([(0, "*", 0.0), (0, "1", 0.5)], [False, True]),
    ([(0, "*", 0.0), (0, "1", 2.5)], [False, False]),          # too slow
    ([(1, "*", 0.0), (1, "1", 0.5)], [False, False]),          # not allowed to toggle
    ([(0, "1", 0.0)], [False]),                                  # no star first
    ([(0, "*", 0.0), (0, "2", 0.1), (0, "1", 0.2)], [False, False, False]),
    ([(0, "*", 0.0), (0, "1", 0.1), (0, "*", 5.0), (0, "1", 5.1)], [False, True, False, True]),
])
def test_star_one_toggles(keys: list[tuple[int, str, float]], flips: list[bool]) -> None:
    toggle = Toggle({0})
    assert [toggle.key(party, digit, at) for party, digit, at in keys] == flips
