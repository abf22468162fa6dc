"""Two pure media streams over an in-memory wire with a hand-held clock."""

from __future__ import annotations

import random

import numpy as np

from pbx.ivr.prompts import PromptLibrary
from pbx.media.codecs import Codec, rms
from pbx.media.events import Digit, DigitSource, PlaybackFinished, RemoteLatched
from pbx.media.inband import dtmf_tone
from pbx.media.player import Prompt, Silence
from pbx.media.rtcp import ReceiverReport, SenderReport, parse_rtcp
from pbx.media.rtp import parse_rtp
from pbx.media.sdp import LocalMedia, SdpSession, accept_answer, parse_sdp
from pbx.media.session import MediaStream, StreamSettings
from pbx.media.audio_file import Audio

PBX = ("192.0.2.1", 20000)
PHONE = ("10.0.0.5", 4000)          # what the phone's SDP says
PHONE_NAT = ("198.51.100.9", 61000)  # where its packets really come from


def pair(*, phone_settings: StreamSettings = StreamSettings(), with_events: bool = True) -> tuple[MediaStream, MediaStream]:
    """The PBX's stream and a phone's, negotiated through real SDP."""
    rng = random.Random(1)
    pbx = MediaStream(rng=rng, now=0.0, cname="pbx")
    phone = MediaStream(rng=rng, now=0.0, cname="phone", settings=phone_settings)
    local = LocalMedia(address=PBX[0], port=PBX[1])
    phone_local = LocalMedia(address=PHONE[0], port=PHONE[1],
                             codecs=(Codec.PCMA,), telephone_event=96 if with_events else 101)
    phone_sdp = SdpSession(address=PHONE[0], session_id=7)
    offer = phone_sdp.offer(phone_local)
    if not with_events:
        offer = parse_sdp(offer.serialise().replace(" 101\r\n", "\r\n").replace("a=rtpmap:101 telephone-event/8000\r\n", ""))
    answer, agreed = SdpSession(address=PBX[0], session_id=9).answer(offer.serialise(), local)
    pbx.set_negotiated(agreed)
    phone.set_negotiated(accept_answer(offer, parse_sdp(answer.serialise()), phone_local))
    return pbx, phone


def run(pbx: MediaStream, phone: MediaStream, ticks: int, start: float = 0.0) -> list[float]:
    """Tick both for ``ticks`` × 20 ms; the phone's packets arrive from its
    NAT address. Returns the times the phone received PBX packets."""
    arrivals = []
    for n in range(ticks):
        now = start + n * 0.02
        out = pbx.on_tick(now)
        if out is not None:
            assert pbx.destination is not None
            phone.on_rtp(out, PBX, now)
            arrivals.append(now)
        back = phone.on_tick(now)
        if back is not None:
            pbx.on_rtp(back, PHONE_NAT, now)
    return arrivals


def test_a_prompt_reaches_the_phone_in_order_then_playback_ends() -> None:
    pbx, phone = pair(phone_settings=StreamSettings(record_seconds=20))
    audio = PromptLibrary().load("en", "goodbye")
    playback = pbx.play([Prompt(audio), Silence(0.2)], 0.0)
    frames = int(audio.seconds * 50 + 0.999) + 10
    run(pbx, phone, frames + 20)
    assert PlaybackFinished(playback_id=playback, completed=True, time=(frames - 1) * 0.02 + 0.02) in pbx.drain_events()
    # The phone decoded what the PBX played (PCMA was agreed), delayed by its jitter buffer.
    heard = np.frombuffer(bytes(phone.recorded), dtype=np.int16)
    assert rms(bytes(phone.recorded)) > 500
    sent = np.frombuffer(Codec.PCMA.decode(audio.payload(Codec.PCMA)), dtype=np.int16)
    assert np.array_equal(heard[:len(sent)], sent)


def test_a_stalled_clock_delays_a_prompt_without_losing_any_of_it() -> None:
    pbx, _ = pair()
    audio = PromptLibrary().load("en", "goodbye")
    playback = pbx.play([Prompt(audio)], 0.0)
    encoded = audio.payload(Codec.PCMA)
    frames = -(-len(encoded) // 160)
    payloads = []
    for n in range(frames):
        # Twice the loop was blocked: for 3 periods at frame 10, 5 at frame 20.
        ticks = 3 if n == 10 else 5 if n == 20 else 1
        packet = pbx.on_tick(n * 0.02, ticks)
        assert packet is not None
        payloads.append(parse_rtp(packet).payload)
    assert b"".join(payloads)[:len(encoded)] == encoded                   # every frame, in order
    assert pbx.on_tick(frames * 0.02) is not None                         # silence after the last
    (finished,) = [e for e in pbx.drain_events() if isinstance(e, PlaybackFinished)]
    assert (finished.playback_id, finished.completed) == (playback, True)
    assert abs(finished.held_back - 6 * 0.02) < 1e-9                     # 2 + 4 skipped periods
    again = pbx.play([Prompt(audio)], 1.0)
    pbx.stop_playback(1.0)
    assert pbx.drain_events() == [PlaybackFinished(playback_id=again, completed=False, time=1.0)]


def test_media_follows_the_phone_behind_nat() -> None:
    pbx, phone = pair()
    assert pbx.destination == PHONE
    run(pbx, phone, 3)
    assert pbx.destination == PHONE_NAT
    assert RemoteLatched(address=PHONE_NAT, previous=None, time=0.0) in pbx.drain_events()
    assert pbx.rtcp_destination == (PHONE_NAT[0], PHONE_NAT[1] + 1)


def test_packets_carry_consecutive_sequence_and_timestamps() -> None:
    pbx, _ = pair()
    packets = [parse_rtp(p) for n in range(60) if (p := pbx.on_tick(n * 0.02)) is not None]
    assert len(packets) == 60 and packets[0].marker and not any(p.marker for p in packets[1:])
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in zip(packets, packets[1:]))
    assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in zip(packets, packets[1:]))
    assert {p.payload_type for p in packets} == {8}
    skipped = parse_rtp(pbx.on_tick(1.3, ticks=3) or b"")
    assert (skipped.timestamp - packets[-1].timestamp) % 2**32 == 480


