"""Digest checks of the authenticator beyond the response itself."""

from __future__ import annotations

import pytest

from pbx.registrar.auth import Authenticated, Authenticator, Challenge
from pbx.registrar.lockout import FailureTracker
from pbx.routing.dialplan import Department, Dialplan, Extension
from pbx.sip import digest
from pbx.sip.message import Request, make_request

DOMAIN = "pbx.example.com"
PASSWORD = "an-secret-1001"


def authenticator() -> Authenticator:
    plan = Dialplan(domain=DOMAIN, departments={"sales": Department(key="sales", name="Sales")},
                    extensions={"1001": Extension(number="1001", name="An", department="sales", password=PASSWORD)})
    return Authenticator(plan, digest.NonceIssuer(b"k" * 32, lifetime=300),
                         FailureTracker(max_failures=10, window=60, block_seconds=300))


def invite(to: str, authorization: str | None = None) -> Request:
    headers = [("Via", "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKi"), ("From", f"<sip:1001@{DOMAIN}>;tag=a"),
               ("To", f"<{to}>"), ("Call-ID", "c"), ("CSeq", "2 INVITE")]
    if authorization:
        headers.append(("Proxy-Authorization", authorization))
    return make_request("INVITE", to, headers)


def answered(auth: Authenticator, request_uri: str, digest_uri: str) -> Authenticated | Challenge:
    challenge = auth.authenticate(invite(request_uri), "192.0.2.10", 1000.0, proxy=True)
    assert isinstance(challenge, Challenge)
    value = digest.choose_challenge(list(challenge.header_values))
    assert value is not None
    credentials = digest.answer_challenge(value, username="1001", password=PASSWORD, method="INVITE",
                                          uri=digest_uri, cnonce="c", nc=1)
    return auth.authenticate(invite(request_uri, credentials), "192.0.2.10", 1001.0, proxy=True)


@pytest.mark.parametrize("digest_uri", ["sip:0912345678@pbx.example.com", "sip:0912345678@PBX.example.com:5060",
                                        "sip:pbx.example.com"])  # SIPp names the server only
def test_a_digest_for_the_request_uri_is_accepted(digest_uri: str) -> None:
    result = answered(authenticator(), "sip:0912345678@pbx.example.com", digest_uri)
    assert isinstance(result, Authenticated) and result.extension.number == "1001"


def test_a_digest_computed_for_another_uri_is_refused_and_counted() -> None:
    # A response made for a call to an extension, replayed on a call out:
    # right password, wrong request (RFC 3261 §22.4).
    result = answered(authenticator(), "sip:0912345678@pbx.example.com", "sip:1002@pbx.example.com")
    assert isinstance(result, Challenge)
    assert (result.failed, result.reason) == (True, "uri_mismatch")


def test_a_digest_for_another_server_is_refused() -> None:
    result = answered(authenticator(), "sip:0912345678@pbx.example.com", "sip:other.example.net")
    assert isinstance(result, Challenge) and result.reason == "uri_mismatch"
