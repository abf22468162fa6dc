"""Agent codes from a real softphone (pjsua2) through a real `pbx serve`:
``*46700`` logs the agent out of linear group 700 (the agent hears "you are
logged out" in early media, then ``480 Logged Out 700``), after which calls
to 700 skip them at once and the next member answers; ``*45700`` logs them
back in ("you are logged in") and they take the next call."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import DOMAIN, Pbx, dial, register_phone, rows_once
from .phone import Phone, PhoneFactory
from .prompt_match import heard_prompt, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PASSWORDS = {"2001": "alice-secret-2001", "2101": "agent-secret-2101", "2102": "agent-secret-2102"}


@pytest.fixture
def dialplan() -> str:
    lines = [f"domain: {DOMAIN}", "departments:", "  ops: {name: Operations}", "extensions:"]
    lines += [f"  {number}: {{name: U{number}, department: ops, password: {secret}}}"
              for number, secret in PASSWORDS.items()]
    lines += ["hunt_groups:", '  "700": {name: Desk, strategy: linear, members: ["2101", "2102"], member_seconds: 10}']
    return "\n".join(lines) + "\n"


def registered(phones: PhoneFactory, pbx: Pbx, number: str, **options: object) -> Phone:
    return register_phone(phones, pbx, number, PASSWORDS[number], **options)


def answered_by(pbx: Pbx, caller: Phone, callee: Phone) -> None:
    call = dial(caller, "700", pbx)
    caller.wait_call_state("CONFIRMED", call, timeout=15.0)
    callee.wait_call_state("CONFIRMED", timeout=10.0)
    caller.hangup(call)


def test_agent_logs_out_and_in_with_feature_codes(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "2001")
    agent = registered(phones, pbx, "2101", auto_answer=200)
    other = registered(phones, pbx, "2102", auto_answer=200)

    out = dial(agent, "*46700", pbx)
    end = agent.wait_call_state("DISCONNECTED", out, timeout=10.0)
    assert (end["code"], end["reason"]) == (480, "Logged Out 700")

    answered_by(pbx, alice, other)
    row = pbx.cdr_for("2001", "700")
    assert (row["hunt_group"], row["answered_by"], row["disposition"]) == ("700", "2102", "ANSWERED")
    assert int(row["wait"]) < 5  # 2101 was skipped at once, not rung for its 10 s

    back = dial(agent, "*45700", pbx)
    end = agent.wait_call_state("DISCONNECTED", back, timeout=10.0)
    assert (end["code"], end["reason"]) == (480, "Logged In 700")

    answered_by(pbx, alice, agent)
    rows = rows_once(pbx.cdrs, lambda r: r["dialed_number"] == "700" and bool(r["ended_at"]), 2)
    assert [r["answered_by"] for r in rows] == ["2102", "2101"]


def confirmation(agent: Phone, code: str, pbx: Pbx, path: Path) -> tuple[tuple[int, str], dict[str, float]]:
    """Dial ``code``: the final status and reason, and how well each
    confirmation prompt matches what the agent heard before it."""
    call = dial(agent, code, pbx)
    agent.wait_for("media_state", 10.0, call=call, status="active")  # 183: early media
    agent.record(path, call)
    end = agent.wait_call_state("DISCONNECTED", call, timeout=15.0)
    agent.wait_for("record_done", 5.0, call=call)
    heard = recorded(path)
    return (end["code"], end["reason"]), {name: heard_prompt(heard, name) for name in ("logged_in", "logged_out")}


def test_agent_codes_are_confirmed_by_voice(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    agent = registered(phones, pbx, "2101")
    final, heard = confirmation(agent, "*46700", pbx, tmp_path / "out.wav")
    assert final == (480, "Logged Out 700")
    assert heard["logged_out"] > 0.9 and heard["logged_in"] < 0.8, heard
    final, heard = confirmation(agent, "*45", pbx, tmp_path / "toggle.wav")  # alone: toggles, back in
    assert final == (480, "Logged In 700")
    assert heard["logged_in"] > 0.9 and heard["logged_out"] < 0.8, heard
