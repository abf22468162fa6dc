"""SRTP through the anchor (pjsua2 phones, `pbx serve` with TLS): a phone that
offers SRTP over TLS calls a phone on plain UDP. The keys cannot be passed
to it (they would cross plain signalling), so the PBX anchors the call:
the caller's leg is SRTP with the PBX, the callee's plain RTP, and each
hears the other through the relay. A recorded call between two SRTP
phones is SRTP on both legs, decrypted for the file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .phone import Phone, PhoneFactory
from .test_recording import exchange_tones, recorded_tones
from .test_tls_phones import DIALPLAN, TlsPbx, registered, start_tls_pbx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def tls_pbx(tmp_path: Path) -> Iterator[TlsPbx]:
    yield from start_tls_pbx(tmp_path / "pbx", DIALPLAN)


def talk_over_tls(caller: Phone, callee: Phone, number: str, pbx: TlsPbx, folder: Path) -> tuple[str, str, str]:
    """``caller`` calls ``number`` over TLS, ``callee`` answers, tones both
    ways (each hears the other's) and hang up: (the INVITE's SDP as the
    callee got it, the caller's media profile, the callee's)."""
    call = caller.call(f"sip:{number}@{pbx.registrar};transport=tls")
    invite = callee.wait_for("incoming_call", 10.0)
    mine = caller.wait_for("media_state", 10.0, call=call, status="active")
    theirs = callee.wait_for("media_state", 10.0, status="active")
    callee_call = int(theirs["call"])
    heard = exchange_tones(caller, call, callee, callee_call, folder, (440.0, 660.0))
    assert heard == pytest.approx((660.0, 440.0), abs=15.0)
    caller.hangup(call)
    callee.wait_call_state("DISCONNECTED", callee_call, timeout=10.0)
    return str(invite["body"]), str(mine["proto"]), str(theirs["proto"])


def test_an_srtp_phone_on_tls_talks_to_a_plain_phone_on_udp(tls_pbx: TlsPbx, phones: PhoneFactory,
                                                             tmp_path: Path) -> None:
    alice = registered(phones, tls_pbx, "1001", srtp="mandatory")        # RTP/SAVP, keys over TLS
    bob = registered(phones, tls_pbx, "1004", transport="udp", auto_answer=200)   # no SRTP
    body, mine, theirs = talk_over_tls(alice, bob, "1004", tls_pbx, tmp_path)
    assert (mine, theirs) == ("RTP/SAVP", "RTP/AVP")
    assert "a=crypto" not in body     # no key ever crossed the UDP leg


def test_a_recorded_call_between_two_srtp_phones_is_encrypted_on_both_legs(tmp_path: Path,
                                                                          phones: PhoneFactory) -> None:
    recordings = tmp_path / "recordings"
    plan = DIALPLAN + f"recording:\n  directory: {recordings}\n  announce: false\n  extensions: {{'1001': always}}\n"
    with contextmanager(start_tls_pbx)(tmp_path / "pbx", plan) as tls_pbx:
        alice = registered(phones, tls_pbx, "1001", srtp="mandatory")
        chau = registered(phones, tls_pbx, "1003", auto_answer=200, srtp="mandatory")   # media_encryption: required
        body, mine, theirs = talk_over_tls(alice, chau, "1003", tls_pbx, tmp_path)
        assert (mine, theirs) == ("RTP/SAVP", "RTP/SAVP") and "a=crypto" in body
        time.sleep(1.0)
        (saved,) = recordings.glob("*.wav")
        assert recorded_tones(saved) == pytest.approx((440.0, 660.0), abs=15.0)   # decrypted on both legs
