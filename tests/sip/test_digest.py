"""Tests for pbx.sip.digest: RFC vectors, client/server round trips, the nonce
life cycle with a hand-held clock, and fuzzing of the parsers."""

import hashlib
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.digest import (
    Algorithm,
    Challenge,
    Credentials,
    DigestError,
    NonceIssuer,
    NonceStatus,
    UnsupportedDigest,
    answer_challenge,
    choose_challenge,
    format_challenge,
    ha1,
    parse_auth_header,
    parse_challenge,
    parse_credentials,
    response_for,
    verify,
)

# Every character, lone surrogates included.
any_text = st.text(alphabet=st.characters(blacklist_categories=()))
header_like = st.lists(
    st.sampled_from(['Digest', ' ', '\t', '\r\n ', ',', '=', '"', '\\', 'realm', 'nonce', 'qop',
                     'auth', 'nc', '00000001', 'algorithm', 'SHA-256', 'response', 'é', '\ud800', 'x']),
    max_size=40,
).map("".join)


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1)
# Text a quoted-string may carry once escaped: no control characters or lone surrogates.
quotable = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")))
space = st.sampled_from(["", " ", "  ", "\t", "\r\n ", "\n\t"])


SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "pbx.example.com"
REGISTRAR_URI = "sip:pbx.example.com"

# --- RFC vectors -----------------------------------------------------------------

# RFC 2617 §3.5, folded over several lines as printed there.
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n'
    '                 realm="testrealm@host.com",\r\n'
    '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '                 uri="/dir/index.html",\r\n'
    "                 qop=auth,\r\n"
    "                 nc=00000001,\r\n"
    '                 cnonce="0a4f113b",\r\n'
    '                 response="6629fae49393a05397450978507c4ef1",\r\n'
    '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

