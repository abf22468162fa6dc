"""Digest checks of the authenticator beyond the response itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.registrar.auth import Authenticated, Authenticator, Challenge
from pbx.security.lockout import Lockout
from pbx.routing.dialplan import Department, Dialplan, Extension
from pbx.routing.loader import load_dialplan
from pbx.sip import digest
from pbx.sip.message import Request, make_request

DOMAIN = "pbx.example.com"
PASSWORD = "an-secret-1001"


def authenticator() -> Authenticator:
    plan = Dialplan(domain=DOMAIN, departments={"sales": Department(key="sales", name="Sales")},
                    extensions={"1001": Extension(number="1001", name="An", department="sales", password=PASSWORD)})
    return Authenticator(plan, digest.NonceIssuer(b"k" * 32, lifetime=300),
                         Lockout(max_failures=10, window=60, block_seconds=300))


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


def _no_qop_answer(auth: Authenticator, request_uri: str) -> str:
    challenge = auth.authenticate(invite(request_uri), "192.0.2.10", 1000.0, proxy=True)
    assert isinstance(challenge, Challenge)
    value = digest.choose_challenge(list(challenge.header_values))
    assert value is not None
    parsed = digest.parse_challenge(value)
    # An RFC 2069 client: no qop, no cnonce, no nc.
    ha1 = digest.ha1(parsed.algorithm, "1001", DOMAIN, PASSWORD)
    response = digest.response_for(parsed.algorithm, ha1, parsed.nonce, "INVITE", request_uri, None, None, None)
    return (f'Digest username="1001", realm="{DOMAIN}", nonce="{parsed.nonce}", uri="{request_uri}", '
            f'response="{response}", algorithm={parsed.algorithm.value}')


def test_a_digest_without_qop_is_refused_unless_the_method_allows_it() -> None:
    auth, uri = authenticator(), "sip:0912345678@pbx.example.com"
    refused = auth.authenticate(invite(uri, _no_qop_answer(auth, uri)), "192.0.2.10", 1001.0, proxy=True)
    assert isinstance(refused, Challenge) and (refused.reason, refused.failed) == ("qop_required", False)
    allowed = auth.authenticate(invite(uri, _no_qop_answer(auth, uri)), "192.0.2.10", 1001.0, proxy=True,
                                qop_optional=True)
    assert isinstance(allowed, Authenticated)


def test_unknown_users_get_the_sets_real_users_get_in_their_proportions() -> None:
    md5_only = digest.ha1(digest.Algorithm.MD5, "x", DOMAIN, "p")
    extensions = {
        f"{1000 + n}": Extension(number=f"{1000 + n}", name="E", department="sales", ha1_md5=md5_only)
        if n % 4 == 0 else Extension(number=f"{1000 + n}", name="E", department="sales", password="secret-1")
        for n in range(40)
    }
    plan = Dialplan(domain=DOMAIN, departments={"sales": Department(key="sales", name="Sales")},
                    extensions=extensions)
    auth = Authenticator(plan, digest.NonceIssuer(b"k" * 32, lifetime=300),
                         Lockout(max_failures=10, window=60, block_seconds=300), decoy_key=b"d" * 32)
    both, md5 = (digest.Algorithm.SHA256, digest.Algorithm.MD5), (digest.Algorithm.MD5,)
    assert auth.offered("1000") == md5 and auth.offered("1001") == both
    offers = [auth.offered(f"9{n:04d}") for n in range(4000)]
    assert set(offers) == {both, md5}
    assert 0.20 < offers.count(md5) / len(offers) < 0.30  # a quarter of the real users are MD5-only
    assert [auth.offered(f"9{n:04d}") for n in range(100)] == offers[:100]  # the same name, the same answer


def test_forged_answers_under_a_block_do_not_use_up_the_owners_turn() -> None:
    """A guesser blocked on (office, 1001) keeps sending wrong answers with
    nonces fetched at its own address but forged from the office's: they
    are foreign nonces, re-challenged, never checked against the block's one
    check per retry interval, so the owner's right answer is served."""
    auth = Authenticator(
        Dialplan(domain=DOMAIN, departments={"sales": Department(key="sales", name="Sales")},
                 extensions={"1001": Extension(number="1001", name="An", department="sales", password=PASSWORD)}),
        digest.NonceIssuer(b"k" * 32, lifetime=300), Lockout(max_failures=3, window=60, block_seconds=300))
    office, elsewhere, uri = "192.0.2.10", "203.0.113.9", "sip:0912345678@pbx.example.com"

    def answer(source: str, password: str, now: float) -> str:
        challenge = auth.authenticate(invite(uri), source, now, proxy=True)
        assert isinstance(challenge, Challenge)
        value = digest.choose_challenge(list(challenge.header_values))
        assert value is not None
        return digest.answer_challenge(value, username="1001", password=password, method="INVITE", uri=uri,
                                       cnonce="c", nc=1)

    for n in range(3):  # a real guesser at the office sets the block
        auth.authenticate(invite(uri, answer(office, f"guess-{n}", 1000.0 + n)), office, 1000.0 + n, proxy=True)
    assert auth.lockout.blocked(office, "1001", 1003.0) is not None
    forged = [auth.authenticate(invite(uri, answer(elsewhere, "guess", 1003.0)), office, 1003.0 + n / 100,
                                proxy=True) for n in range(50)]
    assert {(c.reason, c.failed) for c in forged if isinstance(c, Challenge)} == {("foreign_nonce", False)}
    owner = auth.authenticate(invite(uri, answer(office, PASSWORD, 1004.5)), office, 1004.5, proxy=True)
    assert isinstance(owner, Authenticated)


def test_nonces_per_address_can_be_turned_off_for_pooling_nats(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(f"domain: {DOMAIN}\nsecurity: {{digest_nonce_per_address: false}}\n"
                         "departments: {sales: {name: Sales}}\n"
                         f"extensions: {{1001: {{name: An, department: sales, password: {PASSWORD}}}}}\n")
    plan = load_dialplan(plan_file)
    assert plan.security.digest_nonce_per_address is False
    auth = Authenticator(plan, digest.NonceIssuer(b"k" * 32, lifetime=300),
                         Lockout(max_failures=10, window=60, block_seconds=300))
    uri = "sip:0912345678@pbx.example.com"
    challenge = auth.authenticate(invite(uri), "100.64.0.1", 1000.0, proxy=True)  # one address of the pool ...
    assert isinstance(challenge, Challenge)
    value = digest.choose_challenge(list(challenge.header_values))
    assert value is not None
    credentials = digest.answer_challenge(value, username="1001", password=PASSWORD, method="INVITE", uri=uri,
                                          cnonce="c", nc=1)
    # ... and the answer from another: accepted, as before the binding.
    assert isinstance(auth.authenticate(invite(uri, credentials), "100.64.0.2", 1001.0, proxy=True), Authenticated)
    bound = authenticator()  # the default binds: the same move is a foreign nonce
    challenge = bound.authenticate(invite(uri), "100.64.0.1", 1000.0, proxy=True)
    assert isinstance(challenge, Challenge)
    value = digest.choose_challenge(list(challenge.header_values))
    assert value is not None
    credentials = digest.answer_challenge(value, username="1001", password=PASSWORD, method="INVITE", uri=uri,
                                          cnonce="c", nc=1)
    refused = bound.authenticate(invite(uri, credentials), "100.64.0.2", 1001.0, proxy=True)
    assert isinstance(refused, Challenge) and (refused.reason, refused.failed) == ("foreign_nonce", False)
