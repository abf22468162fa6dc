"""Hunt group queues with real softphones (pjsua2) through `pbx serve`.

The only member of group 700 (2101) is on a call with 2102. Alice (2001)
calls 700: the PBX answers, she hears "you are number one in the queue"
(the shipped prompt, found in her recording) and then music. 2101 hangs up:
the PBX rings 2101 for Alice at once, and once 2101 answers Alice talks to
2101, media straight between the phones. In group 701 nobody frees up:
after its max_wait Alice goes on to the overflow extension (2103).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from .harness import DOMAIN, Pbx
from .phone import Phone, PhoneFactory, talk_both_ways
from .prompt_match import heard_prompt, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PASSWORDS = {"2001": "alice-secret-2001", "2101": "agent-secret-2101", "2102": "other-secret-2102",
             "2103": "over-secret-2103"}


@pytest.fixture
def dialplan() -> str:
    lines = [f"domain: {DOMAIN}", "departments:", "  ops: {name: Operations}",
             'media: {rtp_ports: "31400-31599", language: en}', "extensions:"]
    lines += [f"  {number}: {{name: U{number}, department: ops, password: {secret}}}"
              for number, secret in PASSWORDS.items()]
    lines += ["hunt_groups:",
              '  "700": {name: Desk, strategy: linear, members: ["2101"], skip_busy: true, member_seconds: 10,'
              " total_seconds: 15, queue: {max_wait: 60}}",
              '  "701": {name: Night, strategy: linear, members: ["2101"], skip_busy: true,'
              ' queue: {max_wait: 4}, overflow: {busy: {extension: "2103"}}}']
    return "\n".join(lines) + "\n"


def registered(phones: PhoneFactory, pbx: Pbx, number: str, **options: object) -> Phone:
    phone = phones(f"ext{number}")
    state = phone.register(number, PASSWORDS[number], DOMAIN, pbx.registrar(), **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def dial(phone: Phone, number: str, pbx: Pbx) -> int:
    return phone.call(f"sip:{number}@{pbx.registrar()};transport=udp", transport="udp")


def busy_member(phones: PhoneFactory, pbx: Pbx) -> tuple[Phone, int, Phone]:
    """2101 (auto-answering) on a call with 2102."""
    member = registered(phones, pbx, "2101", auto_answer=200)
    other = registered(phones, pbx, "2102", auto_answer=200)
    busy_call = dial(member, "2102", pbx)
    member.wait_for("media_state", 10.0, call=busy_call, status="active")
    other.wait_for("media_state", 10.0, status="active")
    return member, busy_call, other


def test_a_caller_hears_its_place_and_music_then_talks_to_the_member_who_frees_up(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    member, busy_call, other = busy_member(phones, pbx)
    alice = registered(phones, pbx, "2001")
    call = dial(alice, "700", pbx)
    alice.wait_for("media_state", 10.0, call=call, status="active")
    waiting = tmp_path / "waiting.wav"
    alice.record(waiting, call)
    time.sleep(5.0)
    alice.stop_record(call)

    heard = recorded(waiting)
    assert heard_prompt(heard, "queue_position_1") > 0.9  # the position announcement, as shipped
    assert heard_prompt(heard, "queue_position_2") < 0.85  # (not another place: most words are alike)
    tail = heard[-2 * 8000:]
    assert np.sqrt(np.mean(tail ** 2)) > 500.0  # then music, not silence

    member.hangup(busy_call)  # the member frees up: it is rung for Alice at once
    other.wait_call_state("DISCONNECTED", timeout=10.0)
    queued_call = int(member.wait_for("incoming_call", 10.0)["call"])
    member.wait_call_state("CONFIRMED", queued_call, timeout=10.0)
    pbx.server.wait_lines("direct_media", timeout=10.0)
    time.sleep(0.5)
    heard_by_alice, heard_by_member = talk_both_ways(alice, member, call, queued_call, tmp_path)
    assert heard_by_alice > 1000.0 and heard_by_member > 1000.0
    alice.hangup(call)
    member.wait_call_state("DISCONNECTED", queued_call, timeout=10.0)

    row = pbx.cdr_for("2001", "700")
    assert (row["disposition"], row["hunt_group"], row["answered_by"]) == ("ANSWERED", "700", "2101")
    assert int(row["wait"]) >= 5  # answered when the member took it, not when the queue did


def test_past_its_max_wait_a_queued_caller_goes_to_the_overflow(pbx: Pbx, phones: PhoneFactory,
                                                                 tmp_path: Path) -> None:
    member, busy_call, _ = busy_member(phones, pbx)
    overflow = registered(phones, pbx, "2103", auto_answer=200)
    alice = registered(phones, pbx, "2001")
    started = time.monotonic()
    call = dial(alice, "701", pbx)
    alice.wait_call_state("CONFIRMED", call, timeout=10.0)  # answered by the queue
    overflow_call = int(overflow.wait_for("incoming_call", 15.0)["call"])
    assert time.monotonic() - started >= 4.0  # not before max_wait
    overflow.wait_call_state("CONFIRMED", overflow_call, timeout=10.0)
    pbx.server.wait_lines("direct_media", timeout=10.0)
    time.sleep(0.5)
    heard_by_alice, heard_by_overflow = talk_both_ways(alice, overflow, call, overflow_call, tmp_path)
    assert heard_by_alice > 1000.0 and heard_by_overflow > 1000.0
    alice.hangup(call)
    member.hangup(busy_call)
    row = pbx.cdr_for("2001", "701")
    assert (row["disposition"], row["destination"], row["hunt_group"]) == ("ANSWERED", "2103", "701")
    assert row["answered_by"] == ""
