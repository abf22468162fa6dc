"""Agent codes from a real softphone (pjsua2) through a real `pbx serve`:
``*46700`` logs the agent out of linear group 700 (answered ``480 Logged Out
700`` until spoken confirmations come with media), after which calls to 700
skip them at once and the next member answers; ``*45700`` logs them back in
and they take the next call."""

from __future__ import annotations

import pytest

from .harness import DOMAIN, Pbx
from .phone import Phone, PhoneFactory

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
    phone = phones(f"ext{number}")
    state = phone.register(number, PASSWORDS[number], DOMAIN, pbx.registrar(), **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def dial(phone: Phone, number: str, pbx: Pbx) -> int:
    return phone.call(f"sip:{number}@{pbx.registrar()};transport=udp", transport="udp")


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
    rows = [r for r in pbx.cdrs() if r["dialed_number"] == "700" and r["ended_at"]]
    assert [r["answered_by"] for r in rows] == ["2102", "2101"]
