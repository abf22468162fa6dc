"""Two real softphones (pjsua2) call each other through `pbx serve`.

Each ending of a call is checked twice: the status the caller's phone sees,
and the CDR row `pbx cdr list --csv` prints for it.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest

from .harness import DOMAIN, Pbx
from .phone import Phone, PhoneFactory, talk_both_ways, wav_rms, write_tone_wav

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DIALPLAN = """\
domain: pbx.example.com
voicemail: {enabled: false}  # busy, unanswered and unreachable calls end here (test_voicemail.py has mailboxes)
departments:
  sales: {name: Sales}
  support: {name: Support}
extensions:
  1001: {name: An Nguyen, department: sales, password: an-secret-1001}
  1002: {name: Binh Tran, department: support, password: binh-secret-1002, ring_timeout: 3}
  1003: {name: Chau Le, department: support, password: chau-secret-1003}
"""
PASSWORDS = {"1001": "an-secret-1001", "1002": "binh-secret-1002", "1003": "chau-secret-1003"}



@pytest.fixture
def dialplan() -> str:
    return DIALPLAN

def registered(phones: PhoneFactory, pbx: Pbx, number: str, transport: str = "udp", **options: object) -> Phone:
    phone = phones(f"ext{number}")
    state = phone.register(number, PASSWORDS[number], DOMAIN, pbx.registrar(transport), transport=transport,
                           **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def dial(phone: Phone, number: str, pbx: Pbx, transport: str = "udp") -> int:
    # The phones have no DNS for the domain: dial the PBX's address itself.
    return phone.call(f"sip:{number}@{pbx.registrar(transport)};transport={transport}", transport=transport)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_answered_call_audio_both_ways_and_cdr(pbx: Pbx, phones: PhoneFactory, tmp_path: Path, transport: str) -> None:
    alice = registered(phones, pbx, "1001", transport)
    bob = registered(phones, pbx, "1003", transport, auto_answer=200)
    started = time.time()
    call = dial(alice, "1003", pbx, transport)
    alice.wait_for("media_state", 10.0, call=call, status="active")
    incoming = bob.wait_for("media_state", 10.0, status="active")
    bob_call = int(incoming["call"])
    heard_by_alice, heard_by_bob = talk_both_ways(alice, bob, call, bob_call, tmp_path)
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    ended = time.time()
    assert heard_by_bob > 1000.0
    assert heard_by_alice > 1000.0

    row = pbx.cdr_for("1001", "1003")
    assert row["disposition"] == "ANSWERED"
    assert row["hangup_side"] == "caller"
    assert row["destination"] == "1003"
    assert row["caller_name"] == "An Nguyen"
    assert row["caller_department"] == "sales"
    billsec, duration = float(row["billsec"]), float(row["duration"])
    assert abs(billsec - (ended - started)) <= 2.0
    assert duration >= billsec


def test_callee_hangs_up(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "1001")
    bob = registered(phones, pbx, "1003", auto_answer=200)
    call = dial(alice, "1003", pbx)
    alice.wait_call_state("CONFIRMED", call, timeout=10.0)
    bob_call = int(bob.wait_call_state("CONFIRMED", timeout=10.0)["call"])
    time.sleep(1.0)
    bob.hangup(bob_call)
    alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    row = pbx.cdr_for("1001", "1003")
    assert (row["disposition"], row["hangup_side"]) == ("ANSWERED", "callee")
    assert float(row["billsec"]) >= 0.5


@pytest.mark.parametrize(
    ("answer_code", "expected_status", "disposition"),
    [(486, 486, "BUSY"), (603, 603, "REJECTED")],
)
def test_callee_busy_or_declines(pbx: Pbx, phones: PhoneFactory, answer_code: int, expected_status: int,
                                 disposition: str) -> None:
    alice = registered(phones, pbx, "1001")
    registered(phones, pbx, "1003", auto_answer=answer_code)
    call = dial(alice, "1003", pbx)
    end = alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    assert end["code"] == expected_status
    row = pbx.cdr_for("1001", "1003")
    assert row["disposition"] == disposition
    assert row["hangup_status"] == str(expected_status)


def test_caller_cancels(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "1001")
    bob = registered(phones, pbx, "1003")
    call = dial(alice, "1003", pbx)
    bob.wait_for("incoming_call", 10.0)
    alice.wait_call_state("EARLY", call, timeout=10.0)
    end = alice.hangup(call)
    assert end["code"] == 487
    bob.wait_call_state("DISCONNECTED", timeout=10.0)
    row = pbx.cdr_for("1001", "1003")
    assert (row["disposition"], row["hangup_side"]) == ("CANCELLED", "caller")


def test_no_answer_within_ring_timeout(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "1001")
    bob = registered(phones, pbx, "1002")  # ring_timeout: 3
    started = time.monotonic()
    call = dial(alice, "1002", pbx)
    bob.wait_for("incoming_call", 10.0)
    end = alice.wait_call_state("DISCONNECTED", call, timeout=15.0)
    assert end["code"] == 480
    assert 2.5 <= time.monotonic() - started <= 8.0
    bob.wait_call_state("DISCONNECTED", timeout=10.0)
    assert pbx.cdr_for("1001", "1002")["disposition"] == "NO_ANSWER"


def test_callee_not_registered(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "1001")
    call = dial(alice, "1003", pbx)
    end = alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    assert end["code"] == 480
    row = pbx.cdr_for("1001", "1003")
    assert (row["disposition"], row["hangup_status"]) == ("UNAVAILABLE", "480")


def test_unknown_number(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "1001")
    call = dial(alice, "7777", pbx)
    end = alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    assert end["code"] == 404
    row = pbx.cdr_for("1001", "7777")
    assert (row["disposition"], row["hangup_status"]) == ("REJECTED", "404")


def test_hold_and_resume_audio_returns(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice = registered(phones, pbx, "1001")
    bob = registered(phones, pbx, "1003", auto_answer=200)
    call = dial(alice, "1003", pbx)
    alice.wait_for("media_state", 10.0, call=call, status="active")
    bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])
    alice.hold(call)
    bob.wait_for("media_state", 10.0, call=bob_call, status="remote_hold")
    # pjsua refuses a new re-INVITE until its own hold transaction is done.
    alice.wait_for("media_state", 10.0, call=call, status="local_hold")
    # The PBX answers the hold, then moves Bob to the music with its own
    # re-INVITE; a resume that comes before Bob's answer to it has reached
    # the PBX gets 491 (RFC 3261 §14.1), and Bob's pjsua reports the hold
    # before its answer has left. A desk phone tries again after 2.1-4 s;
    # pjsua does not, so the test does it once (seen once in a loaded
    # make test: hold_started logged, hold_resumed never; that this is the
    # cause is likely, not shown: the caller's side was not printed then).
    for attempt in (1, 2):
        alice.unhold(call)
        try:
            bob.wait_for("media_state", 6.0, call=bob_call, status="active")
            break
        except TimeoutError as stuck:
            seen = "\n".join(json.dumps(event) for event in list(alice.history)[-15:])
            if attempt == 1:  # shown in the run's summary: the cause is not yet seen
                warnings.warn(f"hold test: the first resume did not reach Bob; caller's last events:\n{seen}")
                time.sleep(2.1)
                continue
            raise AssertionError(f"{stuck}\ncaller's last events:\n{seen}") from stuck
    tone = write_tone_wav(tmp_path / "tone.wav", frequency=500.0, seconds=1.0)
    heard = tmp_path / "after-resume.wav"
    bob.record(heard, bob_call)
    alice.play(tone, call)
    alice.wait_for("play_done", 5.0, call=call)
    time.sleep(0.5)
    bob.stop_record(bob_call)
    assert wav_rms(heard) > 1000.0
    alice.hangup(call)
    assert pbx.cdr_for("1001", "1003")["disposition"] == "ANSWERED"


def test_unauthenticated_invite_is_challenged(pbx: Pbx) -> None:
    from tests.sipclient import SipClient

    with SipClient("udp", ("127.0.0.1", pbx.server.udp_port)) as stranger:
        host, port = stranger.local
        stranger.send_raw((
            f"INVITE sip:1003@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bKinv1;rport\r\n"
            f"From: <sip:1001@{DOMAIN}>;tag=x1\r\nTo: <sip:1003@{DOMAIN}>\r\nCall-ID: stranger-1\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:1001@{host}:{port}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode())
        answer = stranger.final_response()
        assert answer is not None and answer.status == 407
        assert answer.has("proxy-authenticate")
