from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.media.codecs import Codec
from pbx.media.ports import PortAllocator, PortsExhausted
from pbx.media.sdp import (
    Direction,
    LocalMedia,
    SdpError,
    SdpSession,
    accept_answer,
    parse_sdp,
)

LOCAL = LocalMedia(address="192.0.2.1", port=20000)

# As a pjsua2 / Linphone phone offers: PCMU, PCMA, a dynamic telephone-event.
PHONE_OFFER = """v=0\r
o=- 3912345678 3912345678 IN IP4 10.0.0.5\r
s=pjmedia\r
b=AS:84\r
t=0 0\r
a=X-nat:0\r
m=audio 4000 RTP/AVP 8 0 96\r
c=IN IP4 10.0.0.5\r
b=TIAS:64000\r
a=rtcp:4001 IN IP4 10.0.0.5\r
a=sendrecv\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:96 telephone-event/8000\r
a=fmtp:96 0-16\r
a=ptime:20\r
"""


def session() -> SdpSession:
    return SdpSession(address="192.0.2.1", session_id=42)


def test_answer_follows_the_offerers_codec_order_and_event_type() -> None:
    answer, agreed = session().answer(PHONE_OFFER, LOCAL)
    assert agreed.codec is Codec.PCMA and agreed.payload_type == 8 and agreed.telephone_event == 96
    assert (agreed.remote_address, agreed.remote_port, agreed.remote_rtcp_port) == ("10.0.0.5", 4000, 4001)
    assert agreed.direction is Direction.SENDRECV and agreed.remote_ptime == 20
    text = answer.serialise()
    assert "m=audio 20000 RTP/AVP 8 96\r\n" in text
    assert "a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n" in text
    assert "c=IN IP4 192.0.2.1\r\n" in text and "a=sendrecv" in text
    assert parse_sdp(text).media[0].formats == ("8", "96")     # what we write, we read


@pytest.mark.parametrize(("offered", "answered", "we_send", "we_receive"), [
    ("sendrecv", "sendrecv", True, True),
    ("sendonly", "recvonly", False, True),     # the phone holds us: it sends music, we listen
    ("recvonly", "sendonly", True, False),
    ("inactive", "inactive", False, False),
])
def test_directions_mirror(offered: str, answered: str, we_send: bool, we_receive: bool) -> None:
    answer, agreed = session().answer(PHONE_OFFER.replace("a=sendrecv", f"a={offered}"), LOCAL)
    assert f"a={answered}\r\n" in answer.serialise()
    assert (agreed.direction.sends, agreed.direction.receives) == (we_send, we_receive)


def test_session_level_connection_and_direction_and_old_style_hold() -> None:
    offer = ("v=0\r\no=alice 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=sendonly\r\n"
             "m=audio 5004 RTP/AVP 0\r\n")
    answer, agreed = session().answer(offer, LOCAL)
    assert agreed.remote_address == "0.0.0.0" and agreed.remote_rtcp_port == 5005
    assert agreed.direction is Direction.RECVONLY and agreed.telephone_event is None
    assert "m=audio 20000 RTP/AVP 0\r\n" in answer.serialise()
    # c=0.0.0.0 alone (RFC 2543 hold) means: do not send to me.
    _, agreed = session().answer(offer.replace("a=sendonly\r\n", ""), LOCAL)
    assert agreed.direction is Direction.RECVONLY