# RFC 7616 §3.9.1: the server offers SHA-256 first, then MD5.
RFC7616_CHALLENGES = [
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256,'
    ' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",'
    ' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5,'
    ' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",'
    ' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
]
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def test_rfc2617_worked_example_computation() -> None:
    secret_ha1 = ha1(Algorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life")
    response = response_for(
        Algorithm.MD5,
        secret_ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "GET",
        "/dir/index.html",
        "auth",
        "00000001",
        "0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


def test_rfc2617_worked_example_parses_and_verifies() -> None:
    credentials = parse_credentials(RFC2617_AUTHORIZATION)
    assert credentials == Credentials(
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        response="6629fae49393a05397450978507c4ef1",
        algorithm=Algorithm.MD5,
        qop="auth",
        nc=1,
        cnonce="0a4f113b",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
        nc_value="00000001",
    )
    right = ha1(Algorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life")
    wrong = ha1(Algorithm.MD5, "Mufasa", "testrealm@host.com", "Circle of Life")
    assert verify(credentials, right, "GET")
    assert not verify(credentials, wrong, "GET")
    assert not verify(credentials, right, "POST")  # HA2 covers the method


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        (RFC7616_CHALLENGES[0], "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        (RFC7616_CHALLENGES[1], "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_example_client_answer(challenge: str, expected: str) -> None:
    answer = answer_challenge(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616_CNONCE,
        nc=1,
    )
    credentials = parse_credentials(answer)
    assert credentials.response == expected
    assert credentials.qop == "auth"  # auth chosen over auth-int
    assert credentials.nc == 1 and credentials.cnonce == RFC7616_CNONCE
    assert credentials.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert credentials.realm == "http-auth@example.org"


def test_choose_challenge_prefers_sha256_whatever_the_order() -> None:
    sha256, md5 = RFC7616_CHALLENGES
    assert choose_challenge([sha256, md5]) == sha256
    assert choose_challenge([md5, sha256]) == sha256
    assert choose_challenge([md5]) == md5


def test_choose_challenge_skips_what_it_cannot_answer() -> None:
    md5 = 'Digest realm="r", nonce="n"'
    unusable = [
        'Basic realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", algorithm=MD5-sess',
        'Digest realm="r", nonce="n", qop="auth-int"',
        'Digest realm="r"',
        "garbage",
    ]
    assert choose_challenge(unusable) is None
    assert choose_challenge([*unusable, md5]) == md5
    first, second = 'Digest realm="a", nonce="1"', 'Digest realm="b", nonce="2"'
    assert choose_challenge([first, second]) == first  # equals: topmost
    assert choose_challenge([]) is None


# --- Client -> server round trips under SIP ------------------------------------


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.parametrize("qop", ["auth", None])
def test_register_round_trip(algorithm: Algorithm, qop: str | None) -> None:
    nonces = NonceIssuer(SECRET, lifetime=300.0)
    stored_ha1 = ha1(algorithm, "1001", REALM, "s3cret")
    challenge = format_challenge(
        REALM, nonces.issue(now=10.0), algorithm, opaque="op-1", qop=qop
    )
    assert choose_challenge([challenge]) == challenge

    answer = answer_challenge(
        challenge,
        username="1001",
        password="s3cret",
        method="REGISTER",
        uri=REGISTRAR_URI,
        cnonce="c0ffee",
        nc=1,
    )
    credentials = parse_credentials(answer)
    assert (credentials.username, credentials.realm, credentials.uri) == ("1001", REALM, REGISTRAR_URI)
    assert credentials.algorithm is algorithm
    assert credentials.opaque == "op-1"
    assert credentials.qop == qop
    assert credentials.nc == (1 if qop else None)
    assert credentials.cnonce == ("c0ffee" if qop else None)

    assert nonces.check(credentials.nonce, credentials.nc, now=11.0) is NonceStatus.VALID
    assert verify(credentials, stored_ha1, "REGISTER")
    assert not verify(credentials, stored_ha1, "INVITE")
    assert not verify(credentials, ha1(algorithm, "1001", REALM, "s3cre7"), "REGISTER")
    assert nonces.accept(credentials.nonce, credentials.nc, now=11.0) is NonceStatus.VALID
    # The same request again is a replay, with or without qop.
    assert nonces.check(credentials.nonce, credentials.nc, now=12.0) is NonceStatus.REPLAY


def test_qop_auth_nonce_reused_with_increasing_nc() -> None:
    nonces = NonceIssuer(SECRET, lifetime=300.0)
    stored_ha1 = ha1(Algorithm.SHA256, "1001", REALM, "pw")
    challenge = format_challenge(REALM, nonces.issue(now=0.0), Algorithm.SHA256)
    for nc in (1, 2, 3, 7):
        answer = answer_challenge(
            challenge, username="1001", password="pw", method="INVITE",
            uri="sip:2002@pbx.example.com", cnonce=f"cn{nc}", nc=nc,
        )
        credentials = parse_credentials(answer)
        assert credentials.nc == nc
        assert nonces.check(credentials.nonce, credentials.nc, now=float(nc)) is NonceStatus.VALID
        assert verify(credentials, stored_ha1, "INVITE")
        assert nonces.accept(credentials.nonce, credentials.nc, now=float(nc)) is NonceStatus.VALID


def test_python_urllib_digest_client_verifies_against_our_server() -> None:
    """An independent implementation (the standard library's HTTP client)
    answers our challenge; our server side must accept it."""
    nonces = NonceIssuer(SECRET, lifetime=60.0)
    nonce = nonces.issue(now=0.0)
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, "http://pbx.example.com/", "alice", "wonderland")
    handler = urllib.request.HTTPDigestAuthHandler(passwords)
    request = urllib.request.Request("http://pbx.example.com/dir/index.html")
    _, params = parse_auth_header(format_challenge(REALM, nonce, Algorithm.MD5, opaque="xyz"))
    value = handler.get_authorization(request, params)
    assert value is not None
    credentials = parse_credentials("Digest " + value)
    assert credentials.qop == "auth" and credentials.nc == 1
    assert nonces.check(credentials.nonce, credentials.nc, now=1.0) is NonceStatus.VALID
    assert verify(credentials, ha1(Algorithm.MD5, "alice", REALM, "wonderland"), "GET")
    assert not verify(credentials, ha1(Algorithm.MD5, "alice", REALM, "Wonderland"), "GET")


def test_uppercase_nc_is_hashed_as_sent() -> None:
    stored_ha1 = ha1(Algorithm.MD5, "u", "r", "p")
    response = response_for(Algorithm.MD5, stored_ha1, "n", "REGISTER", "sip:r", "auth", "0000000A", "c")
    credentials = parse_credentials(
        f'Digest username="u", realm="r", nonce="n", uri="sip:r", response="{response.upper()}",'
        ' qop=auth, nc=0000000A, cnonce="c"'
    )
    assert credentials.nc == 10 and credentials.response == response
    assert verify(credentials, stored_ha1, "REGISTER")


# --- Nonce life cycle ---------------------------------------------------------------


def test_nonce_lifecycle() -> None:
    nonces = NonceIssuer(SECRET, lifetime=30.0)
    nonce = nonces.issue(now=100.0)
    assert len(nonce) == 64
    assert nonces.check(nonce, 1, now=100.0) is NonceStatus.VALID
    assert nonces.check(nonce, 1, now=130.0) is NonceStatus.VALID  # lifetime inclusive
    assert nonces.check(nonce, 1, now=130.002) is NonceStatus.STALE
    assert nonces.accept(nonce, 1, now=130.002) is NonceStatus.STALE
    assert nonces.tracked == 0

    # Ours, but issued in the future: another clock. STALE, not INVALID.
    assert nonces.check(nonce, 1, now=99.0) is NonceStatus.STALE
    assert NonceIssuer(SECRET, 30.0, clock_skew=2.0).check(nonce, 1, now=99.0) is NonceStatus.VALID


@pytest.mark.parametrize("position", [0, 7, 15, 16, 40, 63])
def test_tampered_nonce_is_invalid(position: int) -> None:
    nonces = NonceIssuer(SECRET, lifetime=30.0)
    nonce = nonces.issue(now=5.0)
    flipped = "0" if nonce[position] != "0" else "1"
    tampered = nonce[:position] + flipped + nonce[position + 1 :]
    assert nonces.check(tampered, 1, now=5.0) is NonceStatus.INVALID
    assert nonces.accept(tampered, 1, now=5.0) is NonceStatus.INVALID
    assert nonces.tracked == 0


@pytest.mark.parametrize(
    "nonce",
    ["", "x", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "g" * 64, "0" * 63, "0" * 65, "é" * 64],
)
def test_foreign_nonce_is_invalid(nonce: str) -> None:
    assert NonceIssuer(SECRET, lifetime=30.0).check(nonce, 1, now=0.0) is NonceStatus.INVALID


def test_nonce_spelling_is_canonical() -> None:
    nonces = NonceIssuer(SECRET, lifetime=30.0)
    nonce = nonces.issue(now=0.0)
    # Same bytes written differently must not dodge the replay table.
    assert nonces.check(nonce.upper(), 1, now=0.0) is NonceStatus.INVALID
    assert nonces.check(nonce[:32] + " " + nonce[32:63], 1, now=0.0) is NonceStatus.INVALID


def test_nonce_shared_between_nodes_by_secret() -> None:
    node_a = NonceIssuer(SECRET, lifetime=30.0)
    node_b = NonceIssuer(SECRET, lifetime=30.0)
    stranger = NonceIssuer(b"another secret of 32 bytes......", lifetime=30.0)
    nonce = node_a.issue(now=1000.0)
    assert node_b.check(nonce, 1, now=1001.0) is NonceStatus.VALID
    assert stranger.check(nonce, 1, now=1001.0) is NonceStatus.INVALID
    assert len({node_a.issue(now=1000.0) for _ in range(100)} | {node_b.issue(now=1000.0) for _ in range(100)}) == 200


def test_replay_when_nc_repeats_or_decreases() -> None:
    nonces = NonceIssuer(SECRET, lifetime=30.0)
    nonce = nonces.issue(now=0.0)
    assert nonces.accept(nonce, 3, now=1.0) is NonceStatus.VALID
    assert nonces.check(nonce, 3, now=2.0) is NonceStatus.REPLAY
    assert nonces.check(nonce, 2, now=2.0) is NonceStatus.REPLAY
    assert nonces.accept(nonce, 1, now=2.0) is NonceStatus.REPLAY
    assert nonces.check(nonce, None, now=2.0) is NonceStatus.REPLAY
    assert nonces.accept(nonce, 4, now=2.0) is NonceStatus.VALID
    assert nonces.check(nonce, 4, now=3.0) is NonceStatus.REPLAY
    assert nonces.check(nonce, 0xFFFFFFFF, now=3.0) is NonceStatus.VALID
    assert nonces.check(nonces.issue(now=3.0), 0, now=3.0) is NonceStatus.REPLAY  # nc starts at 1


def test_wrong_response_does_not_consume_nc() -> None:
    nonces = NonceIssuer(SECRET, lifetime=30.0)
    stored_ha1 = ha1(Algorithm.MD5, "1001", REALM, "right")
    challenge = format_challenge(REALM, nonces.issue(now=0.0), Algorithm.MD5)

    def attempt(password: str, nc: int) -> bool:
        credentials = parse_credentials(answer_challenge(
            challenge, username="1001", password=password, method="REGISTER",
            uri=REGISTRAR_URI, cnonce="abc", nc=nc,
        ))
        if nonces.check(credentials.nonce, credentials.nc, now=1.0) is not NonceStatus.VALID:
            return False
        if not verify(credentials, stored_ha1, "REGISTER"):
            return False
        return nonces.accept(credentials.nonce, credentials.nc, now=1.0) is NonceStatus.VALID

    assert not attempt("wrong", 1)
    assert nonces.tracked == 0
    assert attempt("right", 1)  # nc 1 still available after the failure
    assert not attempt("right", 1)  # now it is spent


def test_nonce_without_qop_is_accepted_once() -> None:
    nonces = NonceIssuer(SECRET, lifetime=30.0)
    nonce = nonces.issue(now=0.0)
    assert nonces.check(nonce, None, now=1.0) is NonceStatus.VALID
    assert nonces.check(nonce, None, now=1.0) is NonceStatus.VALID  # check alone records nothing
    assert nonces.accept(nonce, None, now=1.0) is NonceStatus.VALID
    assert nonces.check(nonce, None, now=2.0) is NonceStatus.REPLAY
    assert nonces.check(nonce, 0xFFFFFFFF, now=2.0) is NonceStatus.REPLAY


def test_full_table_evicts_oldest_and_evicted_nonce_answers_stale() -> None:
    nonces = NonceIssuer(SECRET, lifetime=300.0, max_tracked=3)
    issued = [nonces.issue(now=float(t)) for t in range(6)]
    for t, nonce in enumerate(issued[:4]):
        assert nonces.accept(nonce, 1, now=10.0 + t) is NonceStatus.VALID
        assert nonces.tracked == min(t + 1, 3)
    # issued[0] was evicted: it cannot be replayed, the phone must get a new one.
    assert nonces.check(issued[0], 1, now=20.0) is NonceStatus.STALE
    assert nonces.check(issued[0], 2, now=20.0) is NonceStatus.STALE
    # Still tracked ones keep their replay protection.
    for nonce in issued[1:4]:
        assert nonces.check(nonce, 1, now=20.0) is NonceStatus.REPLAY
        assert nonces.check(nonce, 2, now=20.0) is NonceStatus.VALID
    # Unused nonces issued after the evicted one are unaffected.
    assert nonces.check(issued[5], 1, now=20.0) is NonceStatus.VALID
    assert nonces.accept(issued[5], 1, now=20.0) is NonceStatus.VALID
    assert nonces.tracked == 3


def test_expired_entries_are_dropped_lazily_on_issue() -> None:
    nonces = NonceIssuer(SECRET, lifetime=10.0)
    used = [nonces.issue(now=0.0) for _ in range(40)]
    for nonce in used:
        nonces.accept(nonce, 1, now=1.0)
    assert nonces.tracked == 40
    nonces.issue(now=5.0)  # nothing expired yet
    assert nonces.tracked == 40
    while nonces.tracked:  # amortised: a bounded batch per call
        before = nonces.tracked
        nonces.issue(now=11.0)
        assert 0 < before - nonces.tracked <= 16
    # Expired and dropped: still answers STALE, never VALID.
    assert nonces.check(used[0], 2, now=11.0) is NonceStatus.STALE


def test_dropped_entry_stays_unusable_if_the_clock_steps_back() -> None:
    """Wall clocks can step back (NTP); a nonce whose entry was dropped as
    expired must not become replayable again."""
    nonces = NonceIssuer(SECRET, lifetime=10.0)
    nonce = nonces.issue(now=0.0)
    assert nonces.accept(nonce, 1, now=1.0) is NonceStatus.VALID
    nonces.issue(now=10.5)  # drops the expired entry
    assert nonces.tracked == 0
    assert nonces.check(nonce, 1, now=9.0) is NonceStatus.STALE
    assert nonces.check(nonces.issue(now=9.0), 1, now=9.0) is NonceStatus.VALID


def test_nonce_issuer_constructor_checks_and_repr_has_no_secret() -> None:
    with pytest.raises(ValueError):
        NonceIssuer(b"short", lifetime=10.0)
    with pytest.raises(ValueError):
        NonceIssuer(SECRET, lifetime=0.0)
    with pytest.raises(ValueError):
        NonceIssuer(SECRET, lifetime=10.0, max_tracked=0)
    issuer = NonceIssuer(SECRET, lifetime=10.0)
    assert SECRET.decode() not in repr(issuer) and SECRET.hex() not in repr(issuer)
    assert issuer.lifetime == 10.0


# --- Header parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('Digest realm="a"', ("Digest", {"realm": "a"})),
        ("digest REALM=a", ("digest", {"realm": "a"})),
        ('  Digest  realm = "a" ,nonce="b"  ', ("Digest", {"realm": "a", "nonce": "b"})),
        ('Digest realm="a, b", nonce="c=d"', ("Digest", {"realm": "a, b", "nonce": "c=d"})),
        (r'Digest realm="say \"hi\" \\ bye"', ("Digest", {"realm": 'say "hi" \\ bye'})),
        ('Digest realm=""', ("Digest", {"realm": ""})),
        ('Digest\r\n realm="a",\r\n\tnonce="b"', ("Digest", {"realm": "a", "nonce": "b"})),
        ('Digest realm="caf\u00e9 \u6771\u4eac"', ("Digest", {"realm": "caf\u00e9 \u6771\u4eac"})),
        ("Digest algorithm=SHA-256,qop=auth", ("Digest", {"algorithm": "SHA-256", "qop": "auth"})),
    ],
)
def test_parse_auth_header_accepts(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_auth_header(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        "Digest ",
        'Digestrealm="a"',
        'Digest realm="a",',
        'Digest realm="a",,nonce="b"',
        'Digest realm="a" nonce="b"',
        "Digest realm",
        "Digest realm=",
        'Digest realm="unterminated',
        'Digest realm="a", REALM="b"',
        'Digest realm="a\r\nInjected: header"',
        'Digest realm="a\x00b"',
        "Digest realm=a b",
        'Digest realm="a"\r\n',
        '"Digest" realm="a"',
    ],
)
def test_parse_auth_header_rejects(value: str) -> None:
    with pytest.raises(DigestError):
        parse_auth_header(value)


def _credentials_header(**overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "username": '"1001"',
        "realm": f'"{REALM}"',
        "nonce": '"abc"',
        "uri": f'"{REGISTRAR_URI}"',
        "response": '"' + "0" * 32 + '"',
        "qop": "auth",
        "nc": "00000001",
        "cnonce": '"xyz"',
    }
    params.update(overrides)
    return "Digest " + ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"username": None}, DigestError),
        ({"realm": None}, DigestError),
        ({"nonce": None}, DigestError),
        ({"uri": None}, DigestError),
        ({"response": None}, DigestError),
        ({"nc": None}, DigestError),
        ({"cnonce": None}, DigestError),
        ({"nc": "1"}, DigestError),
        ({"nc": "0000000g"}, DigestError),
        ({"nc": "000000001"}, DigestError),
        ({"response": '"' + "0" * 31 + '"'}, DigestError),
        ({"response": '"' + "z" * 32 + '"'}, DigestError),
        ({"algorithm": "SHA-256"}, DigestError),  # 32 hex digits is an MD5 digest
        ({"algorithm": "MD5-sess"}, UnsupportedDigest),
        ({"algorithm": "SHA-512-256"}, UnsupportedDigest),
        ({"algorithm": "ROT13"}, UnsupportedDigest),
        ({"qop": "auth-int"}, UnsupportedDigest),
        ({"userhash": "true"}, UnsupportedDigest),
    ],
)
def test_parse_credentials_rejects(overrides: dict[str, str | None], error: type[DigestError]) -> None:
    with pytest.raises(error):
        parse_credentials(_credentials_header(**overrides))


