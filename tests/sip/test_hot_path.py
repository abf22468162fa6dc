"""The shortcuts of the REGISTER hot path give the answers the long way gives.

Typed values parsed once and kept on the message, the URI cache, the timer J
queue of the transaction layer and the nonce issuer's memory of the last
verified nonce: each is checked here against what it replaces.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields, replace

import pytest

from pbx.sip.address import Peer
from pbx.sip.digest import NonceIssuer, NonceStatus
from pbx.sip.errors import SipError
from pbx.sip.events import RequestReceived, Send, TimedOut, TransactionKey, TransportFailed
from pbx.sip.message import (
    CSeq,
    Request,
    Response,
    Via,
    make_request,
    make_response,
    new_via,
    parse_cseq,
    parse_via,
    parsed_request,
    parsed_response,
    remember_parsed,
)
from pbx.sip.parser import parse_message
from pbx.sip.timers import T1, TIMER_J
from pbx.sip.transaction import NistState, TransactionLayer
from pbx.sip.uri import SipUri, parse_uri

PHONE = Peer("udp", "192.0.2.10", 5062)
SECRET = b"0123456789abcdef0123456789abcdef"

REGISTER = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-1;rport, SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK-0\r\n"
    b"Max-Forwards: 70\r\n"
    b"f: <sip:1001@pbx.example.com>;tag=a\r\n"
    b"t: <sip:1001@pbx.example.com>\r\n"
    b"i: reg-1\r\n"
    b"CSeq: 4 REGISTER\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def register(branch: str, *, now_index: int = 0) -> Request:
    return make_request(
        "REGISTER",
        "sip:pbx.example.com",
        [
            ("Via", f"SIP/2.0/UDP 192.0.2.10:5062;branch={branch};rport"),
            ("From", "<sip:1001@pbx.example.com>;tag=a"),
            ("To", "<sip:1001@pbx.example.com>"),
            ("Call-ID", f"reg-{now_index}"),
            ("CSeq", f"{now_index + 1} REGISTER"),
        ],
    )


def test_parsed_request_keeps_the_via_and_cseq_it_validated() -> None:
    message = parse_message(REGISTER)
    assert isinstance(message, Request)
    assert message.top_via == parse_via("SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-1;rport")
    assert message.cseq == CSeq(4, "REGISTER") == parse_cseq(message.get("cseq") or "")
    assert message.get("content-length") is None  # framing only, written by encode()


def test_a_copy_with_other_headers_parses_its_own_via_and_cseq() -> None:
    message = parse_message(REGISTER)
    assert message.top_via.branch == "z9hG4bK-1" and message.cseq.number == 4
    headers = tuple(
        (name, "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK-2" if name == "via" else "9 REGISTER" if name == "cseq" else value)
        for name, value in message.headers
    )
    copy = replace(message, headers=headers)
    assert copy.top_via.host == "198.51.100.1" and copy.cseq.number == 9
    assert copy != message and replace(message) == message  # kept values are not part of equality


def test_response_keeps_parsed_values_too() -> None:
    response = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-9\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 3 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(response, Response)
    assert response.top_via.branch == "z9hG4bK-9" and response.cseq == CSeq(3, "OPTIONS")


def test_response_whose_via_is_only_commas_is_a_sip_error() -> None:
    with pytest.raises(SipError) as raised:
        parse_message(
            b"SIP/2.0 200 OK\r\nVia: ,\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 3 OPTIONS\r\n\r\n"
        )
    assert raised.value.reason == "bad_header_value"


def test_stamped_request_carries_the_stamped_via() -> None:
    layer = TransactionLayer()
    message = parse_message(REGISTER)
    assert isinstance(message, Request)
    (event,) = layer.receive_request(message, Peer("udp", "203.0.113.5", 40000), now=0.0)
    assert isinstance(event, RequestReceived)
    stamped = event.request.top_via
    assert stamped.params["received"] == "203.0.113.5" and stamped.params["rport"] == "40000"
    assert stamped == parse_via(event.request.get_all("via")[0])  # as parsing the new text gives
    assert event.request.cseq == CSeq(4, "REGISTER")


@pytest.mark.parametrize(
    "text",
    ["sip:1001@pbx.example.com", "sips:[2001:db8::1]:5061;transport=tls", "tel:+84912345678;phone-context=x"],
)
def test_uri_cache_returns_what_parsing_returns(text: str) -> None:
    first = parse_uri(text)
    assert parse_uri(text) == first


@pytest.mark.parametrize(
    "text",
    ["sip:10%0d01@pbx.example.com", "sip:a b@pbx.example.com", "sip:1001@pbx.example.com?x=%0a", "http://x"],
)
def test_bad_uris_are_refused_every_time(text: str) -> None:
    for _ in range(2):  # an error is never cached as a success
        with pytest.raises(SipError):
            parse_uri(text)


def test_uri_cache_stays_bounded_and_correct_under_many_distinct_uris() -> None:
    for n in range(10_000):
        uri = parse_uri(f"sip:{n}@pbx.example.com")
        assert isinstance(uri, SipUri) and uri.user == str(n)
    assert parse_uri("sip:1001@pbx.example.com;transport=tcp") == SipUri(
        "sip", "1001", "pbx.example.com", None, {"transport": "tcp"}
    )


def test_many_headers_with_made_up_names_still_parse() -> None:
    extra = b"".join(b"X-Made-Up-%d: %d\r\n" % (n, n) for n in range(150))
    for round_ in range(5):  # more names than the name cache holds, over several messages
        data = REGISTER.replace(b"Max-Forwards: 70\r\n", extra.replace(b"X-", b"X%d-" % round_))
        message = parse_message(data)
        assert message.get(f"x{round_}-made-up-149") == "149"
    with pytest.raises(SipError) as raised:
        parse_message(REGISTER.replace(b"Max-Forwards", b"Max Forwards"))
    assert raised.value.reason == "bad_header"


def answer_all(layer: TransactionLayer, requests: list[Request], now: float) -> list[TransactionKey]:
    """Receive each request and answer it 200 at once; their keys."""
    keys = []
    for request in requests:
        (event,) = layer.receive_request(request, PHONE, now)
        assert isinstance(event, RequestReceived)
        layer.send_response(event.key, make_response(request, 200, to_tag="t"), now)
        keys.append(event.key)
    return keys


def test_timer_j_ends_each_non_invite_server_transaction_in_order() -> None:
    layer = TransactionLayer()
    requests = [register(f"z9hG4bK-j{n}", now_index=n) for n in range(5)]
    for n, request in enumerate(requests):
        answer_all(layer, [request], now=n * 1.0)
    assert layer.next_deadline() == TIMER_J
    ended = []
    for n in range(5):
        deadline = layer.next_deadline()
        assert deadline == TIMER_J + n
        assert layer.on_timer(deadline - 0.001) == []
        before = len(layer)
        assert layer.on_timer(deadline) == []
        ended.append(before - len(layer))
    assert ended == [1, 1, 1, 1, 1] and len(layer) == 0 and layer.next_deadline() is None


def test_retransmission_in_completed_is_answered_until_timer_j() -> None:
    layer = TransactionLayer()
    request = register("z9hG4bK-retx")
    answer_all(layer, [request], now=0.0)
    (resent,) = layer.receive_request(request, PHONE, now=TIMER_J - 1)
    assert isinstance(resent, Send) and resent.data.startswith(b"SIP/2.0 200 OK")
    layer.on_timer(TIMER_J)
    (again,) = layer.receive_request(request, PHONE, now=TIMER_J + 1)
    assert isinstance(again, RequestReceived)  # a new transaction once J has run out


def test_timer_j_queue_and_heap_fire_in_deadline_order() -> None:
    layer = TransactionLayer()
    dest = Peer("udp", "192.0.2.20", 5060)
    answer_all(layer, [register("z9hG4bK-a")], now=0.0)  # J at 32
    client_key, _ = layer.send_request(register("z9hG4bK-client"), dest, now=1.0)  # F at 33
    answer_all(layer, [register("z9hG4bK-b")], now=2.0)  # J at 34
    fired = layer.on_timer(40.0)
    assert [o for o in fired if not isinstance(o, Send)] == [TimedOut(key=client_key)]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_ended_transactions_leave_the_queue() -> None:
    layer = TransactionLayer()
    requests = [register(f"z9hG4bK-f{n}") for n in range(3)]
    keys = answer_all(layer, requests, now=0.0)
    assert layer.transport_failed(keys[0], now=1.0) == [TransportFailed(key=keys[0])]
    assert len(layer) == 2 and layer.next_deadline() == TIMER_J
    assert layer.on_timer(TIMER_J) == []
    assert len(layer) == 0 and layer.next_deadline() is None


def test_a_clock_going_backwards_still_ends_every_transaction() -> None:
    layer = TransactionLayer()
    answer_all(layer, [register("z9hG4bK-late")], now=10.0)
    answer_all(layer, [register("z9hG4bK-early")], now=5.0)  # J earlier than the queued one
    assert layer.next_deadline() == 5.0 + TIMER_J
    assert layer.on_timer(5.0 + TIMER_J) == [] and len(layer) == 1
    assert layer.next_deadline() == 10.0 + TIMER_J
    assert layer.on_timer(10.0 + TIMER_J) == [] and len(layer) == 0


def test_completed_state_lasts_64_t1_over_udp() -> None:
    layer = TransactionLayer()
    request = register("z9hG4bK-state")
    (event,) = layer.receive_request(request, PHONE, now=0.0)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.key, make_response(request, 200, to_tag="t"), now=0.0)
    assert layer.state(event.key) is NistState.COMPLETED
    assert TIMER_J == 64 * T1
    layer.on_timer(64 * T1)
    assert layer.state(event.key) is None


def test_nonce_check_then_accept_then_replay() -> None:
    nonces = NonceIssuer(SECRET, lifetime=30.0)
    nonce = nonces.issue(now=0.0)
    assert nonces.check(nonce, 1, now=1.0) is NonceStatus.VALID
    assert nonces.accept(nonce, 1, now=1.0) is NonceStatus.VALID
    assert nonces.check(nonce, 1, now=2.0) is NonceStatus.REPLAY
    assert nonces.check(nonce, 2, now=40.0) is NonceStatus.STALE  # the age is still checked
    altered = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    assert nonces.check(altered, 1, now=2.0) is NonceStatus.INVALID  # right after a verified one
    other = NonceIssuer(b"another secret, also 32 bytes!!", lifetime=30.0)
    assert other.check(nonce, 1, now=1.0) is NonceStatus.INVALID


def test_messages_built_in_one_step_equal_the_constructed_ones() -> None:
    """`parsed_request`/`parsed_response` set every field the constructors and
    `remember_parsed` set: a field added to the classes must be added there."""
    headers = (("via", "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-1"), ("cseq", "4 REGISTER"))
    via, cseq = parse_via(headers[0][1]), CSeq(4, "REGISTER")
    first = dict(reversed(headers))
    request = parsed_request(headers, b"x", "REGISTER", "sip:pbx.example.com", via, cseq, first)
    expected = Request(headers=headers, body=b"x", method="REGISTER", uri="sip:pbx.example.com")
    remember_parsed(expected, top_via=via, cseq=cseq, first=first)
    response = parsed_response(headers, b"", 200, "OK")
    for built, constructed in ((request, expected), (response, Response(headers=headers, body=b"", status=200, reason="OK"))):
        assert built == constructed and type(built) is type(constructed)
        for item in fields(built):
            assert getattr(built, item.name) == getattr(constructed, item.name)
    assert request.top_via is via and request.cseq is cseq and request.get("cseq") == "4 REGISTER"
    assert response.top_via == via and response.get("via") == headers[0][1]
    with pytest.raises(FrozenInstanceError):
        request.uri = "sip:other"  # type: ignore[misc]
    assert replace(request, uri="sip:other").uri == "sip:other"


def test_a_via_built_in_one_step_equals_the_constructed_one() -> None:
    params: dict[str, str | None] = {"branch": "z9hG4bK-1", "rport": None}
    via = new_via("UDP", "192.0.2.10", 5062, params)
    assert via == Via("UDP", "192.0.2.10", 5062, params) == parse_via("SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-1;rport")
    assert [getattr(via, item.name) for item in fields(Via)] == ["UDP", "192.0.2.10", 5062, params]
    with pytest.raises(FrozenInstanceError):
        via.port = 5060  # type: ignore[misc]