def test_unsupported_streams_are_rejected_with_port_zero() -> None:
    offer = PHONE_OFFER + ("m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                           "m=audio 4004 RTP/AVP 0\r\n")
    offer = offer.replace("m=audio 4000 RTP/AVP 8 0 96", "m=image 4006 udptl t38\r\nm=audio 4000 RTP/AVP 8 0 96")
    answer, agreed = session().answer(offer, LOCAL)
    lines = [m for m in answer.serialise().split("\r\n") if m.startswith("m=")]
    assert lines == ["m=image 0 udptl t38", "m=audio 20000 RTP/AVP 8 96", "m=video 0 RTP/AVP 96",
                     "m=audio 0 RTP/AVP 0"]
    assert agreed.remote_port == 4000


def test_dynamic_pcmu_is_understood() -> None:
    offer = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 97\r\na=rtpmap:97 PCMU/8000\r\n"
    _, agreed = session().answer(offer, LOCAL)
    assert agreed.codec is Codec.PCMU and agreed.payload_type == 97


@pytest.mark.parametrize(("offer", "reason"), [
    (PHONE_OFFER.replace("m=audio 4000 RTP/AVP 8 0 96", "m=audio 4000 RTP/AVP 18 9"), "no common codec"),
    (PHONE_OFFER.replace("RTP/AVP", "RTP/SAVP"), "RTP/SAVP offered, but SRTP is not enabled for this call"),
    (PHONE_OFFER.replace("RTP/AVP", "UDP/TLS/RTP/SAVP"), "unsupported media profile UDP/TLS/RTP/SAVP"),
    (PHONE_OFFER.replace("m=audio", "m=video"), "no audio stream offered"),
    (PHONE_OFFER.replace("c=IN IP4 10.0.0.5\r\n", ""), "no c= line"),
    ("", "must start with v=0"),
    ("v=0\r\ns=-\r\n", "without o= line"),
    ("v=0\r\no=- x 1 IN IP4 h\r\n", "bad o= line"),
    (PHONE_OFFER.replace("m=audio 4000", "m=audio 99999"), "bad m= line"),
    (PHONE_OFFER.replace("c=IN IP4 10.0.0.5", "c=IN IP4 ../../x"), "bad connection address"),
    (PHONE_OFFER + "garbage\r\n", "not type=value"),
    (PHONE_OFFER + "a=x:" + "y" * 20000, "too large"),
])
def test_bad_offers_give_a_reason_for_488(offer: str, reason: str) -> None:
    with pytest.raises(SdpError, match=reason) as caught:
        session().answer(offer, LOCAL)
    assert caught.value.status == 488


def test_offer_for_an_invite_without_sdp_and_the_phones_answer() -> None:
    ours = session()
    offer = ours.offer(LOCAL)
    text = offer.serialise()
    assert "m=audio 20000 RTP/AVP 0 8 101\r\n" in text and "a=fmtp:101 0-16" in text and "a=ptime:20" in text
    phone_answer = parse_sdp(PHONE_OFFER.replace("RTP/AVP 8 0 96", "RTP/AVP 0 101")
                             .replace("a=rtpmap:96", "a=rtpmap:101").replace("a=fmtp:96", "a=fmtp:101"))
    agreed = accept_answer(offer, phone_answer, LOCAL)
    assert agreed.codec is Codec.PCMU and agreed.telephone_event == 101 and agreed.direction is Direction.SENDRECV
    # An answer that picks what we never offered, or rejects the audio, is refused.
    with pytest.raises(SdpError, match="no codec we offered"):
        accept_answer(offer, parse_sdp(PHONE_OFFER.replace("RTP/AVP 8 0 96", "RTP/AVP 97")
                                       + "a=rtpmap:97 PCMU/8000\r\n"), LOCAL)
    with pytest.raises(SdpError, match="rejected"):
        accept_answer(offer, parse_sdp(PHONE_OFFER.replace("m=audio 4000", "m=audio 0")), LOCAL)


def test_hold_offer_and_the_answer_narrow_our_direction() -> None:
    ours = session()
    offer = ours.offer(LocalMedia(address="192.0.2.1", port=20000, direction=Direction.SENDONLY))
    assert "a=sendonly" in offer.serialise()
    agreed = accept_answer(offer, parse_sdp(PHONE_OFFER.replace("a=sendrecv", "a=recvonly")), LOCAL)
    assert agreed.direction is Direction.SENDONLY


def test_origin_version_rises_only_when_the_description_changes() -> None:
    ours = session()
    first = ours.offer(LOCAL)
    again = ours.offer(LOCAL)
    assert first.origin.version == again.origin.version == 0
    held = ours.offer(LocalMedia(address="192.0.2.1", port=20000, direction=Direction.SENDONLY))
    assert held.origin.version == 1 and held.origin.session_id == 42
    assert ours.answer(PHONE_OFFER, LOCAL)[0].origin.version == 2


def test_port_pairs_round_robin_release_and_exhaustion() -> None:
    ports = PortAllocator(10001, 10008)      # pairs 10002, 10004, 10006 (10008 has no odd partner)
    assert ports.capacity == 3
    assert [ports.allocate() for _ in range(3)] == [(10002, 10003), (10004, 10005), (10006, 10007)]
    with pytest.raises(PortsExhausted, match="all 3 RTP port pairs"):
        ports.allocate()
    ports.release(10004)
    ports.release(10004)
    assert ports.in_use == 2
    assert ports.allocate() == (10004, 10005)
    ports.release(10002)
    ports.release(10006)
    # Round robin: after 10004 comes 10006, not the lower 10002 freed first.
    assert ports.allocate() == (10006, 10007)
    ports.unusable(10006)
    assert ports.allocate() == (10002, 10003)
    with pytest.raises(ValueError):
        PortAllocator(10000, 10000)


@given(st.text(max_size=400))
def test_random_text_parses_or_raises_sdp_error(text: str) -> None:
    try:
        session().answer("v=0\r\n" + text, LOCAL)
    except SdpError:
        pass


@given(st.lists(st.sampled_from([
    "o=- 1 1 IN IP4 10.0.0.1", "c=IN IP4 10.0.0.1", "c=IN IP6 ::1", "c=IN IP4 0.0.0.0", "m=audio 4000 RTP/AVP 0 8 101",
    "m=audio 0 RTP/AVP 0", "m=video 5000 RTP/AVP 31", "a=rtpmap:101 telephone-event/8000", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:97", "a=sendonly", "a=inactive", "a=ptime:x", "a=rtcp:", "a=rtcp:70000", "m=audio 1 RTP/AVP",
    "m=audio 2 RTP/AVP 97", "a=rtpmap:97 PCMA/16000", "t=0 0", "s=", "b=AS:64",
]), max_size=14))
def test_shuffled_sdp_lines_parse_or_raise_sdp_error(lines: list[str]) -> None:
    try:
        answer, agreed = session().answer("v=0\r\n" + "\r\n".join(lines), LOCAL)
    except SdpError:
        return
    assert agreed.remote_port > 0 and 0 < agreed.remote_rtcp_port < 65536
    assert parse_sdp(answer.serialise()).media[0].port in (0, LOCAL.port)
