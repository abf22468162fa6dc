"""The dialplan's ``calls:`` section: defaults, limits, file positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.routing.dialplan import CallSettings
from pbx.routing.loader import read_dialplan


def load(tmp_path: Path, calls: str) -> tuple[CallSettings | None, list[str]]:
    plan = tmp_path / "plan.yaml"
    plan.write_text("domain: pbx.example.com\n" + calls)
    result = read_dialplan(plan)
    problems = [f"{p.line}:{p.column}: {p.message}" for p in result.problems]
    return (result.dialplan.calls if result.dialplan else None), problems


def test_defaults(tmp_path: Path) -> None:
    settings, problems = load(tmp_path, "")
    assert problems == []
    assert settings == CallSettings(session_expires=1800, min_se=90, max_call_seconds=14400)


def test_values_are_read(tmp_path: Path) -> None:
    settings, problems = load(tmp_path, "calls: {session_expires: 600, min_se: 120, max_call_seconds: 7200}\n")
    assert problems == []
    assert settings == CallSettings(session_expires=600, min_se=120, max_call_seconds=7200)


def test_short_timers_only_when_asked_for(tmp_path: Path) -> None:
    settings, problems = load(tmp_path, "calls:\n  min_se: 5\n  session_expires: 8\n")
    assert settings is None
    assert len(problems) == 1 and problems[0].startswith("3:11: calls min_se (5) is below RFC 4028's floor of 90")
    settings, problems = load(tmp_path, "calls: {min_se: 5, session_expires: 8, allow_short_timers: true}\n")
    assert problems == [] and settings is not None
    assert (settings.min_se, settings.session_expires, settings.allow_short_timers) == (5, 8, True)


@pytest.mark.parametrize(("calls", "expected"), [
    ("calls: {session_expires: 100, min_se: 120}\n",
     "2:26: calls session_expires (100) must not be below min_se (120)"),
    ("calls: {min_se: 2000}\n", "2:17: calls session_expires (1800) must not be below min_se (2000)"),
    ("calls: {max_call_seconds: 0}\n", "2:27: "),
    ("calls: {session_expirs: 600}\n", "2:9: unknown key 'session_expirs' in 'calls'; did you mean 'session_expires'?"),
    ("calls: {allow_short_timers: yes please}\n", "2:29: "),
])
def test_problems_point_at_the_value(tmp_path: Path, calls: str, expected: str) -> None:
    settings, problems = load(tmp_path, calls)
    assert settings is None
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_model_checks_itself() -> None:
    with pytest.raises(ValueError, match="RFC 4028"):
        CallSettings(min_se=30)
    with pytest.raises(ValueError, match="session_expires"):
        CallSettings(session_expires=100, min_se=120)
    with pytest.raises(ValueError, match="at least 1"):
        CallSettings(max_call_seconds=0)
    assert CallSettings(min_se=2, session_expires=3, allow_short_timers=True).min_se == 2