def test_parse_credentials_other_scheme() -> None:
    with pytest.raises(DigestError):
        parse_credentials('Basic username="a", realm="b", nonce="c", uri="d", response="e"')


def test_parse_credentials_tolerances() -> None:
    base = parse_credentials(_credentials_header())
    assert base.algorithm is Algorithm.MD5 and base.nc == 1 and base.opaque is None
    # Quoted where the grammar wants tokens, odd case, unknown parameters ignored.
    loose = parse_credentials(
        _credentials_header(algorithm='"md5"', qop='"Auth"', nc='"00000001"', extension='"ignored"')
    )
    assert loose.algorithm is Algorithm.MD5 and loose.qop == "Auth" and loose.nc == 1
    sha = parse_credentials(_credentials_header(algorithm="sha-256", response='"' + "A" * 64 + '"'))
    assert sha.algorithm is Algorithm.SHA256 and sha.response == "a" * 64
    # RFC 2069 form: nc/cnonce sent without qop are ignored.
    old = parse_credentials(_credentials_header(qop=None))
    assert (old.qop, old.nc, old.cnonce) == (None, None, None)


def test_parse_challenge() -> None:
    challenge = parse_challenge(RFC7616_CHALLENGES[0] + ", stale=TRUE, domain=\"sip:x\"")
    assert challenge == Challenge(
        realm="http-auth@example.org",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm=Algorithm.SHA256,
        qop_options=("auth", "auth-int"),
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
        stale=True,
    )
    assert parse_challenge('Digest realm="r", nonce="n"').qop_options == ()
    for bad in ('Digest nonce="n"', 'Digest realm="r"', 'Basic realm="r", nonce="n"'):
        with pytest.raises(DigestError):
            parse_challenge(bad)


