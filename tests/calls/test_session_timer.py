"""The session timer decisions of the B2BUA (RFC 4028), table-driven."""

from __future__ import annotations

import pytest

from pbx.sip.session_timer import (
    SessionExpires,
    expiry_delay,
    parse_min_se,
    parse_session_expires,
    request_headers,
    response_headers,
    retry_headers,
    supports_timer,
    too_small,
)
from pbx.sip.message import Header, Request, Response, make_request, make_response

BASE: list[Header] = [
    ("via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest1"),
    ("from", "<sip:2001@pbx.example.com>;tag=a1"),
    ("to", "<sip:2002@pbx.example.com>"),
    ("call-id", "st-1"),
    ("cseq", "1 INVITE"),
]


def invite(*headers: Header) -> Request:
    return make_request("INVITE", "sip:2002@pbx.example.com", [*BASE, *headers])


def ok(request: Request, *headers: Header) -> Response:
    return make_response(request, 200, to_tag="b1", headers=list(headers))


@pytest.mark.parametrize(("text", "expected"), [
    (None, None),
    ("1800", SessionExpires(1800, None)),
    ("1800;refresher=uac", SessionExpires(1800, "uac")),
    (" 90 ; Refresher = UAS ", SessionExpires(90, "uas")),
    ("90;refresher=both", SessionExpires(90, None)),
    ("90;foo=bar;refresher=uac", SessionExpires(90, "uac")),
    ("", None),
    ("abc", None),
    ("-5", None),
    ("12345678901", None),
])
def test_parse_session_expires(text: str | None, expected: SessionExpires | None) -> None:
    assert parse_session_expires(text) == expected


@pytest.mark.parametrize(("text", "expected"), [(None, None), ("90", 90), ("120;x=1", 120), ("ninety", None)])
def test_parse_min_se(text: str | None, expected: int | None) -> None:
    assert parse_min_se(text) == expected


def test_session_expires_round_trips() -> None:
    for value in (SessionExpires(90, None), SessionExpires(1800, "uac"), SessionExpires(600, "uas")):
        assert parse_session_expires(str(value)) == value


@pytest.mark.parametrize(("headers", "supports"), [
    ([], False),
    ([("supported", "timer")], True),
    ([("supported", "100rel, Timer, replaces")], True),
    ([("require", "timer")], True),
    ([("supported", "timers")], False),
])
def test_supports_timer(headers: list[Header], supports: bool) -> None:
    assert supports_timer(invite(*headers)) is supports


@pytest.mark.parametrize(("value", "floor", "refused"), [
    (None, 90, False), ("89", 90, True), ("90", 90, False), ("1800;refresher=uac", 90, False), ("3", 4, True),
])
def test_too_small(value: str | None, floor: int, refused: bool) -> None:
    headers: list[Header] = [] if value is None else [("session-expires", value)]
    assert too_small(invite(*headers), floor) is refused


@pytest.mark.parametrize(("given", "peer_floor", "expected"), [
    # A caller without timers, naming no interval: left to the callee.
    ([], None, []),
    # Supports timers, names none: we ask for ours (§8.1).
    ([("supported", "timer")], None,
     [("supported", "timer"), ("session-expires", "1800"), ("min-se", "90")]),
    # Longer than we want: shortened, refresher kept.
    ([("supported", "timer"), ("session-expires", "7200;refresher=uac")], None,
     [("supported", "timer"), ("session-expires", "1800;refresher=uac"), ("min-se", "90")]),
    # Shorter is kept; the caller's Min-SE above ours is kept.
    ([("supported", "timer"), ("session-expires", "600"), ("min-se", "300")], None,
     [("supported", "timer"), ("session-expires", "600"), ("min-se", "300")]),
    # An interval without Supported: timer (a proxy put it there) is relayed.
    ([("session-expires", "900;refresher=uas")], None, [("session-expires", "900;refresher=uas"), ("min-se", "90")]),
    # The other side once asked for 1000 s (422): raised to it.
    ([("supported", "timer"), ("session-expires", "600")], 1000,
     [("supported", "timer"), ("session-expires", "1000"), ("min-se", "1000")]),
    # Require: timer is passed on, only that tag.
    ([("require", "timer, 100rel"), ("session-expires", "600")], None,
     [("supported", "timer"), ("require", "timer"), ("session-expires", "600"), ("min-se", "90")]),
])
def test_request_headers(given: list[Header], peer_floor: int | None, expected: list[Header]) -> None:
    assert request_headers(invite(*given), session_expires=1800, floor=90, peer_floor=peer_floor) == expected


def test_response_relays_the_callees_choice() -> None:
    origin = invite(("supported", "timer"), ("session-expires", "1800"))
    relayed = invite(("supported", "timer"), ("session-expires", "1800"), ("min-se", "90"))
    headers, interval = response_headers(origin, relayed, ok(relayed, ("session-expires", "1200;refresher=uac"),
                                                              ("require", "timer")))
    assert (headers, interval) == ([("session-expires", "1200;refresher=uac"), ("require", "timer")], 1200)
    headers, interval = response_headers(origin, relayed, ok(relayed, ("session-expires", "1200;refresher=uas")))
    assert (headers, interval) == ([("session-expires", "1200;refresher=uas")], 1200)


def test_response_without_timer_makes_the_caller_refresh() -> None:
    origin = invite(("supported", "timer"))
    relayed = invite(("supported", "timer"), ("session-expires", "1800"), ("min-se", "90"))
    headers, interval = response_headers(origin, relayed, ok(relayed))
    assert (headers, interval) == ([("session-expires", "1800;refresher=uac"), ("require", "timer")], 1800)


def test_response_without_timer_to_a_caller_without_timers_means_none() -> None:
    origin = invite(("session-expires", "1800"))  # no Supported: timer
    headers, interval = response_headers(origin, origin, ok(origin))
    assert (headers, interval) == ([], None)
    plain = invite()
    assert response_headers(plain, plain, ok(plain)) == ([], None)


def test_retry_headers_raise_to_the_asked_min_se() -> None:
    assert retry_headers(invite(("session-expires", "300;refresher=uac")), 600) == [
        ("session-expires", "600;refresher=uac"), ("min-se", "600")]
    assert retry_headers(invite(("session-expires", "900")), 600) == [
        ("session-expires", "900"), ("min-se", "600")]
    assert retry_headers(invite(), 600) == [("session-expires", "600"), ("min-se", "600")]


@pytest.mark.parametrize(("interval", "delay"), [(90, 60.0), (1800, 1768.0), (6, 4.0), (96, 64.0)])
def test_expiry_delay_is_rfc_4028_section_10(interval: int, delay: float) -> None:
    assert expiry_delay(interval) == pytest.approx(delay)
