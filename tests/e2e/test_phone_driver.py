"""Self-test of the e2e softphone driver against SIPp (no PBX involved).

SIPp plays the registrar (tests/e2e/sipp/registrar.xml), the callee
(uas_answer.xml) and the caller (uac_call.xml); two phones also call each
other directly for the media and DTMF checks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server import free_port

from .phone import (
    PHONE_SCRIPT,
    Phone,
    PhoneError,
    PhoneFactory,
    wav_rms,
    write_tone_wav,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]

SIPP_DIR = Path(__file__).with_name("sipp")
SIPP_TRANSPORT = {"udp": "u1", "tcp": "t1"}


@dataclass
class Sipp:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"sipp did not finish; see {self.log}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def start_sipp(scenario: str, transport: str, log_dir: Path,
               *extra: str) -> Sipp:
    port = free_port()
    log = log_dir / f"sipp-{scenario}-{port}.log"
    command = [
        "sipp", *extra, "-sf", str(SIPP_DIR / f"{scenario}.xml"),
        "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-t", SIPP_TRANSPORT[transport], "-m", "1", "-nostdin",
        "-timeout", "15s", "-timeout_error", "-trace_err",
        "-error_file", str(log_dir / f"sipp-{scenario}-{port}.errors.log"),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=log_dir)
    time.sleep(0.1)   # let SIPp bind before the phone sends to it
    if process.poll() is not None:
        raise AssertionError(f"sipp exited at start: {log.read_text(errors='replace')}")
    return Sipp(process, port, log)


@pytest.fixture
def sipp_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sipp"
    path.mkdir()
    yield path


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_refresh_and_unregister(transport: str, phones: PhoneFactory,
                                         sipp_dir: Path) -> None:
    sipp = start_sipp("registrar", transport, sipp_dir)
    try:
        alice = phones("alice")
        registered = alice.register("alice", "secret", "e2e.test", f"127.0.0.1:{sipp.port}",
                                    transport=transport, expires=300)
        # The registrar granted 60 s in the Contact, not the 300 asked for.
        assert (registered["code"], registered["expires"], registered["active"]) == (200, 60, True)

        refreshed = alice.reregister()
        assert (refreshed["code"], refreshed["expires"], refreshed["active"]) == (200, 60, True)

        removed = alice.unregister()
        assert removed["code"] == 200
        assert removed["active"] is False
        assert sipp.wait() == 0
    finally:
        sipp.stop()


def test_close_can_unregister(phones: PhoneFactory, sipp_dir: Path) -> None:
    sipp = start_sipp("registrar", "tcp", sipp_dir)
    try:
        alice = phones("alice")
        registered = alice.register("alice", "secret", "e2e.test", f"127.0.0.1:{sipp.port}",
                                    transport="tcp")
        assert registered["active"] is True
        assert alice.close(unregister=True) == 0
        assert sipp.wait() == 0   # the scenario only ends on expires=0
    finally:
        sipp.stop()


def test_wrong_password_is_refused(phones: PhoneFactory, sipp_dir: Path) -> None:
    sipp = start_sipp("registrar", "udp", sipp_dir)
    try:
        alice = phones("alice")
        refused = alice.register("alice", "not-the-password", "e2e.test",
                                 f"127.0.0.1:{sipp.port}")
        # Challenged again with the credentials it sent: pjsip gives up.
        assert (refused["code"], refused["active"]) == (401, False)
        assert sipp.process.poll() is None   # the registration never completed
    finally:
        sipp.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_outgoing_call_answered_then_hung_up(transport: str, phones: PhoneFactory,
                                              sipp_dir: Path) -> None:
    sipp = start_sipp("uas_answer", transport, sipp_dir)
    try:
        alice = phones("alice")
        call = alice.call(f"sip:service@127.0.0.1:{sipp.port}", transport=transport)
        ringing = alice.wait_call_state("EARLY", call)
        assert ringing["code"] == 180
        confirmed = alice.wait_call_state("CONFIRMED", call)
        assert confirmed["code"] == 200
        assert confirmed["role"] == "uac"
        ended = alice.hangup(call)
        assert ended["call"] == call
        assert sipp.wait() == 0   # SIPp received the BYE and answered it
    finally:
        sipp.stop()


def test_incoming_call_auto_answered_and_remote_hangup(phones: PhoneFactory,
                                                        sipp_dir: Path) -> None:
    bob = phones("bob")
    bob.command({"cmd": "set", "auto_answer": 200, "auto_answer_delay": 0.2})
    sipp = start_sipp("uac_call", "udp", sipp_dir, f"127.0.0.1:{bob.udp_port}", "-s", "bob")
    try:
        incoming = bob.wait_for("incoming_call")
        assert incoming["from"].startswith('"SIPp" <sip:sipp@127.0.0.1')
        assert incoming["to"] == f"<sip:bob@127.0.0.1:{bob.udp_port}>"
        assert incoming["request_uri"] == f"sip:bob@127.0.0.1:{bob.udp_port};transport=UDP"
        call = int(incoming["call"])
        assert bob.wait_call_state("EARLY", call)["code"] == 180
        assert bob.wait_call_state("CONFIRMED", call)["role"] == "uas"
        bob.wait_call_state("DISCONNECTED", call)   # SIPp's BYE
        assert sipp.wait() == 0
    finally:
        sipp.stop()


def test_manual_answer_rejects_with_chosen_code(phones: PhoneFactory, sipp_dir: Path) -> None:
    bob = phones("bob")
    sipp = start_sipp("uac_call", "udp", sipp_dir, f"127.0.0.1:{bob.udp_port}", "-s", "bob")
    try:
        call = int(bob.wait_for("incoming_call")["call"])
        bob.answer(486, call)
        ended = bob.wait_call_state("DISCONNECTED", call)
        assert ended["code"] == 486
        assert sipp.wait() != 0   # the caller wanted a 200
    finally:
        sipp.stop()


def test_two_phones_hear_each_other_and_exchange_dtmf(phones: PhoneFactory,
                                                       tmp_path: Path) -> None:
    alice, bob = phones("alice"), phones("bob")
    bob.command({"cmd": "set", "auto_answer": 200})
    call = alice.call(f"sip:bob@127.0.0.1:{bob.udp_port}")
    alice.wait_for("media_state", call=call, status="active")
    incoming = bob.wait_for("media_state", status="active")
    bob_call = int(incoming["call"])

    tone = write_tone_wav(tmp_path / "tone.wav", frequency=440.0, seconds=1.0)
    heard_by_bob = tmp_path / "bob-heard.wav"
    heard_by_alice = tmp_path / "alice-heard.wav"
    bob.record(heard_by_bob, bob_call)
    alice.record(heard_by_alice, call)
    alice.play(tone, call)
    alice.wait_for("play_done", 5.0, call=call)
    alice.send_dtmf("12#", call)
    digits = "".join(bob.wait_for("dtmf", 5.0)["digit"] for _ in range(3))
    assert digits == "12#"

    bob.stop_record(bob_call)
    alice.stop_record(call)
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call)

    # Alice sent a tone at half scale (RMS about 11600); Bob sent nothing.
    assert wav_rms(heard_by_bob) > 1000.0
    assert wav_rms(heard_by_alice) < 100.0


def test_bad_commands_get_errors_and_the_phone_keeps_working(phones: PhoneFactory) -> None:
    alice = phones("alice")
    alice.send({"cmd": "no_such_command"})
    assert "unknown command" in alice.wait_for("error")["message"]
    alice.send({"cmd": "register", "user": "alice"})
    assert "missing field 'domain'" in alice.wait_for("error")["message"]
    alice.send({"cmd": "call", "uri": "tel:123"})
    assert "SIP URI" in alice.wait_for("error")["message"]
    alice.send({"cmd": "hangup"})
    assert alice.wait_for("error")["message"] == "no active call"
    alice.send({"cmd": "register", "user": "a", "domain": "d", "registrar": "127.0.0.1:5",
                "transport": "sctp"})
    assert "transport must be one of" in alice.wait_for("error")["message"]
    with pytest.raises(PhoneError, match="unknown command"):
        alice.command({"cmd": "still_not_a_command"})
    status = alice.command({"cmd": "status"})
    assert status["calls"] == [] and status["registered"] is False
    assert alice.close() == 0


def test_wait_for_times_out_with_recent_events(phones: PhoneFactory) -> None:
    alice = phones("alice")
    alice.command({"cmd": "status"})
    with pytest.raises(TimeoutError, match=r"incoming_call[\s\S]*\"cmd\": \"status\""):
        alice.wait_for("incoming_call", 0.2)


def test_phone_process_exits_when_stdin_closes(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, str(PHONE_SCRIPT), "--name", "orphan",
         "--log-file", str(tmp_path / "orphan.log")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None and process.stdin is not None
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "ready"
        process.stdin.close()   # what the parent dying looks like
        assert process.wait(5.0) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_closing_a_phone_twice_is_harmless(tmp_path: Path) -> None:
    phone = Phone.start("twice", tmp_path)
    assert phone.close() == 0
    assert phone.close() == 0
    with pytest.raises(PhoneError, match="exited"):
        phone.send({"cmd": "status"})


def test_hold_and_unhold_renegotiate_direction(phones: PhoneFactory) -> None:
    alice, bob = phones("alice"), phones("bob")
    bob.command({"cmd": "set", "auto_answer": 200})
    call = alice.call(f"sip:bob@127.0.0.1:{bob.udp_port}")
    alice.wait_call_state("CONFIRMED", call)
    bob_call = int(bob.wait_for("media_state", status="active")["call"])

    alice.hold(call)     # re-INVITE with a=sendonly (RFC 3264 §8.4)
    assert alice.wait_for("media_state", call=call, status="local_hold")["dir"] == "sendonly"
    assert bob.wait_for("media_state", call=bob_call, status="remote_hold")["dir"] == "recvonly"

    alice.unhold(call)   # back to a=sendrecv
    assert alice.wait_for("media_state", call=call, status="active")["dir"] == "sendrecv"
    assert bob.wait_for("media_state", call=bob_call, status="active")["dir"] == "sendrecv"

    bob.hangup(bob_call)
    assert alice.wait_call_state("DISCONNECTED", call)["code"] == 200