# --- Challenge formatting ----------------------------------------------------------


def test_format_challenge_text() -> None:
    assert format_challenge(REALM, "abc", Algorithm.MD5) == (
        'Digest realm="pbx.example.com", nonce="abc", algorithm=MD5, qop="auth"'
    )
    assert format_challenge(REALM, "abc", Algorithm.SHA256, stale=True, opaque="o", qop=None) == (
        'Digest realm="pbx.example.com", nonce="abc", opaque="o", algorithm=SHA-256, stale=true'
    )


def test_format_challenge_escapes_and_refuses_control_characters() -> None:
    realm = 'the "quoted" \\ realm'
    assert parse_challenge(format_challenge(realm, "n", Algorithm.MD5)).realm == realm
    with pytest.raises(DigestError):
        format_challenge("bad\r\nVia: injected", "n", Algorithm.MD5)


@given(realm=any_text, opaque=any_text)
def test_fuzz_format_challenge_parses_back_or_refuses(realm: str, opaque: str) -> None:
    try:
        value = format_challenge(realm, "n", Algorithm.SHA256, opaque=opaque)
    except DigestError:
        return
    challenge = parse_challenge(value)
    assert (challenge.realm, challenge.opaque, challenge.nonce) == (realm, opaque, "n")


def test_undecodable_bytes_hash_as_the_original_bytes() -> None:
    """A SIP parser decoding with errors="surrogateescape" hands us U+DCxx for
    bytes that are not UTF-8 (say a Latin-1 username); they hash as sent."""
    username = b"Jos\xe9".decode("utf-8", "surrogateescape")
    credentials = parse_credentials(_credentials_header(username=f'"{username}"'))
    assert credentials.username == username
    assert ha1(Algorithm.MD5, username, "r", "p") == hashlib.md5(b"Jos\xe9:r:p").hexdigest()


