"""Music on hold, the pure parts: which offers hold, what the holder is
answered, how descriptions keep each dialog's o= line, and the decision
table of hold and resume."""

from __future__ import annotations

import pytest

from pbx.calls.hold import Phase, Verdict, answer_timer_headers, decide, in_dialog, inactive_answer, is_hold
from pbx.media.audio_file import Audio
from pbx.media.codecs import Codec
from pbx.media.player import Loop, Player
from pbx.media.sdp import Direction, parse_sdp
from pbx.sip.message import Request, make_request


def sdp(*, version: int = 1, session: int = 111, address: str = "10.0.0.1", direction: str | None = None,
        port: int = 4000, connection: str | None = None, extra_media: str = "") -> bytes:
    lines = ["v=0", f"o=phone {session} {version} IN IP4 {address}", "s=-", f"c=IN IP4 {connection or address}",
             "t=0 0", f"m=audio {port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"]
    if direction:
        lines.append(f"a={direction}")
    if extra_media:
        lines.append(extra_media)
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize(("body", "holds"), [
    (sdp(direction="sendonly"), True),
    (sdp(direction="inactive"), True),
    (sdp(connection="0.0.0.0"), True),
    (sdp(direction="sendrecv"), False),
    (sdp(), False),
    (sdp(direction="recvonly"), False),
    (b"not sdp", False),
    (b"", False),
])
def test_which_offers_hold(body: bytes, holds: bool) -> None:
    assert is_hold(body) is holds


def test_a_session_level_sendonly_holds() -> None:
    body = sdp().replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    assert is_hold(body)


def test_the_holder_is_answered_inactive_with_what_it_saw_and_the_next_version() -> None:
    seen = sdp(session=222, version=7, address="10.0.0.2", direction="sendrecv")
    answer = inactive_answer(sdp(session=111, version=3, direction="sendonly"), seen)
    assert answer is not None
    described = parse_sdp(answer)
    assert (described.origin.session_id, described.origin.version) == (222, 8)
    assert described.media[0].direction(described.direction) is Direction.INACTIVE
    assert described.media[0].attribute("sendrecv") is None
    assert described.media[0].port == 4000 and described.media[0].formats == ("0", "101")


def test_a_hold_offer_with_other_streams_than_seen_is_not_answered_here() -> None:
    offer = sdp(direction="sendonly", extra_media="m=video 5000 RTP/AVP 96")
    assert inactive_answer(offer, sdp()) is None
    assert inactive_answer(offer, b"garbage") is None


def test_in_dialog_keeps_the_dialogs_origin_and_raises_its_version() -> None:
    ours = sdp(session=999, version=0, address="192.0.2.9")
    moved = parse_sdp(in_dialog(ours, sdp(session=222, version=7, address="10.0.0.2")))
    assert (moved.origin.username, moved.origin.session_id, moved.origin.version) == ("phone", 222, 8)
    assert moved.origin.address == "10.0.0.2"
    assert moved.connection == "192.0.2.9"  # what it describes is ours
    assert moved.media[0].port == 4000


def test_in_dialog_leaves_a_body_that_already_continues_the_dialog() -> None:
    previous = sdp(session=222, version=7)
    later = sdp(session=222, version=9)
    assert in_dialog(later, previous) == later
    assert in_dialog(later, b"") == later
    assert in_dialog(b"junk", previous) == b"junk"
    same = sdp(session=222, version=7)
    assert parse_sdp(in_dialog(same, previous)).origin.version == 8


P, S, R = Phase.PLAYING, Phase.STARTING, Phase.SILENT


