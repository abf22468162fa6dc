"""Softphones over TLS (pjsua2) through a real `pbx serve --listen tls:`.

The PBX's certificate comes from a test CA the phones trust, issued for
127.0.0.1, so the phones verify it as a real deployment would.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.server import RunningServer, run_server
from tests.e2e.test_ivr import AFTER_PROMPT, assert_heard_whole, prompt_span, voiced
from tests.tls_certs import write_ca, write_leaf

from .harness import DOMAIN
from .linphone import Linphone, available as linphone_available
from .phone import Phone, PhoneFactory, talk_both_ways, wav_rms, write_tone_wav

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DIALPLAN = """\
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An Nguyen, department: sales, password: an-secret-1001}
  1003: {name: Chau Le, department: sales, password: chau-secret-1003, media_encryption: required}
  1004: {name: Dung Pham, department: sales, password: dung-secret-1004}
media: {rtp_ports: "31200-31399", language: en}
ivr_menus:
  main:
    number: "800"
    greeting: welcome
    options: {"1": {extension: "1003"}}
    timeout: 6
    retries: 0
    fallback: {hangup: true}
"""
PASSWORDS = {"1001": "an-secret-1001", "1003": "chau-secret-1003", "1004": "dung-secret-1004"}


@dataclass
class TlsPbx:
    server: RunningServer
    ca_file: Path
    cert: Path
    key: Path
    ca: trustme.CA

    @property
    def registrar(self) -> str:
        return f"127.0.0.1:{self.server.tls_port}"


def start_tls_pbx(directory: Path, dialplan: str) -> Iterator[TlsPbx]:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    # localhost too: linphonec's TLS library checks DNS names, not IP addresses.
    cert, key = write_leaf(ca, directory / "tls", "127.0.0.1", "pbx.example.com", "localhost")
    ca_file = write_ca(ca, directory / "tls" / "ca.pem")
    plan = directory / "plan.yaml"
    plan.write_text(dialplan)
    with run_server(plan, f"sqlite:///{directory / 'pbx.sqlite3'}",
                    ["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tls:127.0.0.1:0"],
                    ("--tls-cert", str(cert), "--tls-key", str(key))) as server:
        yield TlsPbx(server, ca_file, cert, key, ca)


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


@pytest.fixture
def tls_pbx(tmp_path: Path, dialplan: str) -> Iterator[TlsPbx]:
    yield from start_tls_pbx(tmp_path / "pbx", dialplan)


def registered(phones: PhoneFactory, pbx: TlsPbx, number: str, transport: str = "tls",
               **options: object) -> Phone:
    phone = phones(f"ext{number}", tls_ca=pbx.ca_file)
    registrar = pbx.registrar if transport == "tls" else f"127.0.0.1:{pbx.server.udp_port}"
    state = phone.register(number, PASSWORDS[number], DOMAIN, registrar, transport=transport,
                           **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def test_phones_register_and_call_over_tls_with_audio_both_ways(tls_pbx: TlsPbx, phones: PhoneFactory,
                                                               tmp_path: Path) -> None:
    alice = registered(phones, tls_pbx, "1001")
    bob = registered(phones, tls_pbx, "1004", auto_answer=200)
    call = alice.call(f"sip:1004@{tls_pbx.registrar};transport=tls")
    invite = bob.wait_for("incoming_call", 10.0)
    alice.wait_for("media_state", 10.0, call=call, status="active")
    incoming = bob.wait_for("media_state", 10.0, status="active")
    bob_call = int(incoming["call"])
    heard_by_alice, heard_by_bob = talk_both_ways(alice, bob, call, bob_call, tmp_path)
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    assert heard_by_alice > 1000.0 and heard_by_bob > 1000.0
    # Bob was reached over TLS: the PBX's Via says so.
    assert invite["via"].startswith("SIP/2.0/TLS 127.0.0.1:"), invite["via"]


def test_tls_and_srtp_phones_call_a_required_extension_with_encrypted_audio_both_ways(
        tls_pbx: TlsPbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice = registered(phones, tls_pbx, "1001", srtp="mandatory")
    bob = registered(phones, tls_pbx, "1003", auto_answer=200, srtp="mandatory")
    call = alice.call(f"sip:1003@{tls_pbx.registrar};transport=tls")
    invite = bob.wait_for("incoming_call", 10.0)
    mine = alice.wait_for("media_state", 10.0, call=call, status="active")
    incoming = bob.wait_for("media_state", 10.0, status="active")
    bob_call = int(incoming["call"])
    heard_by_alice, heard_by_bob = talk_both_ways(alice, bob, call, bob_call, tmp_path)
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    assert heard_by_alice > 1000.0 and heard_by_bob > 1000.0
    # Both ends run SRTP with the keys the PBX passed end to end over TLS.
    assert mine["proto"] == incoming["proto"] == "RTP/SAVP"
    assert "m=audio" in invite["body"] and "RTP/SAVP" in invite["body"] and "a=crypto:" in invite["body"]


def test_a_plain_rtp_offer_to_a_required_extension_gets_488(tls_pbx: TlsPbx, phones: PhoneFactory) -> None:
    alice = registered(phones, tls_pbx, "1001")           # no SRTP at all
    bob = registered(phones, tls_pbx, "1003", auto_answer=200, srtp="mandatory")
    call = alice.call(f"sip:1003@{tls_pbx.registrar};transport=tls")
    ended = alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    assert ended["code"] == 488 and ended["reason"] == "SRTP Required"
    with pytest.raises(TimeoutError):
        bob.wait_for("incoming_call", 1.0)  # never rung


def test_srtp_keys_offered_over_udp_are_not_passed_on(tls_pbx: TlsPbx, phones: PhoneFactory) -> None:
    alice = registered(phones, tls_pbx, "1001", transport="udp", srtp="mandatory")
    bob = registered(phones, tls_pbx, "1004", auto_answer=200, srtp="optional")
    call = alice.call(f"sip:1004@127.0.0.1:{tls_pbx.server.udp_port}", transport="udp")
    ended = alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    assert ended["code"] == 488 and ended["reason"] == "SRTP Keys Need TLS Signalling"
    with pytest.raises(TimeoutError):
        bob.wait_for("incoming_call", 1.0)  # never rung


def cdr_rows(pbx: TlsPbx) -> list[dict[str, str]]:
    out = subprocess.run([sys.executable, "-m", "pbx", "cdr", "list", "--csv", "--db",
                          f"sqlite:///{pbx.cert.parent.parent / 'pbx.sqlite3'}"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return list(csv.DictReader(io.StringIO(out.lstrip("\ufeff"))))


def test_the_auto_attendant_speaks_and_hears_keys_over_srtp(tls_pbx: TlsPbx, phones: PhoneFactory,
                                                           tmp_path: Path) -> None:
    alice = registered(phones, tls_pbx, "1001", srtp="mandatory")
    bob = registered(phones, tls_pbx, "1003", auto_answer=200, srtp="mandatory")
    call = alice.call(f"sip:800@{tls_pbx.registrar};transport=tls")
    answered = alice.wait_for("media_state", 10.0, call=call, status="active")
    assert answered["proto"] == "RTP/SAVP"   # the PBX's own endpoint took the keys
    greeting = tmp_path / "greeting.wav"
    alice.record(greeting, call)
    time.sleep(prompt_span("welcome") + AFTER_PROMPT)
    alice.stop_record(call)
    first, last = voiced(greeting)             # decrypted by the phone: the prompt, not noise
    assert_heard_whole(first, last, prompt_span("welcome"), tls_pbx.server, share=0.1)
    alice.send_dtmf("1", call)                 # RFC 4733 inside SRTP
    incoming = bob.wait_for("media_state", 15.0, status="active")
    assert incoming["proto"] == "RTP/SAVP"
    bob_call = int(incoming["call"])
    heard_by_alice, heard_by_bob = talk_both_ways(alice, bob, call, bob_call, tmp_path)
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
    assert heard_by_alice > 1000.0 and heard_by_bob > 1000.0
    deadline = time.monotonic() + 10.0
    while not (rows := [r for r in cdr_rows(tls_pbx) if r["dialed_number"] == "800" and r["ended_at"]]):
        assert time.monotonic() < deadline, "no CDR for the call to 800"
        time.sleep(0.3)
    assert (rows[-1]["disposition"], rows[-1]["destination"], rows[-1]["ivr_path"]) == ("ANSWERED", "1003", "main[1]")


def test_a_phone_on_srtp_hears_music_on_hold_encrypted(tls_pbx: TlsPbx, phones: PhoneFactory,
                                                      tmp_path: Path) -> None:
    alice = registered(phones, tls_pbx, "1001", srtp="mandatory")
    bob = registered(phones, tls_pbx, "1003", auto_answer=200, srtp="mandatory")
    call = alice.call(f"sip:1003@{tls_pbx.registrar};transport=tls")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])
    bob.hold(bob_call)
    bob.wait_for("media_state", 10.0, call=bob_call, status="local_hold")
    # Our re-INVITE moves Alice to the music: RTP/SAVP, since she insists on
    # SRTP (a best-effort RTP/AVP offer would be refused and she would hear nothing).
    moved = alice.wait_for("media_state", 10.0, call=call, status="remote_hold")
    assert moved["dir"] == "recvonly", moved
    held = tmp_path / "held.wav"
    alice.record(held, call)
    time.sleep(2.5)
    alice.stop_record(call)
    assert wav_rms(held, skip_seconds=0.3) > 1000.0   # music, decrypted by the phone
    bob.unhold(bob_call)
    bob.wait_for("media_state", 10.0, call=bob_call, status="active")
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)


@pytest.mark.skipif(not linphone_available(), reason="no linphonec: make deps installs linphone-cli")
def test_linphone_registers_and_calls_over_tls(tls_pbx: TlsPbx, phones: PhoneFactory, tmp_path: Path) -> None:
    """linphonec with TLS only (no UDP at all), checking the PBX's certificate
    against the test CA by name: it registers, calls a pjsua2 phone, and is
    called back through the PBX over its TLS connection."""
    bob = registered(phones, tls_pbx, "1004", auto_answer=200)
    linphone = Linphone(tmp_path / "linphone", tls_ca=tls_pbx.ca_file)
    heard, heard_back = tmp_path / "bob-heard.wav", tmp_path / "bob-heard-back.wav"
    tone = write_tone_wav(tmp_path / "a.wav", frequency=440.0, seconds=2.0)
    try:
        proxy = f"sip:localhost:{tls_pbx.server.tls_port};transport=tls"
        linphone.send(f"register sip:1001@{DOMAIN} {proxy} {PASSWORDS['1001']}")
        linphone.send("autoanswer enable")
        linphone.send(f"call sip:1004@localhost:{tls_pbx.server.tls_port};transport=tls")
        linphone.wait_for("connected", 15.0)
        bob_call = int(bob.wait_for("media_state", 10.0, status="active")["call"])
        bob.record(heard, bob_call)
        linphone.send(f"play {tone}")
        time.sleep(2.0)
        bob.stop_record(bob_call)
        linphone.send("terminate")
        bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
        # Bob calls back: the PBX reaches Linphone through its registration,
        # over TLS (Linphone listens on nothing else).
        back = bob.call(f"sip:1001@{tls_pbx.registrar};transport=tls")
        bob.wait_for("media_state", 15.0, call=back, status="active")
        linphone.wait_for("connected", 10.0)
        bob.record(heard_back, back)
        linphone.send(f"play {tone}")
        time.sleep(2.0)
        bob.stop_record(back)
        bob.hangup(back)
    finally:
        linphone.close()
    assert wav_rms(heard, skip_seconds=0.3) > 1000.0
    assert wav_rms(heard_back, skip_seconds=0.3) > 1000.0


def test_a_sips_call_rings_only_phones_on_tls(tls_pbx: TlsPbx, phones: PhoneFactory) -> None:
    alice = registered(phones, tls_pbx, "1001")
    desk = registered(phones, tls_pbx, "1004", transport="udp", auto_answer=200)
    # 1004 is only on UDP: a sips: call may not reach it (RFC 5630): 480 with Warning 380.
    call = alice.call(f"sips:1004@{tls_pbx.registrar}")
    ended = alice.wait_call_state("DISCONNECTED", call, timeout=10.0)
    assert ended["code"] == 480, ended
    with pytest.raises(TimeoutError):
        desk.wait_for("incoming_call", 1.0)
    refused = tls_pbx.server.lines_with("call_sips_not_allowed")
    assert len(refused) == 1 and json.loads(refused[0])["callee"] == "1004"
    # A softphone of 1004 on TLS as well: a sips: call rings it, and only it.
    soft = phones("ext1004-soft", tls_ca=tls_pbx.ca_file)
    assert soft.register("1004", PASSWORDS["1004"], DOMAIN, tls_pbx.registrar, transport="tls")["code"] == 200
    call = alice.call(f"sips:1004@{tls_pbx.registrar}")
    incoming = soft.wait_for("incoming_call", 10.0)
    assert incoming["via"].startswith("SIP/2.0/TLS "), incoming["via"]
    with pytest.raises(TimeoutError):
        desk.wait_for("incoming_call", 1.0)
    soft.answer(200, int(incoming["call"]))
    alice.wait_call_state("CONFIRMED", call, timeout=10.0)
    alice.hangup(call)
    soft.wait_call_state("DISCONNECTED", int(incoming["call"]), timeout=10.0)