def test_answer_challenge_argument_errors() -> None:
    challenge = format_challenge(REALM, "n", Algorithm.MD5)
    for nc in (0, -1, 1 << 32):
        with pytest.raises(DigestError):
            answer_challenge(challenge, username="u", password="p", method="REGISTER",
                             uri=REGISTRAR_URI, cnonce="c", nc=nc)
    with pytest.raises(DigestError):
        answer_challenge(challenge, username="u\r\nX: y", password="p", method="REGISTER",
                         uri=REGISTRAR_URI, cnonce="c", nc=1)
    with pytest.raises(UnsupportedDigest):
        answer_challenge('Digest realm="r", nonce="n", qop="auth-int"', username="u",
                         password="p", method="REGISTER", uri=REGISTRAR_URI, cnonce="c", nc=1)


def test_response_for_refuses_incomplete_qop_auth() -> None:
    with pytest.raises(DigestError):
        response_for(Algorithm.MD5, "0" * 32, "n", "REGISTER", "sip:x", "auth", None, "c")
    with pytest.raises(UnsupportedDigest):
        response_for(Algorithm.MD5, "0" * 32, "n", "REGISTER", "sip:x", "auth-int", "00000001", "c")


def test_verify_never_raises_on_hand_built_credentials() -> None:
    credentials = Credentials(
        username="u", realm="r", nonce="n", uri="sip:r", response="é" * 32,
        algorithm=Algorithm.MD5, qop="auth-int", nc=1, cnonce="c", opaque=None,
    )
    assert not verify(credentials, "0" * 32, "REGISTER")
    hand_built = Credentials(
        username="u", realm="r", nonce="n", uri="sip:r",
        response=response_for(Algorithm.MD5, "0" * 32, "n", "REGISTER", "sip:r", "auth", "0000002a", "c"),
        algorithm=Algorithm.MD5, qop="auth", nc=42, cnonce="c", opaque=None,
    )
    assert verify(hand_built, "0" * 32, "REGISTER")


