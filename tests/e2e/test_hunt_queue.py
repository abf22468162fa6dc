"""Hunt group queues with real softphones (pjsua2) through `pbx serve`.

The only member of group 700 (2101) is on a call with 2102. Alice (2001)
calls 700: the PBX answers, she hears "you are number one in the queue"
(the shipped prompt, found in her recording) and then music. 2101 hangs up:
the PBX rings 2101 for Alice at once, and once 2101 answers Alice talks to
2101, media straight between the phones. In group 701 nobody frees up:
after its max_wait Alice goes on to the overflow extension (2103). Group
702 has nobody registered and overflows to an announcement: Alice hears
the "closed" prompt, then 480.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from .harness import DOMAIN, Pbx, dial, register_phone
from .phone import Phone, PhoneFactory, talk_both_ways
from .prompt_match import heard_prompt, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PASSWORDS = {"2001": "alice-secret-2001", "2101": "agent-secret-2101", "2102": "other-secret-2102",
             "2103": "over-secret-2103", "2104": "never-secret-2104"}


@pytest.fixture
def dialplan() -> str:
    lines = [f"domain: {DOMAIN}", "voicemail: {enabled: false}", "departments:", "  ops: {name: Operations}",
             'media: {rtp_ports: "31400-31599", language: en}', "extensions:"]
    lines += [f"  {number}: {{name: U{number}, department: ops, password: {secret}}}"
              for number, secret in PASSWORDS.items()]
    lines += ["hunt_groups:",
              '  "700": {name: Desk, strategy: linear, members: ["2101"], skip_busy: true, member_seconds: 10,'
              " total_seconds: 15, queue: {max_wait: 60}}",
              '  "701": {name: Night, strategy: linear, members: ["2101"], skip_busy: true,'
              ' queue: {max_wait: 4}, overflow: {busy: {extension: "2103"}}}',
              '  "702": {name: Empty, members: ["2104"], overflow: {none_registered: {announcement: closed}}}']
    return "\n".join(lines) + "\n"


def registered(phones: PhoneFactory, pbx: Pbx, number: str, **options: object) -> Phone:
    return register_phone(phones, pbx, number, PASSWORDS[number], **options)


def busy_member(phones: PhoneFactory, pbx: Pbx) -> tuple[Phone, int, Phone]:
    """2101 (auto-answering) on a call with 2102."""
    member = registered(phones, pbx, "2101", auto_answer=200)
    other = registered(phones, pbx, "2102", auto_answer=200)
    busy_call = dial(member, "2102", pbx)
    member.wait_for("media_state", 10.0, call=busy_call, status="active")
    other.wait_for("media_state", 10.0, status="active")
    return member, busy_call, other


def talking(pbx: Pbx, alice: Phone, call: int, callee: Phone, callee_call: int, tmp_path: Path) -> None:
    """``callee`` answers; once the PBX moved Alice's media to it, each hears the other."""
    callee.wait_call_state("CONFIRMED", callee_call, timeout=10.0)
    pbx.server.wait_lines("direct_media", timeout=10.0)
    time.sleep(0.5)
    heard_by_alice, heard_by_callee = talk_both_ways(alice, callee, call, callee_call, tmp_path)
    assert heard_by_alice > 1000.0 and heard_by_callee > 1000.0


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
    talking(pbx, alice, call, member, queued_call, tmp_path)
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
    talking(pbx, alice, call, overflow, overflow_call, tmp_path)
    alice.hangup(call)
    member.hangup(busy_call)
    row = pbx.cdr_for("2001", "701")
    assert (row["disposition"], row["destination"], row["hunt_group"]) == ("ANSWERED", "2103", "701")
    assert row["answered_by"] == ""


def test_an_announcement_as_the_overflow(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice = registered(phones, pbx, "2001")
    call = dial(alice, "702", pbx)
    alice.wait_for("media_state", 10.0, call=call, status="active")  # 183: early media
    heard = tmp_path / "announcement.wav"
    alice.record(heard, call)
    end = alice.wait_call_state("DISCONNECTED", call, timeout=20.0)
    alice.wait_for("record_done", 5.0, call=call)
    assert end["code"] == 480
    assert heard_prompt(recorded(heard), "closed") > 0.9
    row = pbx.cdr_for("2001", "702")
    assert (row["disposition"], row["reason"]) == ("UNAVAILABLE", "hunt_none_registered")