@pytest.mark.parametrize(("phase", "from_holder", "hold", "can_play", "verdict"), [
    # Not on hold: a hold offer starts the music when the PBX can play it.
    (None, True, True, True, Verdict.START),
    (None, True, True, False, Verdict.RELAY),
    (None, True, False, True, Verdict.RELAY),
    (Phase.RESUMED, True, True, True, Verdict.START),      # held again after a resume
    (Phase.RESUMED, True, False, True, Verdict.RELAY),
    # Our re-INVITE to the held party is out.
    (S, True, True, True, Verdict.REFRESH),
    (S, True, False, True, Verdict.WAIT),                  # resume before the music started: 491
    (S, False, False, True, Verdict.WAIT),
    (S, False, True, True, Verdict.WAIT),
    # Music playing.
    (P, True, True, True, Verdict.REFRESH),                # the holder refreshes its hold
    (P, True, False, True, Verdict.RESUME),
    (P, False, True, True, Verdict.LOCAL),                 # the held party holds too: the music session answers
    (P, False, False, True, Verdict.LOCAL),                # its session refresh
    # The held party refused the music.
    (R, True, False, True, Verdict.RESUME),
    (R, False, False, True, Verdict.RELAY),
])
def test_hold_and_resume_decisions(phase: Phase | None, from_holder: bool, hold: bool, can_play: bool,
                                   verdict: Verdict) -> None:
    assert decide(phase, from_holder=from_holder, hold=hold, can_play=can_play) is verdict


def reinvite(*headers: tuple[str, str]) -> Request:
    return make_request("INVITE", "sip:pbx@192.0.2.1", [
        ("via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1"), ("from", "<sip:2002@x>;tag=a"),
        ("to", "<sip:2001@x>;tag=b"), ("call-id", "c1"), ("cseq", "3 INVITE"), *headers], sdp(direction="sendonly"))


def test_a_hold_we_answer_refreshes_the_session_timer_with_the_holder_refreshing() -> None:
    request = reinvite(("supported", "timer"), ("session-expires", "1800"))
    headers, interval = answer_timer_headers(request, session_expires=900, floor=90)
    assert interval == 900
    assert ("session-expires", "900;refresher=uac") in headers and ("require", "timer") in headers


def test_a_hold_asking_us_to_refresh_gets_no_timer() -> None:
    request = reinvite(("supported", "timer"), ("session-expires", "1800;refresher=uas"))
    assert answer_timer_headers(request, session_expires=900, floor=90) == ([], None)
    assert answer_timer_headers(reinvite(), session_expires=900, floor=90) == ([], None)


def test_a_loop_plays_round_and_round_without_a_gap() -> None:
    tune = Audio(linear=bytes(range(200)) * 3)  # 300 samples: wraps inside the second frame
    player = Player([Loop(tune)], Codec.PCMU)
    encoded = tune.payload(Codec.PCMU)
    frames = b"".join(player.next_payload() or b"" for _ in range(9))
    assert frames == (encoded * 5)[:len(frames)] and len(frames) == 9 * 160
    assert not player.done
    player.stop()
    assert player.next_payload() is None


def crypto(tag: int, suite: str) -> str:
    return f"a=crypto:{tag} {suite} inline:{suite[:8]}key{tag}"


def test_an_srtp_holder_is_answered_with_one_key_under_the_tag_it_offers_now() -> None:
    # We last sent the holder an offer with two keys; its re-offer numbers
    # its one line anew: the answer takes one key, re-tagged.
    seen = sdp(direction="sendrecv", extra_media="\r\n".join(
        [crypto(1, "AES_256_CM_HMAC_SHA1_80"), crypto(2, "AES_CM_128_HMAC_SHA1_80")]))
    offer = sdp(direction="sendonly", extra_media=crypto(7, "AES_CM_128_HMAC_SHA1_80"))
    answer = inactive_answer(offer, seen)
    assert answer is not None
    lines = [line for line in answer.decode().splitlines() if line.startswith("a=crypto")]
    assert lines == ["a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:AES_CM_1key2"]
    # No suite in common: not answered here (the offer is relayed instead).
    other = sdp(direction="sendonly", extra_media=crypto(1, "AEAD_AES_128_GCM"))
    assert inactive_answer(other, seen) is None
    # Plain RTP then and now: no key appears.
    plain = inactive_answer(sdp(direction="sendonly"), sdp())
    assert plain is not None and b"a=crypto" not in plain