# --- Secrets never leak into errors ---------------------------------------------------

MARKER = "Sekr1tMarker"


@pytest.mark.parametrize(
    "value",
    [
        f'Digest username="{MARKER}", realm="r"',
        f'Digest username="u", realm="r", nonce="n", uri="u", response="{MARKER}"',
        f'Digest username="u", realm="r", nonce="n", uri="u", response="{"0" * 32}", algorithm={MARKER}',
        f'Digest username="u", realm="r", nonce="n", uri="u", response="{"0" * 32}", qop={MARKER}',
        f'Digest username="u", realm="r", nonce="n", uri="u", response="{"0" * 32}", qop=auth, nc={MARKER}, cnonce="c"',
        f'Digest username="{MARKER}, realm="r"',
        f"{MARKER} {MARKER}={MARKER}, {MARKER}",
        f'Digest realm="{MARKER}", realm="{MARKER}"',
    ],
)
def test_error_messages_do_not_echo_values(value: str) -> None:
    with pytest.raises(DigestError) as caught:
        parse_credentials(value)
    assert MARKER not in str(caught.value)
    assert MARKER.lower() not in str(caught.value).lower()


def test_client_errors_do_not_echo_password() -> None:
    for challenge in ('Digest realm="r", nonce="n", qop="auth-int"', 'Digest realm="r", nonce="n", qop="auth"'):
        with pytest.raises(DigestError) as caught:
            answer_challenge(challenge, username="u", password=MARKER, method="REGISTER",
                             uri=REGISTRAR_URI, cnonce="c\n", nc=1)
        assert MARKER not in str(caught.value)
    with pytest.raises(DigestError) as caught:
        ha1(Algorithm.MD5, "u", "r", MARKER + "\ud800")
    assert MARKER not in str(caught.value)


