"""Registrar decisions (RFC 3261 §10.3), pure: requests in, responses out."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest

from pbx.registrar.auth import Authenticator
from pbx.registrar.bindings import BindingTable
from pbx.security.lockout import Lockout
from pbx.registrar.registrar import RegisterOutcome, Registrar
from pbx.routing.dialplan import Department, Dialplan, Extension, RegistrarSettings, SecuritySettings
from pbx.sip import digest
from pbx.sip.address import Peer
from pbx.sip.message import Request, Response, make_request, parse_name_addr

DOMAIN = "pbx.example.com"
PHONE = Peer("udp", "192.0.2.10", 5062)
_branches = itertools.count()


def plan(**registrar: Any) -> Dialplan:
    return Dialplan(
        domain=DOMAIN,
        registrar=RegistrarSettings(**registrar),
        security=SecuritySettings(max_auth_failures=3, failure_window=60, block_seconds=300),
        departments={"sales": Department(key="sales", name="Sales")},
        extensions={
            "1001": Extension(number="1001", name="An", department="sales", password="an-secret-1001"),
            "1002": Extension(
                number="1002",
                name="Binh",
                department="sales",
                ha1_md5=digest.ha1(digest.Algorithm.MD5, "1002", DOMAIN, "binh-secret"),
                max_contacts=2,
            ),
        },
    )


def make_registrar(**settings: Any) -> Registrar:
    dialplan = plan(**settings)
    tracker = Lockout(max_failures=3, window=60, block_seconds=300)
    auth = Authenticator(dialplan, digest.NonceIssuer(b"k" * 32, lifetime=300), tracker)
    return Registrar(dialplan, auth, BindingTable(), to_tag="regtag")


def register(
    aor: str,
    contacts: list[str],
    *,
    expires: int | None = None,
    call_id: str = "call-1",
    cseq: int = 1,
    authorization: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> Request:
    headers = [
        ("Via", f"SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{next(_branches)};rport"),
        ("From", f"<sip:{aor}@{DOMAIN}>;tag=f1"),
        ("To", f"<sip:{aor}@{DOMAIN}>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} REGISTER"),
        *[("Contact", c) for c in contacts],
        *(extra or []),
    ]
    if expires is not None:
        headers.append(("Expires", str(expires)))
    if authorization:
        headers.append(("Authorization", authorization))
    return make_request("REGISTER", f"sip:{DOMAIN}", headers)


def authed(
    registrar: Registrar, aor: str, contacts: list[str], *, password: str, now: float = 1000.0,
    user: str | None = None, cseq: int = 1, **kwargs: object
) -> Response:
    """Send REGISTER, answer the 401 like a phone, return the final answer."""
    first = registrar.handle(register(aor, contacts, cseq=cseq, **kwargs), PHONE, now)  # type: ignore[arg-type]
    assert first.response.status == 401
    challenge = digest.choose_challenge(first.response.get_all("www-authenticate"))
    assert challenge is not None
    answer = digest.answer_challenge(
        challenge, username=user or aor, password=password, method="REGISTER",
        uri=f"sip:{DOMAIN}", cnonce="c0ffee", nc=1,
    )
    second = registrar.handle(
        register(aor, contacts, cseq=cseq + 1, authorization=answer, **kwargs), PHONE, now  # type: ignore[arg-type]
    )
    return second.response


def contacts_of(response: Response) -> dict[str, int]:
    found = {}
    for value in response.get_all("contact"):
        addr = parse_name_addr(value)
        found[addr.uri] = int(addr.params["expires"] or -1)
    return found


def test_challenge_offers_sha256_then_md5() -> None:
    registrar = make_registrar()
    outcome = registrar.handle(register("1001", ["<sip:1001@192.0.2.10:5062>"]), PHONE, 1000.0)
    assert outcome.response.status == 401
    algorithms = [digest.parse_challenge(v).algorithm for v in outcome.response.get_all("www-authenticate")]
    assert algorithms == [digest.Algorithm.SHA256, digest.Algorithm.MD5]
    assert outcome.challenge is not None and not outcome.challenge.failed


def test_register_with_password_and_with_stored_ha1() -> None:
    registrar = make_registrar()
    response = authed(registrar, "1001", ["<sip:1001@192.0.2.10:5062>"], password="an-secret-1001", expires=600)
    assert response.status == 200
    assert contacts_of(response) == {"sip:1001@192.0.2.10:5062": 600}
    response = authed(registrar, "1002", ["<sip:1002@192.0.2.11>"], password="binh-secret")
    assert response.status == 200
    assert contacts_of(response) == {"sip:1002@192.0.2.11": 3600}  # default_expires
    binding = registrar.table.current("1001", 1000.0)[0]
    assert binding.source == PHONE


def test_md5_only_extension_is_offered_md5_only() -> None:
    registrar = make_registrar()
    outcome = registrar.handle(register("1002", ["<sip:1002@a>"]), PHONE, 1000.0)
    algorithms = [digest.parse_challenge(v).algorithm for v in outcome.response.get_all("www-authenticate")]
    assert algorithms == [digest.Algorithm.MD5]


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    registrar = make_registrar()
    wrong = authed(registrar, "1001", ["<sip:1001@h>"], password="guess")
    unknown = authed(registrar, "1999", ["<sip:1999@h>"], password="guess")
    assert (wrong.status, wrong.reason) == (unknown.status, unknown.reason) == (401, "Unauthorized")
    # An unknown user is offered one of the sets real users get (1001 has a
    # password: SHA-256 and MD5; 1002 only an MD5 hash: MD5 alone).
    real = {_algorithms(wrong), _algorithms(authed(registrar, "1002", ["<sip:1002@h>"], password="guess"))}
    assert real == {("SHA-256", "MD5"), ("MD5",)}
    assert _algorithms(unknown) in real
    assert registrar.table.current("1001", 1000.0) == []


def _algorithms(response: Response) -> tuple[str, ...]:
    return tuple(digest.parse_challenge(v).algorithm.value for v in response.get_all("www-authenticate"))


def _guess(registrar: Registrar, user: str, password: str, at: float, source: Peer = PHONE) -> RegisterOutcome:
    first = registrar.handle(register(user, [f"<sip:{user}@h>"]), source, at)
    assert first.challenge is not None
    answer = digest.answer_challenge(
        digest.choose_challenge(first.response.get_all("www-authenticate")) or "",
        username=user, password=password, method="REGISTER", uri=f"sip:{DOMAIN}", cnonce="x", nc=1,
    )
    return registrar.handle(register(user, [f"<sip:{user}@h>"], authorization=answer), source, at)


def test_repeated_failures_block_the_pair_and_silence_only_failures() -> None:
    registrar = make_registrar()  # 3 failures block
    outcomes = [_guess(registrar, "1001", f"guess{n}", 1000.0 + n) for n in range(3)]
    challenges = [o.challenge for o in outcomes]
    assert all(c is not None and c.failed for c in challenges)
    assert [c.silent for c in challenges if c is not None] == [False, False, True]
    third = challenges[2]
    assert third is not None and third.failure is not None
    (block,) = third.failure.blocks
    assert (block.source, block.username, block.until) == (PHONE.host, "1001", 1002.0 + 300)
    # Blocked: another guess a moment later is dropped unchecked ...
    later = _guess(registrar, "1001", "guess9", 1002.5)
    assert later.challenge is not None and later.challenge.silent and later.challenge.reason == "blocked_unchecked"
    # ... while the right password, after the retry interval, is served,
    assert _guess(registrar, "1001", "an-secret-1001", 1005.0).response.status == 200
    # and another user behind the same address never noticed anything.
    assert _guess(registrar, "1002", "binh-secret", 1005.0).response.status == 200
    assert registrar.auth.lockout.blocked(PHONE.host, "1001", 1303.0) is None


def test_someone_else_cannot_bind_my_number() -> None:
    registrar = make_registrar()
    response = authed(registrar, "1002", ["<sip:evil@h>"], user="1001", password="an-secret-1001")
    assert (response.status, response.reason) == (403, "Forbidden")
    assert registrar.table.current("1002", 1000.0) == []


def test_interval_too_brief_gives_min_expires() -> None:
    registrar = make_registrar(min_expires=120)
    response = authed(registrar, "1001", ["<sip:1001@h>;expires=30"], password="an-secret-1001")
    assert response.status == 423
    assert response.get("min-expires") == "120"
    assert registrar.table.current("1001", 1000.0) == []


def test_expires_above_max_is_shortened() -> None:
    registrar = make_registrar(max_expires=1800, default_expires=1800)
    response = authed(registrar, "1001", ["<sip:1001@h>"], expires=999999, password="an-secret-1001")
    assert contacts_of(response) == {"sip:1001@h": 1800}


def test_several_contacts_query_and_removal() -> None:
    registrar = make_registrar()
    response = authed(registrar, "1001", ["<sip:1001@a>;expires=100", "<sip:1001@b>;expires=200"],
                      password="an-secret-1001")
    assert contacts_of(response) == {"sip:1001@a": 100, "sip:1001@b": 200}
    query = authed(registrar, "1001", [], password="an-secret-1001", now=1050.0, call_id="q", cseq=1)
    assert contacts_of(query) == {"sip:1001@a": 50, "sip:1001@b": 150}
    removed = authed(registrar, "1001", ["<sip:1001@a>;expires=0"], password="an-secret-1001",
                     call_id="call-1", cseq=10)
    assert contacts_of(removed) == {"sip:1001@b": 200}


def test_wildcard_removes_all_only_with_expires_zero() -> None:
    registrar = make_registrar()
    authed(registrar, "1001", ["<sip:1001@a>", "<sip:1001@b>"], password="an-secret-1001")
    bad = authed(registrar, "1001", ["*"], password="an-secret-1001", cseq=5)
    assert bad.status == 400
    ok = authed(registrar, "1001", ["*"], expires=0, password="an-secret-1001", call_id="other", cseq=5)
    assert ok.status == 200 and ok.get_all("contact") == []
    assert registrar.table.current("1001", 1000.0) == []


def test_out_of_order_cseq_with_same_call_id_fails() -> None:
    registrar = make_registrar()
    assert authed(registrar, "1001", ["<sip:1001@a>"], password="an-secret-1001", cseq=10).status == 200
    late = authed(registrar, "1001", ["<sip:1001@a>"], password="an-secret-1001", cseq=3)
    assert late.status == 500


def test_max_contacts_per_extension() -> None:
    registrar = make_registrar()
    assert authed(registrar, "1002", ["<sip:1002@a>", "<sip:1002@b>"], password="binh-secret").status == 200
    third = authed(registrar, "1002", ["<sip:1002@c>"], password="binh-secret", call_id="x")
    assert (third.status, third.reason) == (403, "Too Many Contacts")


def test_unsupported_require_gets_420() -> None:
    registrar = make_registrar()
    outcome = registrar.handle(register("1001", ["<sip:1001@a>"], extra=[("Require", "gruu")]), PHONE, 1000.0)
    assert outcome.response.status == 420
    assert outcome.response.get("unsupported") == "gruu"


def test_stale_nonce_gets_stale_challenge_without_counting() -> None:
    registrar = make_registrar(nonce_lifetime=30)
    registrar.auth.nonces = digest.NonceIssuer(b"k" * 32, lifetime=30)
    first = registrar.handle(register("1001", ["<sip:1001@a>"]), PHONE, 1000.0)
    answer = digest.answer_challenge(
        digest.choose_challenge(first.response.get_all("www-authenticate")) or "",
        username="1001", password="an-secret-1001", method="REGISTER", uri=f"sip:{DOMAIN}", cnonce="x", nc=1,
    )
    late = registrar.handle(register("1001", ["<sip:1001@a>"], authorization=answer), PHONE, 1100.0)
    assert late.response.status == 401
    assert all("stale=true" in v for v in late.response.get_all("www-authenticate"))
    assert late.challenge is not None and not late.challenge.failed


def test_replayed_authorization_is_refused() -> None:
    registrar = make_registrar()
    first = registrar.handle(register("1001", ["<sip:1001@a>"]), PHONE, 1000.0)
    answer = digest.answer_challenge(
        digest.choose_challenge(first.response.get_all("www-authenticate")) or "",
        username="1001", password="an-secret-1001", method="REGISTER", uri=f"sip:{DOMAIN}", cnonce="x", nc=1,
    )
    ok = registrar.handle(register("1001", ["<sip:1001@a>"], authorization=answer, cseq=2), PHONE, 1000.0)
    assert ok.response.status == 200
    replay = registrar.handle(register("1001", ["<sip:1001@a>"], authorization=answer, cseq=3), PHONE, 1000.0)
    assert replay.response.status == 401
    assert replay.challenge is not None and replay.challenge.reason == "nonce_replay"


@pytest.mark.parametrize("contact", ["<http://x>", "<sip:1001@>", "garbage"])
def test_bad_contact_gets_400(contact: str) -> None:
    registrar = make_registrar()
    assert authed(registrar, "1001", [contact], password="an-secret-1001").status == 400


EDGE_PATH = "<sip:203.0.113.5:5060;lr;received=sip:198.51.100.7:40123>"


@pytest.mark.parametrize(("supported", "echoed"), [(None, []), ("path", [EDGE_PATH])])
def test_path_is_kept_with_the_binding_and_echoed_to_a_phone_that_supports_it(
        supported: str | None, echoed: list[str]) -> None:
    # RFC 3327 §5.3: the Path is stored with the binding; the 200 repeats it
    # only when the phone said it understands Path (Kamailio's path_mode 1).
    registrar = make_registrar()
    extra = [("Path", EDGE_PATH), *([("Supported", supported)] if supported else [])]
    response = authed(registrar, "1001", ["<sip:1001@192.0.2.10:5062>"], password="an-secret-1001", extra=extra)
    assert response.status == 200
    [binding] = registrar.table.current("1001", 1000.0)
    assert binding.path == (EDGE_PATH,)
    assert response.get_all("path") == echoed


def test_require_path_is_understood() -> None:
    registrar = make_registrar()
    response = authed(registrar, "1001", ["<sip:1001@192.0.2.10:5062>"], password="an-secret-1001",
                      extra=[("Path", EDGE_PATH), ("Require", "path")])
    assert response.status == 200


@pytest.mark.parametrize(("client", "kept"), [(None, ()), (PHONE, (EDGE_PATH,))])
def test_with_edges_listed_only_their_path_is_kept(client: Peer | None, kept: tuple[str, ...]) -> None:
    # security.trusted_proxies lists the edge: a Path straight from a phone
    # (client None: not relayed by a listed edge) is ignored.
    dialplan = replace(plan(), security=replace(plan().security, trusted_proxies=frozenset({"203.0.113.5"})))
    registrar = Registrar(dialplan, Authenticator(dialplan, digest.NonceIssuer(b"k" * 32, lifetime=300),
                                                  Lockout(max_failures=3, window=60, block_seconds=300)),
                          BindingTable(), to_tag="regtag")
    contacts, extra = ["<sip:1001@192.0.2.10:5062>"], [("Path", EDGE_PATH)]
    first = registrar.handle(register("1001", contacts, extra=extra), PHONE, 1000.0, client=client)
    challenge = digest.choose_challenge(first.response.get_all("www-authenticate"))
    assert challenge is not None
    answer = digest.answer_challenge(challenge, username="1001", password="an-secret-1001", method="REGISTER",
                                     uri=f"sip:{DOMAIN}", cnonce="c0ffee", nc=1)
    second = registrar.handle(register("1001", contacts, cseq=2, authorization=answer, extra=extra), PHONE, 1000.0,
                              client=client)
    assert second.response.status == 200
    [binding] = registrar.table.current("1001", 1000.0)
    assert binding.path == kept
