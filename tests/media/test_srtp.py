"""SRTP keyed by SDES (RFC 4568) on the PBX's own media: a=crypto lines,
offer/answer with each media_encryption setting, two streams over an
in-memory wire, and real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import random

import pytest

from pbx.ivr.prompts import PromptLibrary
from pbx.media.codecs import Codec, rms
from pbx.media.endpoint import MediaEngine
from pbx.media.events import Digit, DigitSource
from pbx.media.player import Prompt
from pbx.media.ports import PortAllocator
from pbx.media.rtp import parse_rtp
from pbx.media.sdes import MATERIAL_BYTES, PREFERENCE, MediaEncryption, Suite, parse_crypto
from pbx.media.sdp import LocalMedia, SdpError, SdpSession, accept_answer, parse_sdp
from pbx.media.session import MediaStream, StreamSettings

KEY30 = base64.b64encode(bytes(range(30))).decode()
KEY28 = base64.b64encode(bytes(range(28))).decode()
PBX = ("192.0.2.1", 20000)
PHONE = ("192.0.2.5", 4000)


@pytest.mark.parametrize(("value", "suite"), [
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}", Suite.AES_CM_128_HMAC_SHA1_80),
    (f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}|2^31", Suite.AES_CM_128_HMAC_SHA1_32),
    (f"3 AEAD_AES_128_GCM inline:{KEY28}", Suite.AEAD_AES_128_GCM),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4", None),         # MKI
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY28}", None),                  # short key
    (f"1 F8_128_HMAC_SHA1_80 inline:{KEY30}", None),                      # suite we do not take
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTP", None),  # weakened
    ("1 AES_CM_128_HMAC_SHA1_80 inline:not base64!", None),
    ("x AES_CM_128_HMAC_SHA1_80", None),
])
def test_crypto_lines_are_taken_or_skipped(value: str, suite: Suite | None) -> None:
    crypto = parse_crypto(value)
    assert (crypto.suite if crypto is not None else None) == suite
    if crypto is not None:
        assert KEY30[:8] not in repr(crypto) and KEY28[:8] not in repr(crypto)  # keys never in a repr


def offer_of(proto: str, crypto: bool) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.5", "s=-", "c=IN IP4 192.0.2.5", "t=0 0",
             f"m=audio 4000 {proto} 0 101", "a=rtpmap:101 telephone-event/8000"]
    if crypto:
        lines += [f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",
                  f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}"]
    return "\r\n".join(lines) + "\r\n"


def local(encryption: MediaEncryption) -> LocalMedia:
    return LocalMedia(address=PBX[0], port=PBX[1], encryption=encryption,
                      key_material=bytes(range(100, 100 + MATERIAL_BYTES * len(PREFERENCE))))


@pytest.mark.parametrize(("encryption", "proto", "crypto", "expected"), [
    ("none", "RTP/AVP", False, "plain"),
    ("none", "RTP/AVP", True, "plain"),              # best-effort offer, answered plain
    ("none", "RTP/SAVP", True, "488: RTP/SAVP offered, but SRTP is not enabled for this call"),
    ("optional", "RTP/AVP", False, "plain"),
    ("optional", "RTP/AVP", True, "srtp RTP/AVP"),   # best-effort SRTP (Linphone, PJSIP)
    ("optional", "RTP/SAVP", True, "srtp RTP/SAVP"),
    ("optional", "RTP/SAVP", False, "488: RTP/SAVP offered without a usable a=crypto (SDES) line"),
    ("required", "RTP/AVP", False, "488: SRTP is required: the offer has no usable a=crypto line"),
    ("required", "RTP/AVP", True, "srtp RTP/AVP"),
    ("required", "RTP/SAVP", True, "srtp RTP/SAVP"),
])
def test_answers_by_media_encryption(encryption: MediaEncryption, proto: str, crypto: bool, expected: str) -> None:
    try:
        answer, agreed = SdpSession(address=PBX[0], session_id=1).answer(offer_of(proto, crypto), local(encryption))
    except SdpError as err:
        assert f"{err.status}: {err}" == expected
        return
    text = answer.serialise()
    if expected == "plain":
        assert agreed.srtp is None and "a=crypto" not in text
    else:
        assert agreed.srtp is not None and agreed.srtp.suite is Suite.AES_CM_128_HMAC_SHA1_80
        assert f"m=audio {PBX[1]} {expected.split()[1]} 0 101" in text
        [line] = [l for l in text.split("\r\n") if l.startswith("a=crypto:")]
        ours = parse_crypto(line[len("a=crypto:"):])
        assert ours is not None and ours.tag == 1 and ours.material == agreed.srtp.send
        assert agreed.srtp.receive == bytes(range(30)) and agreed.srtp.send != agreed.srtp.receive


@pytest.mark.parametrize(("encryption", "proto"), [("none", "RTP/AVP"), ("optional", "RTP/AVP"),
                                                   ("required", "RTP/SAVP")])
def test_offers_by_media_encryption(encryption: MediaEncryption, proto: str) -> None:
    text = SdpSession(address=PBX[0], session_id=1).offer(local(encryption)).serialise()
    assert f"m=audio {PBX[1]} {proto} " in text
    cryptos = [parse_crypto(l[len("a=crypto:"):]) for l in text.split("\r\n") if l.startswith("a=crypto:")]
    if encryption == "none":
        assert cryptos == []
    else:
        assert [c.suite for c in cryptos if c is not None] == list(PREFERENCE)
        assert len({c.material for c in cryptos if c is not None}) == len(PREFERENCE)  # a key per suite


def test_an_answer_must_take_a_crypto_line_we_offered() -> None:
    ours = local("required")
    offer = SdpSession(address=PBX[0], session_id=1).offer(ours)
    plain = offer.serialise().replace("RTP/SAVP", "RTP/AVP")
    plain = "\r\n".join(l for l in plain.split("\r\n") if not l.startswith("a=crypto")) + "\r\n"
    with pytest.raises(SdpError, match="no a=crypto line for our RTP/SAVP offer"):
        accept_answer(offer, parse_sdp(plain.replace("RTP/AVP", "RTP/SAVP")), ours)
    wrong_tag = offer.serialise().replace("a=crypto:1 ", "a=crypto:9 ")
    with pytest.raises(SdpError, match="matches no line of our offer"):
        accept_answer(offer, parse_sdp(wrong_tag), ours)
    optional = local("optional")
    offer = SdpSession(address=PBX[0], session_id=1).offer(optional)
    declined = "\r\n".join(l for l in offer.serialise().split("\r\n") if not l.startswith("a=crypto")) + "\r\n"
    assert accept_answer(offer, parse_sdp(declined), optional).srtp is None  # best effort: plain RTP


def srtp_pair(phone_encryption: MediaEncryption = "optional") -> tuple[MediaStream, MediaStream]:
    rng = random.Random(3)
    pbx = MediaStream(rng=rng, now=0.0, cname="pbx", settings=StreamSettings(record_seconds=2.0))
    phone = MediaStream(rng=rng, now=0.0, cname="phone", settings=StreamSettings(record_seconds=2.0))
    phone_local = LocalMedia(address=PHONE[0], port=PHONE[1], encryption=phone_encryption,
                             key_material=bytes(rng.getrandbits(8) for _ in range(MATERIAL_BYTES * 3)))
    offer = SdpSession(address=PHONE[0], session_id=7).offer(phone_local)
    answer, agreed = SdpSession(address=PBX[0], session_id=9).answer(
        offer.serialise(), LocalMedia(address=PBX[0], port=PBX[1], encryption="required",
                                      key_material=bytes(rng.getrandbits(8) for _ in range(MATERIAL_BYTES * 3))))
    pbx.set_negotiated(agreed)
    phone.set_negotiated(accept_answer(offer, parse_sdp(answer.serialise()), phone_local))
    return pbx, phone


def test_srtp_streams_hear_each_other_and_the_wire_carries_no_plain_audio() -> None:
    pbx, phone = srtp_pair()
    audio = PromptLibrary().load("en", "please_hold")
    pbx.play([Prompt(audio)], 0.0)
    wire: list[bytes] = []
    for n in range(100):
        now = n * 0.02
        out = pbx.on_tick(now)
        assert out is not None
        wire.append(out)
        phone.on_rtp(out, PBX, now)
        back = phone.on_tick(now)
        assert back is not None
        pbx.on_rtp(back, PHONE, now)
    assert rms(bytes(phone.recorded)) > 1000           # decrypted, decoded, loud
    assert pbx.srtp_rejected == phone.srtp_rejected == 0
    # On the wire: an RTP header (RFC 3711 leaves it clear) with an encrypted
    # payload and a 10-byte tag: the prompt's bytes are nowhere in it.
    first = parse_rtp(wire[0][:-10])
    assert first.payload != audio.payload(Codec.PCMU)[:160] and len(wire[0]) == 12 + 160 + 10


def test_forged_replayed_and_plain_packets_are_dropped_before_anything_reads_them() -> None:
    pbx, phone = srtp_pair()
    phone.send_digit("5", duration_ms=60)
    packets = [phone.on_tick(n * 0.02) for n in range(10)]
    genuine = [p for p in packets if p is not None]
    pbx.on_rtp(genuine[0], PHONE, 0.0)
    pbx.on_rtp(genuine[0], PHONE, 0.0)                    # replayed
    forged = bytearray(genuine[1])
    forged[20] ^= 0xFF
    pbx.on_rtp(bytes(forged), PHONE, 0.02)                # tampered
    plain = parse_rtp(genuine[2][:-10]).serialise()
    pbx.on_rtp(plain, ("203.0.113.66", 5000), 0.04)       # unencrypted, from a stranger
    assert pbx.srtp_rejected == 3
    for n, packet in enumerate(genuine[1:], start=1):
        pbx.on_rtp(packet, PHONE, n * 0.02)
    digits = [e for e in pbx.drain_events() if isinstance(e, Digit)]
    assert [(d.digit, d.source) for d in digits] == [("5", DigitSource.RFC4733)]


def test_srtcp_is_protected_and_checked() -> None:
    pbx, phone = srtp_pair()
    report = phone.rtcp_report(10.0, 1_700_000_000.0, bye=True)
    assert report is not None
    pbx.on_rtcp(report, (PHONE[0], PHONE[1] + 1), 10.0)
    assert pbx.rtcp_received == 1
    pbx.on_rtcp(report, (PHONE[0], PHONE[1] + 1), 10.0)  # replayed
    assert pbx.rtcp_received == 1 and pbx.srtp_rejected == 1


def test_digits_and_a_prompt_over_srtp_on_real_sockets() -> None:
    """What the IVR needs from media over SRTP: its prompt reaches the phone
    and the phone's RFC 4733 key presses come out once each."""
    audio = PromptLibrary().load("en", "please_hold")

    async def scenario() -> tuple[list[Digit], int, bool, str]:
        pbx = MediaEngine(bind_host="127.0.0.1", ports=PortAllocator(41500, 41599))
        phone_engine = MediaEngine(bind_host="127.0.0.1", ports=PortAllocator(41600, 41699))
        phone = await phone_engine.open_session(encryption="required",
                                                settings=StreamSettings(record_seconds=3.0))
        session = await pbx.open_session(encryption="required")
        offer = phone.offer()
        answer = session.answer(offer)
        phone.accept(answer)
        played = session.play([Prompt(audio)])
        for key in "1#":
            assert phone.send_digit(key, duration_ms=80)
        digits: list[Digit] = []
        while len(digits) < 2:
            event = await asyncio.wait_for(session.next_event(), 5)
            if isinstance(event, Digit):
                digits.append(event)
        completed = await asyncio.wait_for(played, audio.seconds + 5)
        heard = rms(bytes(phone.stream.recorded))
        await pbx.close()
        await phone_engine.close()
        return digits, heard, completed, answer

    digits, heard, completed, answer = asyncio.run(scenario())
    assert "RTP/SAVP" in answer and "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in answer
    assert [(d.digit, d.source) for d in digits] == [("1", DigitSource.RFC4733), ("#", DigitSource.RFC4733)]
    assert completed and heard > 1000


@pytest.mark.parametrize(("suite", "overhead"), [(Suite.AES_CM_128_HMAC_SHA1_80, 10),
                                                 (Suite.AES_CM_128_HMAC_SHA1_32, 4),
                                                 (Suite.AEAD_AES_128_GCM, 16)])
def test_each_suite_is_its_own_and_round_trips(suite: Suite, overhead: int) -> None:
    from pbx.media.sdes import SrtpKeys
    from pbx.media.srtp import SrtpContext

    ours, theirs = bytes(range(suite.material_length)), bytes(range(50, 50 + suite.material_length))
    sender = SrtpContext(SrtpKeys(suite, send=ours, receive=theirs))
    receiver = SrtpContext(SrtpKeys(suite, send=theirs, receive=ours))
    rtp = bytes([0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7]) + b"\xff" * 160
    protected = sender.protect(rtp)
    assert len(protected) - len(rtp) == overhead
    assert receiver.unprotect(protected) == rtp