# --- Fuzzing --------------------------------------------------------------------------

@given(st.one_of(any_text, header_like))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_parsers_raise_only_digest_error(value: str) -> None:
    for parse in (parse_auth_header, parse_credentials, parse_challenge):
        try:
            parse(value)
        except DigestError:
            pass
    try:
        answer_challenge(value, username="u", password="p", method="REGISTER",
                         uri=REGISTRAR_URI, cnonce="c", nc=1)
    except DigestError:
        pass
    chosen = choose_challenge([value])
    assert chosen is None or chosen == value


@pytest.mark.parametrize("valid", [RFC2617_AUTHORIZATION, *RFC7616_CHALLENGES])
def test_every_truncation_parses_or_raises_digest_error(valid: str) -> None:
    for end in range(len(valid) + 1):
        try:
            scheme, params = parse_auth_header(valid[:end])
        except DigestError:
            continue
        assert scheme == "Digest" and params


@given(
    scheme=token,
    params=st.dictionaries(token.map(str.lower), st.tuples(st.booleans(), quotable, token), min_size=1, max_size=8),
    gaps=st.lists(space, min_size=40, max_size=40),
)
def test_fuzz_built_headers_round_trip(
    scheme: str, params: dict[str, tuple[bool, str, str]], gaps: list[str]
) -> None:
    parts = []
    expected = {}
    for i, (name, (quoted, text, bare)) in enumerate(params.items()):
        if quoted:
            escaped = text.replace("\\", "\\\\").replace('"', '\\"')
            rendered, expected[name] = f'"{escaped}"', text
        else:
            rendered, expected[name] = bare, bare
        parts.append(f"{gaps[i]}{name.upper() if i % 2 else name}{gaps[i + 10]}={gaps[i + 20]}{rendered}{gaps[i + 30]}")
    value = f"{scheme} " + ",".join(parts)
    assert parse_auth_header(value) == (scheme, expected)


