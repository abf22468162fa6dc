"""Presence, busy lamps and chat with real softphones through `pbx serve`:
a pjsua2 buddy sees Bob go busy and idle; a raw-socket ``dialog``
subscription sees the call confirmed and over (RFC 4235 bodies checked);
MESSAGE between pjsua2 phones, also to one that registers later; and
Linphone (linphonec) performing a blind transfer and sending a chat
message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.presence.agent import Agent, dialog_info, dialog_states

from .harness import DOMAIN, Pbx
from .linphone import Linphone, available as linphone_available
from .phone import PhoneFactory
from .test_transfer import DIALPLAN, PASSWORDS, registered, uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def test_a_buddy_sees_bob_go_busy_and_idle(pbx: Pbx, phones: PhoneFactory) -> None:
    carol = registered(phones, pbx, "2003", outbound_proxy=True)
    bob = registered(phones, pbx, "2002", auto_answer=200)
    carol.subscribe(f"sip:2002@{DOMAIN}")
    carol.wait_for("buddy_state", 10.0, status="online", activity="none")
    alice = registered(phones, pbx, "2001")
    call = alice.call(uri("2002", pbx))
    alice.wait_call_state("CONFIRMED", call, timeout=10.0)
    busy = carol.wait_for("buddy_state", 10.0, activity="busy")
    assert busy["status"] == "online" and busy["text"] == "On the phone"
    alice.hangup(call)
    idle = carol.wait_for("buddy_state", 10.0, activity="none", text="Available")
    assert idle["status"] == "online"
    del bob


def test_a_raw_dialog_subscription_sees_the_call(pbx: Pbx, phones: PhoneFactory) -> None:
    watcher = Agent("2003", PASSWORDS["2003"], pbx.udp)
    try:
        registered(phones, pbx, "2002", auto_answer=200, auto_answer_delay=1.0)
        response = watcher.request("SUBSCRIBE", f"sip:2002@{DOMAIN}", headers=["Event: dialog", "Expires: 600"])
        assert response.status == 200
        assert dialog_states(dialog_info(watcher.incoming("NOTIFY"))) == []
        alice = registered(phones, pbx, "2001")
        call = alice.call(uri("2002", pbx))
        seen: list[list[str]] = []
        while not seen or seen[-1] != ["confirmed"]:
            seen.append(dialog_states(dialog_info(watcher.incoming("NOTIFY", timeout=10.0))))
        assert seen[0] == ["early"]  # ringing for a second before it answers
        alice.hangup(call)
        root = dialog_info(watcher.incoming("NOTIFY", timeout=10.0))
        assert dialog_states(root) == [] and int(root.get("version", "0")) == len(seen) + 1
    finally:
        watcher.close()


def test_message_from_a_to_b_and_to_b_offline(pbx: Pbx, phones: PhoneFactory) -> None:
    alice = registered(phones, pbx, "2001")
    bob = registered(phones, pbx, "2002")
    alice.message(uri("2002", pbx), "lunch at noon?")
    got = bob.wait_for("im", 10.0)
    assert got["body"] == "lunch at noon?" and "2001" in str(got["from"])
    # Carol has no phone registered yet: the PBX keeps it until she does.
    alice.message(uri("2003", pbx), "welcome aboard")
    pbx.server.wait_lines("chat_kept", timeout=10.0)
    carol = registered(phones, pbx, "2003")
    later = carol.wait_for("im", 10.0)
    assert later["body"] == "welcome aboard" and "2001" in str(later["from"])


@pytest.mark.skipif(not linphone_available(), reason="no linphonec: make deps installs linphone-cli")
def test_linphone_transfers_blind_and_chats(pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice = registered(phones, pbx, "2001", auto_answer=200)
    carol = registered(phones, pbx, "2003", auto_answer=200)
    bob = Linphone(tmp_path / "linphone")
    try:
        # Its credentials, for the 407s its MESSAGE and INVITE get.
        bob.send(f"register sip:2002@{DOMAIN} sip:{pbx.registrar()} {PASSWORDS['2002']}")
        bob.send(f"chat sip:2001@{pbx.registrar()} hello from linphone")
        im = alice.wait_for("im", 10.0)
        assert im["body"] == "hello from linphone" and "2002" in str(im["from"])
        bob.send(f"call sip:2001@{pbx.registrar()}")
        bob.wait_for("connected", 10.0)
        alice_call = int(alice.wait_call_state("CONFIRMED", timeout=10.0)["call"])
        time.sleep(0.5)
        bob.send(f"transfer sip:2003@{DOMAIN}")
        carol_call = int(carol.wait_call_state("CONFIRMED", timeout=15.0)["call"])
        alice.wait_for("media_state", 10.0, call=alice_call, status="active")
        carol.hangup(carol_call)
        alice.wait_call_state("DISCONNECTED", alice_call, timeout=10.0)
    finally:
        bob.close()
    row = pbx.cdr_for("2002", "2001")
    assert row["destination"] == "2003" and row["transfer"] == "blind 2002 -> 2003"
