"""Voicemail between real softphones (pjsua2) through `pbx serve`.

Alice (2001) calls Bob (2002), who does not answer: after Bob's ring time
the PBX answers, says Bob is not available, beeps, and records what
Alice's phone plays (a 440 Hz "voice" of four seconds). Bob's phone, which
subscribes to its message-summary, sees the lamp go on; Bob dials *97,
presses 1 and his phone records the message played back (compared with
what Alice played: voiced, as long within 10 %): heard, the lamp goes
out; 7 deletes it. The message also arrives by e-mail at a local SMTP server
(aiosmtpd), the WAV attached; the CDR says the call ended in voicemail
and how long the message was.
"""

from __future__ import annotations

import email
import socket
import time
import wave
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller

from pbx.ivr.prompts import PromptLibrary
from pbx.voicemail.session import number_prompts_of

from .harness import DOMAIN, Pbx, register_phone
from .phone import PhoneFactory, wav_rms, write_tone_wav

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002"}
TONE_SECONDS = 4.0
RING_SECONDS = 2
MARGIN = 2.0
"""Seconds after the greeting's known length before a caller speaks: the
beep, and a loaded machine's delays (the message keeps the silence, the
comparisons only count the tone; silence ends a message after 5 s)."""


class Inbox:
    """What the local SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def dialplan(tmp_path: Path, inbox: tuple[Inbox, int]) -> str:
    return f"""\
domain: {DOMAIN}
voicemail:
  directory: {tmp_path / "voicemail"}
  smtp: {{host: 127.0.0.1, port: {inbox[1]}, sender: pbx@example.com}}
  ring_seconds: {RING_SECONDS}
  email_messages: true
departments:
  ops: {{name: Operations}}
extensions:
  2001: {{name: Alice, department: ops, password: {PASSWORDS["2001"]}}}
  2002: {{name: Bob, department: ops, password: {PASSWORDS["2002"]}, email: bob@example.com}}
  2003: {{name: Carol, department: ops, password: carol-secret-2003}}
ivr_menus:
  main: {{number: "800", greeting: welcome, options: {{"2": {{extension: "2002"}}}}, timeout: 10}}