@given(
    algorithm=st.sampled_from(list(Algorithm)),
    username=quotable,
    realm=quotable,
    password=any_text.filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s)),
    uri=quotable,
    cnonce=quotable,
    nc=st.integers(1, 0xFFFFFFFF),
    qop=st.sampled_from(["auth", None]),
)
def test_fuzz_client_server_round_trip(
    algorithm: Algorithm, username: str, realm: str, password: str, uri: str,
    cnonce: str, nc: int, qop: str | None,
) -> None:
    challenge = format_challenge(realm, "nonce-1", algorithm, qop=qop)
    credentials = parse_credentials(answer_challenge(
        challenge, username=username, password=password, method="REGISTER",
        uri=uri, cnonce=cnonce, nc=nc,
    ))
    assert (credentials.username, credentials.realm, credentials.uri) == (username, realm, uri)
    assert verify(credentials, ha1(algorithm, username, realm, password), "REGISTER")
    assert not verify(credentials, ha1(algorithm, username, realm, password + "x"), "REGISTER")


def test_a_nonce_bound_to_an_address_is_foreign_anywhere_else() -> None:
    issuer = NonceIssuer(b"k" * 32, lifetime=300)
    nonce = issuer.issue(10.0, "192.0.2.10")
    assert issuer.check(nonce, 1, 11.0, "192.0.2.10") is NonceStatus.VALID
    assert issuer.check(nonce, 1, 11.0, "198.51.100.7") is NonceStatus.INVALID
    assert issuer.check(nonce, 1, 11.0) is NonceStatus.INVALID  # nor unbound
    assert issuer.accept(nonce, 1, 11.0, "198.51.100.7") is NonceStatus.INVALID
    assert issuer.accept(nonce, 1, 11.0, "192.0.2.10") is NonceStatus.VALID
    unbound = issuer.issue(10.0)
    assert issuer.check(unbound, 1, 11.0) is NonceStatus.VALID
    assert issuer.check(unbound, 1, 11.0, "192.0.2.10") is NonceStatus.INVALID