def test_rfc4733_digits_sent_by_one_side_come_out_once_at_the_other() -> None:
    pbx, phone = pair()
    for digit in "1#0":
        assert phone.send_digit(digit)
    run(pbx, phone, 40)
    digits = [e for e in pbx.drain_events() if isinstance(e, Digit)]
    assert [(d.digit, d.source) for d in digits] == [("1", DigitSource.RFC4733), ("#", DigitSource.RFC4733),
                                                     ("0", DigitSource.RFC4733)]


def tone_audio(keys: str) -> Audio:
    parts = [np.zeros(800)]
    for key in keys:
        parts += [dtmf_tone(key, 0.1), np.zeros(800)]
    return Audio(linear=(np.concatenate(parts) * 32767).astype(np.int16).tobytes())


def test_inband_digits_when_the_phone_has_no_telephone_event() -> None:
    pbx, phone = pair(with_events=False)
    assert not phone.send_digit("5")
    phone.play([Prompt(tone_audio("58*"))], 0.0)
    run(pbx, phone, 60)
    digits = [(e.digit, e.source) for e in pbx.drain_events() if isinstance(e, Digit)]
    assert digits == [("5", DigitSource.INBAND), ("8", DigitSource.INBAND), ("*", DigitSource.INBAND)]


def test_a_phone_sending_rfc4733_is_not_also_heard_in_band() -> None:
    pbx, phone = pair()
    phone.send_digit("7")
    run(pbx, phone, 10)
    phone.play([Prompt(tone_audio("7"))], 0.2)     # the same key also as tones in the audio
    run(pbx, phone, 40, start=0.2)
    assert [e.digit for e in pbx.drain_events() if isinstance(e, Digit)] == ["7"]


def test_info_digits_join_the_same_event_stream() -> None:
    pbx, _ = pair()
    digit = pbx.on_info("application/dtmf-relay", "Signal=9\r\nDuration=100\r\n", 1.0)
    assert pbx.drain_events() == [digit] and digit.source is DigitSource.INFO


def test_stopping_a_playback_reports_it_incomplete() -> None:
    pbx, _ = pair()
    first = pbx.play([Silence(10)], 0.0)
    second = pbx.play([Silence(0.04)], 0.5)
    assert pbx.drain_events() == [PlaybackFinished(playback_id=first, completed=False, time=0.5)]
    for n in range(3):
        pbx.on_tick(0.52 + n * 0.02)
    assert pbx.drain_events() == [PlaybackFinished(playback_id=second, completed=True, time=0.56)]


def test_rtcp_reports_at_the_interval_and_from_the_peer_only() -> None:
    pbx, phone = pair()
    run(pbx, phone, 100)
    assert pbx.rtcp_report(0.5, 1e9) is None                  # the first is due after 1.03-3.08 s
    report = pbx.rtcp_report(3.1, 1_700_000_000.0)
    assert report is not None
    sr, sdes = parse_rtcp(report)[:2]
    assert isinstance(sr, SenderReport) and sr.packet_count == 100 and sr.reports[0].ssrc == phone.ssrc
    assert pbx.rtcp_report(3.2, 1e9) is None                  # the next one waits ~2-6 s
    phone.on_rtcp(report, (PBX[0], PBX[1] + 1), 3.1)
    phone.on_rtcp(report, ("203.0.113.5", 9), 3.1)             # from a stranger: ignored
    phone.on_rtcp(b"junk", (PBX[0], PBX[1] + 1), 3.1)
    assert (phone.rtcp_received, phone.rtcp_dropped) == (1, 2)
    run(pbx, phone, 1, start=3.2)
    later = phone.rtcp_report(3.6, 1_700_000_000.5)
    assert later is not None
    sent = parse_rtcp(later)[0]
    assert isinstance(sent, SenderReport) and sent.reports[0].last_sr == sr.ntp_middle
    bye = pbx.rtcp_report(4.0, 1e9, bye=True)
    assert bye is not None and isinstance(parse_rtcp(bye)[0], (SenderReport, ReceiverReport))