"""


def greeting_seconds(mailbox: str) -> float:
    """How long the shipped greeting for ``mailbox`` lasts (the name aside)."""
    library = PromptLibrary()
    names = ["vm_person_at_extension", *number_prompts_of(mailbox), "vm_is_not_available"]
    return sum(library.load("en", name).seconds for name in names) + 0.6


def tone_seconds(path: Path, frequency: float = 440.0) -> float:
    """Seconds of ``path`` (mono 16-bit WAV) in which a tone at
    ``frequency`` dominates (FFT of 50 ms frames): the message, told apart
    from the spoken prompts around it."""
    with wave.open(str(path), "rb") as source:
        rate = source.getframerate()
        samples = np.frombuffer(source.readframes(source.getnframes()), "<i2").astype(float)
    size = rate // 20
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1)) ** 2
    bins = np.fft.rfftfreq(size, 1.0 / rate)
    near = np.abs(bins - frequency) <= 30.0
    share = spectrum[:, near].sum(axis=1) / np.maximum(spectrum.sum(axis=1), 1e-9)
    loud = np.sqrt(np.mean(frames ** 2, axis=1)) > 500.0
    return float(np.count_nonzero((share > 0.6) & loud)) * 0.05


def waiting(event: dict[str, Any], value: str) -> bool:
    return event.get("event") == "mwi" and f"Messages-Waiting: {value}" in str(event.get("message", ""))


def test_unanswered_call_leaves_a_message_that_lights_the_lamp_and_plays_back(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    alice = register_phone(phones, pbx, "2001", PASSWORDS["2001"])
    bob = register_phone(phones, pbx, "2002", PASSWORDS["2002"], outbound_proxy=True, mwi=True)
    bob.wait_for(lambda e: waiting(e, "no"), 10.0)  # the subscription's first NOTIFY: no messages

    voice = write_tone_wav(tmp_path / "voice.wav", frequency=440.0, seconds=TONE_SECONDS, amplitude=0.4)
    call = alice.call(f"sip:2002@{pbx.registrar()}")
    bob.wait_for("incoming_call", 10.0)  # Bob's phone rings and nobody answers
    alice.wait_for("media_state", 10.0 + RING_SECONDS, call=call, status="active")
    time.sleep(greeting_seconds("2002") + MARGIN)  # the greeting and the beep
    alice.play(voice, call)
    alice.wait_for("play_done", 15.0, call=call)
    time.sleep(0.5)
    alice.hangup(call)

    bob.wait_for(lambda e: waiting(e, "yes"), 10.0)
    row = pbx.cdr_for("2001", "2002")
    assert row["reason"] == "voicemail", row
    assert row["disposition"] == "NO_ANSWER", row
    assert "message" in row["ivr_path"] and row["ivr_path"].startswith("voicemail[2002 no_answer"), row

    # The e-mail, with the message attached.
    deadline = time.monotonic() + 10.0
    mailbox, _ = inbox
    while not mailbox.messages and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mailbox.messages, "no e-mail arrived"
    mail = mailbox.messages[0]
    assert mail["To"] == "bob@example.com" and "Alice" in mail["Subject"], mail["Subject"]
    attachments = [part for part in mail.walk() if part.get_content_type() == "audio/wav"]
    assert len(attachments) == 1
    attached = tmp_path / "attached.wav"
    attached.write_bytes(attachments[0].get_payload(decode=True))  # type: ignore[arg-type]
    assert tone_seconds(attached) == pytest.approx(TONE_SECONDS, rel=0.1)

    # Bob listens: *97, 1 (the message, then its menu), then 7 deletes it.
    listen = bob.call(f"sip:*97@{pbx.registrar()}")
    bob.wait_for("media_state", 10.0, call=listen, status="active")
    time.sleep(1.0)
    played = tmp_path / "played.wav"
    bob.send_dtmf("1", listen)
    bob.record(played, listen)
    time.sleep(1.5 + MARGIN + TONE_SECONDS + 2.0)  # "New message.", the silence before the tone, the tone
    bob.stop_record(listen)
    assert wav_rms(played) > 500.0  # voiced
    assert tone_seconds(played) == pytest.approx(TONE_SECONDS, rel=0.1)

    # Heard to its end: saved, the lamp went out (one old message left), as
    # the message ended (the NOTIFY came while the phone recorded).
    heard = [e for e in bob.history if waiting(e, "no") and "Voice-Message: 0/1" in e["message"]]
    assert heard or bob.wait_for(lambda e: waiting(e, "no") and "Voice-Message: 0/1" in e["message"], 10.0)
    bob.send_dtmf("7", listen)  # delete: nothing is left
    bob.wait_for(lambda e: waiting(e, "no") and "Voice-Message: 0/0" in e["message"], 10.0)
    bob.hangup(listen)
    assert not any(path.suffix == ".wav" for path in (tmp_path / "voicemail" / "2002").iterdir())


def test_busy_and_unreachable_calls_go_to_the_mailbox_and_pins_open_it_from_any_phone(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice = register_phone(phones, pbx, "2001", PASSWORDS["2001"])
    bob = register_phone(phones, pbx, "2002", PASSWORDS["2002"])  # no subscription: the lamp comes unsolicited

    dnd = bob.call(f"sip:*78@{pbx.registrar()}")  # do not disturb: Bob is busy to callers
    bob.wait_call_state("DISCONNECTED", dnd, timeout=10.0)
    voice = write_tone_wav(tmp_path / "voice.wav", frequency=440.0, seconds=2.0, amplitude=0.4)
    call = alice.call(f"sip:2002@{pbx.registrar()}")
    alice.wait_for("media_state", 10.0, call=call, status="active")  # answered at once: no ringing
    time.sleep(greeting_seconds("2002") + MARGIN)
    alice.play(voice, call)
    alice.wait_for("play_done", 10.0, call=call)
    alice.hangup(call)
    bob.wait_for(lambda e: waiting(e, "yes"), 10.0)
    busy = pbx.cdr_for("2001", "2002")
    assert (busy["disposition"], busy["reason"]) == ("BUSY", "voicemail"), busy
    assert busy["ivr_path"].startswith("voicemail[2002 busy, message "), busy

    # Carol (2003) has no phone registered: her mailbox answers; a caller
    # who hangs up during the greeting leaves nothing.
    call = alice.call(f"sip:2003@{pbx.registrar()}")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    time.sleep(1.0)
    alice.hangup(call)
    unreachable = pbx.cdr_for("2001", "2003")
    assert (unreachable["disposition"], unreachable["reason"]) == ("UNAVAILABLE", "voicemail_no_message")

    # Bob sets a PIN from his own phone (*97, 0 options, 2 new PIN, twice) ...
    menu = bob.call(f"sip:*97@{pbx.registrar()}")
    bob.wait_for("media_state", 10.0, call=menu, status="active")
    time.sleep(0.5)
    bob.send_dtmf("02", menu)
    time.sleep(1.0)
    bob.send_dtmf("2468#", menu)
    time.sleep(1.0)
    bob.send_dtmf("2468#", menu)
    time.sleep(1.5)
    bob.hangup(menu)
    assert pbx.cdr_for("2002", "*97")["ivr_path"] == "voicemail[2002|options|pin_changed]"

    # ... and Alice opens Bob's mailbox with it: a wrong PIN first.
    login = alice.call(f"sip:*982002@{pbx.registrar()}")
    alice.wait_for("media_state", 10.0, call=login, status="active")
    time.sleep(0.5)
    alice.send_dtmf("1111#", login)
    pbx.server.wait_lines('"voicemail_pin_refused"')
    alice.send_dtmf("2468#", login)
    pbx.server.wait_lines('"voicemail_pin_accepted"')
    time.sleep(0.5)
    alice.hangup(login)
    row = pbx.cdr_for("2001", "*982002")
    assert row["ivr_path"] == "voicemail[2002|pin_wrong|pin_ok]", row
    assert "2468" not in row["ivr_path"] and "1111" not in row["ivr_path"]


def test_the_owners_greeting_is_played_and_a_phone_registering_later_sees_its_lamp(
        pbx: Pbx, phones: PhoneFactory, tmp_path: Path) -> None:
    alice = register_phone(phones, pbx, "2001", PASSWORDS["2001"])
    bob = register_phone(phones, pbx, "2002", PASSWORDS["2002"])

    # Bob records his greeting: *97, 0 options, 1 greeting, after the beep a 660 Hz "voice", then #.
    greeting = write_tone_wav(tmp_path / "greeting.wav", frequency=660.0, seconds=2.0, amplitude=0.4)
    menu = bob.call(f"sip:*97@{pbx.registrar()}")
    bob.wait_for("media_state", 10.0, call=menu, status="active")
    time.sleep(0.5)
    bob.send_dtmf("01", menu)
    time.sleep(PromptLibrary().load("en", "vm_record_greeting").seconds + 1.5)
    bob.play(greeting, menu)
    bob.wait_for("play_done", 10.0, call=menu)
    bob.send_dtmf("#", menu)
    time.sleep(1.5)
    bob.hangup(menu)
    assert pbx.cdr_for("2002", "*97")["ivr_path"] == "voicemail[2002|options|greeting]"

    # A caller who finds Bob busy hears it in place of the shipped words.
    dnd = bob.call(f"sip:*78@{pbx.registrar()}")
    bob.wait_call_state("DISCONNECTED", dnd, timeout=10.0)
    call = alice.call(f"sip:2002@{pbx.registrar()}")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    heard = tmp_path / "heard.wav"
    alice.record(heard, call)
    time.sleep(2.5)
    alice.stop_record(call)
    alice.hangup(call)
    assert tone_seconds(heard, 660.0) == pytest.approx(2.0, abs=0.4)

    # Carol's phone is off: a message waits for her; her phone's lamp is lit when it registers.
    voice = write_tone_wav(tmp_path / "voice.wav", frequency=440.0, seconds=2.0, amplitude=0.4)
    call = alice.call(f"sip:2003@{pbx.registrar()}")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    time.sleep(greeting_seconds("2003") + MARGIN)
    alice.play(voice, call)
    alice.wait_for("play_done", 10.0, call=call)
    alice.hangup(call)
    assert pbx.cdr_for("2001", "2003")["reason"] == "voicemail"
    carol = register_phone(phones, pbx, "2003", "carol-secret-2003")
    carol.wait_for(lambda e: waiting(e, "yes") and "Voice-Message: 1/0" in e["message"], 10.0)


def test_a_caller_the_auto_attendant_put_through_reaches_the_mailbox(pbx: Pbx, phones: PhoneFactory,
                                                                     tmp_path: Path) -> None:
    alice = register_phone(phones, pbx, "2001", PASSWORDS["2001"])
    bob = register_phone(phones, pbx, "2002", PASSWORDS["2002"], outbound_proxy=True, mwi=True)
    bob.wait_for(lambda e: waiting(e, "no"), 10.0)
    call = alice.call(f"sip:800@{pbx.registrar()}")
    alice.wait_for("media_state", 10.0, call=call, status="active")
    time.sleep(0.5)
    alice.send_dtmf("2", call)
    bob.wait_for("incoming_call", 10.0)  # rings, nobody answers: after the ring time, the mailbox
    time.sleep(RING_SECONDS + greeting_seconds("2002") + MARGIN)
    alice.play(write_tone_wav(tmp_path / "voice.wav", frequency=440.0, seconds=2.0, amplitude=0.4), call)
    alice.wait_for("play_done", 10.0, call=call)
    alice.hangup(call)
    bob.wait_for(lambda e: waiting(e, "yes"), 10.0)
    row = pbx.cdr_for("2001", "800")
    assert row["reason"] == "voicemail", row
    assert row["ivr_path"].startswith("main[2] voicemail[2002 no_answer, message "), row

    # Bob listens and calls Alice back from the message (5): her phone rings.
    listen = bob.call(f"sip:*97@{pbx.registrar()}")
    bob.wait_for("media_state", 10.0, call=listen, status="active")
    time.sleep(0.5)
    bob.send_dtmf("1", listen)
    time.sleep(1.0)
    bob.send_dtmf("5", listen)
    ringing = int(alice.wait_for("incoming_call", 10.0)["call"])
    alice.answer(200, ringing)
    alice.wait_for("media_state", 10.0, call=ringing, status="active")
    bob.hangup(listen)
    row = pbx.cdr_for("2002", "*97")
    assert row["ivr_path"] == "voicemail[2002|listen|call_back]" and row["destination"] == "2001", row
