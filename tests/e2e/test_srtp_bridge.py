"""SRTP bridging (pjsua2 phones, `pbx serve` with TLS): a phone that
offers SRTP over TLS calls a phone on plain UDP. The keys cannot be passed
to it (they would cross plain signalling), so the PBX anchors the call:
the caller's leg is SRTP with the PBX, the callee's plain RTP, and each
hears the other through the relay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .phone import PhoneFactory
from .test_recording import exchange_tones
from .test_tls_phones import DIALPLAN, TlsPbx, registered, start_tls_pbx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def tls_pbx(tmp_path: Path) -> Iterator[TlsPbx]:
    yield from start_tls_pbx(tmp_path / "pbx", DIALPLAN)


def test_an_srtp_phone_on_tls_talks_to_a_plain_phone_on_udp(tls_pbx: TlsPbx, phones: PhoneFactory,
                                                             tmp_path: Path) -> None:
    alice = registered(phones, tls_pbx, "1001", srtp="mandatory")        # RTP/SAVP, keys over TLS
    bob = registered(phones, tls_pbx, "1004", transport="udp", auto_answer=200)   # no SRTP
    call = alice.call(f"sip:1004@{tls_pbx.registrar};transport=tls")
    invite = bob.wait_for("incoming_call", 10.0)
    mine = alice.wait_for("media_state", 10.0, call=call, status="active")
    theirs = bob.wait_for("media_state", 10.0, status="active")
    bob_call = int(theirs["call"])
    heard = exchange_tones(alice, call, bob, bob_call, tmp_path, (440.0, 660.0))
    assert heard == pytest.approx((660.0, 440.0), abs=15.0)
    assert mine["proto"] == "RTP/SAVP" and theirs["proto"] == "RTP/AVP"
    assert "a=crypto" not in invite["body"]     # no key ever crossed the UDP leg
    alice.hangup(call)
    bob.wait_call_state("DISCONNECTED", bob_call, timeout=10.0)
