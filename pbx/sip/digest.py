"""HTTP Digest authentication for SIP, both sides of it.

Sources: RFC 3261 §22.4 (how SIP uses Digest) and §25 (its grammar), RFC 2617
and RFC 7616 (the computations, nonce count, stale), RFC 8760 (SHA-256 in
SIP, several challenges in order of preference).

Rules this module keeps:

* Pure: no I/O, no clock reads, no logging, no randomness on the hot path.
  Time comes in as ``now`` (seconds, any epoch the caller uses consistently);
  the client's cnonce comes in from the caller.
* Bad input raises `DigestError` (a `ValueError`) and nothing else. Error
  messages name the parameter at fault but never repeat header values,
  passwords or HA1 values, so they are safe to log.
* Only ``qop=auth`` and the RFC 2069 form (no qop) are implemented;
  ``auth-int``, the ``-sess`` algorithms and ``userhash`` raise
  `UnsupportedDigest`, which a server answers with a fresh challenge.

A registrar uses it like this (``nonces`` is one `NonceIssuer` per process)::

    try:
        credentials = parse_credentials(authorization)
    except UnsupportedDigest:
        ...                                  # 401 with a fresh challenge
    except DigestError:
        ...                                  # 400 Bad Request
    status = nonces.check(credentials.nonce, credentials.nc, now)
    if status is NonceStatus.STALE:
        ...                                  # 401, format_challenge(..., stale=True)
    elif status is not NonceStatus.VALID:
        ...                                  # 401, fresh challenge
    elif credentials.realm != realm or not verify(credentials, stored_ha1, method):
        ...                                  # 403 (the nc is not consumed)
    else:
        nonces.accept(credentials.nonce, credentials.nc, now)   # consume the nc
        ...                                  # 200 OK

The caller also compares ``credentials.uri`` with the Request-URI
(RFC 7616 §3.4.6) and ``credentials.username`` with the account it looks up.
"""

import enum
import functools
import hashlib
import hmac
import math
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = [
    "Algorithm",
    "Challenge",
    "Credentials",
    "DigestError",
    "NonceIssuer",
    "NonceStatus",
    "UnsupportedDigest",
    "answer_challenge",
    "choose_challenge",
    "format_challenge",
    "ha1",
    "parse_auth_header",
    "parse_challenge",
    "parse_credentials",
    "response_for",
    "verify",
]


class DigestError(ValueError):
    """An Authorization/WWW-Authenticate value that cannot be used.

    The message names what is wrong (a parameter name, an offset), never the
    value itself, so it can be logged without leaking credentials.
    """


class UnsupportedDigest(DigestError):
    """Well-formed, but asks for something this module does not implement
    (an algorithm, ``qop=auth-int``, ``userhash``). A server answers it with a
    fresh challenge listing what it does support; a client gives up on it."""


class Algorithm(enum.Enum):
    """Digest algorithms usable in SIP (RFC 8760 §2.1). The value is the
    token as written in headers."""

    MD5 = "MD5"
    SHA256 = "SHA-256"

    @classmethod
    def parse(cls, token: str) -> "Algorithm":
        """The algorithm named by ``token`` (case-insensitive, RFC 7616 §3.3).

        Raises `UnsupportedDigest` for anything else, including the
        ``-sess`` variants.
        """
        algorithm = _ALGORITHM_BY_TOKEN.get(token.lower())
        if algorithm is None:
            known = _KNOWN_UNSUPPORTED.get(token.lower())
            if known is not None:
                raise UnsupportedDigest(f"algorithm {known} is not supported")
            raise UnsupportedDigest("unsupported digest algorithm")
        return algorithm


_ALGORITHM_BY_TOKEN: Final[dict[str, Algorithm]] = {a.value.lower(): a for a in Algorithm}
# Names we recognise but do not implement; safe to echo since they are ours.
_KNOWN_UNSUPPORTED: Final[dict[str, str]] = {
    name.lower(): name
    for name in ("MD5-sess", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess")
}


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HEX_DIGEST: Final[dict[Algorithm, Callable[[bytes], str]]] = {
    Algorithm.MD5: _md5_hex,
    Algorithm.SHA256: _sha256_hex,
}
# request-digest: 32 hex digits for MD5 (RFC 3261 §25), 64 for SHA-256
# (RFC 8760 §2.2 widens the grammar to *LHEX). Upper case is tolerated on
# input and folded to lower case.
_RESPONSE_RE: Final[dict[Algorithm, re.Pattern[str]]] = {
    Algorithm.MD5: re.compile(r"[0-9a-fA-F]{32}"),
    Algorithm.SHA256: re.compile(r"[0-9a-fA-F]{64}"),
}
_NC_RE: Final = re.compile(r"[0-9a-fA-F]{8}")  # nc-value = 8LHEX (RFC 3261 §25)

# --- Header grammar (RFC 3261 §25) -------------------------------------------
#
#   challenge / credentials = auth-scheme LWS param *(COMMA param)
#   auth-param   = auth-param-name EQUAL ( token / quoted-string )
#   COMMA, EQUAL = SWS "," SWS / SWS "=" SWS
#   LWS = [*WSP CRLF] 1*WSP          SWS = [LWS]
#   quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE
#
# Each alternative below starts with a different character, so possessive
# quantifiers (*+, ++) change nothing but the speed: no backtracking into
# runs of whitespace or qdtext (twice as fast as plain ones here). Line folds
# (CRLF or LF followed by a space or tab) count as whitespace wherever the
# grammar allows LWS.
_TOKEN: Final = r"[A-Za-z0-9\-.!%*_+`'~]++"
_SWS: Final = r"(?:[ \t]++|\r?\n[ \t])*+"
_LWS: Final = r"(?:[ \t]++|\r?\n[ \t])++"
# qdtext: anything but DQUOTE, backslash and control characters (HTAB and folds
# allowed). Lone surrogates are refused except U+DC80..U+DCFF, which is how
# Python's "surrogateescape" carries undecodable bytes; those encode back to
# the original bytes below, so every parsed value can be hashed.
_QDTEXT: Final = r'[^"\\\x00-\x08\x0a-\x1f\x7f\ud800-\udc7f\udd00-\udfff]++'
# quoted-pair: backslash and any character but CR and LF (RFC 3261 §25 lists
# only ASCII there; a non-ASCII one is taken as itself).
_QUOTED_PAIR: Final = r"\\[^\r\n\ud800-\udc7f\udd00-\udfff]"
_SCHEME_RE: Final = re.compile(_SWS + "(" + _TOKEN + ")" + _LWS)
_PARAM_RE: Final = re.compile(
    _SWS
    + "(" + _TOKEN + ")"
    + _SWS + "=" + _SWS
    + '(?:"((?:' + _QDTEXT + "|" + _QUOTED_PAIR + r"|\r?\n[ \t])*+)\"|(" + _TOKEN + "))"
    + _SWS
    + r"(?:(,)|\Z)"
)
# `_PARAM_RE` for a value without a line feed, which has no fold: there SWS
# is only spaces and tabs, and a quoted string is qdtext runs between
# quoted-pairs (no qdtext holds a backslash). Same matches, same groups, at
# a third less work (header values come unfolded from the parser).
_BLANKS: Final = r"[ \t]*+"
_PARAM_NO_FOLD_RE: Final = re.compile(
    _BLANKS
    + "(" + _TOKEN + ")"
    + _BLANKS + "=" + _BLANKS
    + '(?:"(' + _QDTEXT.replace("++", "*+") + "(?:" + _QUOTED_PAIR + _QDTEXT.replace("++", "*+") + ")*+"
    + ')"|(' + _TOKEN + "))"
    + _BLANKS
    + r"(?:(,)|\Z)"
)
_UNESCAPE_RE: Final = re.compile(r"\\(.)", re.DOTALL)
# What must not appear in a value we put between quotes ourselves: control
# characters (CR/LF would let a value inject header lines) and the lone
# surrogates the parser refuses, so whatever we write parses back.
_UNQUOTABLE_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udc7f\udd00-\udfff]")
_ESCAPE_RE: Final = re.compile(r'["\\]')


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split a challenge or credentials value into its scheme and parameters.

    Works for Authorization, Proxy-Authorization, WWW-Authenticate and
    Proxy-Authenticate values (one challenge or credentials per value, as in
    SIP). Returns the scheme as written (compare it case-insensitively) and
    the parameters with lower-cased names; quoted values are unquoted and
    their backslash escapes resolved. Whether a value was quoted is not kept.

    Raises `DigestError` if the value does not follow the grammar, has no
    parameters, or names a parameter twice (RFC 3261 §7.3.1).
    """
    match = _SCHEME_RE.match(value)
    if match is None:
        raise DigestError("expected an auth scheme followed by parameters")
    scheme = match.group(1)
    params: dict[str, str] = {}
    position = match.end()
    param_match = (_PARAM_RE if "\n" in value else _PARAM_NO_FOLD_RE).match
    while True:
        match = param_match(value, position)
        if match is None:
            raise DigestError(f"malformed auth parameter at offset {position}")
        name, quoted, token, comma = match.groups()
        name = name.lower()
        if name in params:
            raise DigestError(f"parameter {name!r} appears twice")
        if quoted is None:
            params[name] = token
        elif "\\" in quoted:
            params[name] = _UNESCAPE_RE.sub(r"\1", quoted)
        else:
            params[name] = quoted
        if comma is None:
            return scheme, params
        position = match.end()


def _quote(name: str, text: str) -> str:
    """``text`` as a quoted-string; `name` is only for the error message."""
    if _UNQUOTABLE_RE.search(text) is not None:
        raise DigestError(f"{name} contains characters a quoted-string cannot carry")
    if '"' in text or "\\" in text:
        text = _ESCAPE_RE.sub(r"\\\g<0>", text)
    return f'"{text}"'


def _utf8(text: str) -> bytes:
    # RFC 7616 §3.4.4: strings are hashed as UTF-8. "surrogateescape" turns
    # bytes a decoder could not read back into those same bytes.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise DigestError("text to hash is not valid Unicode") from None


# --- Computations (RFC 2617 §3.2.2, RFC 7616 §3.4.1-3.4.3) --------------------


def ha1(algorithm: Algorithm, username: str, realm: str, password: str) -> str:
    """H(username ":" realm ":" password) as lower-case hex: what a server
    stores instead of the password (RFC 7616 §3.4.2, non-session form)."""
    return _HEX_DIGEST[algorithm](_utf8(f"{username}:{realm}:{password}"))


def response_for(
    algorithm: Algorithm,
    ha1_hex: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc_hex: str | None,
    cnonce: str | None,
) -> str:
    """The request-digest (the ``response`` parameter), lower-case hex.

    ``ha1_hex`` is `ha1`'s output. ``method`` is the SIP method of the
    request and ``uri`` the digest-uri as the client sent it (RFC 3261 §22.4).
    With ``qop`` None this is the RFC 2069 form KD(HA1, nonce:HA2); with
    ``qop="auth"`` it is KD(HA1, nonce:nc:cnonce:qop:HA2) over ``nc_hex``
    exactly as written (8 hex digits) and ``cnonce``.
    """
    hex_digest = _HEX_DIGEST[algorithm]
    ha2 = _ha2(algorithm, method, uri)
    if qop is None:
        return hex_digest(_utf8(f"{ha1_hex}:{nonce}:{ha2}"))
    if qop != "auth" and qop.lower() != "auth":
        raise UnsupportedDigest("only qop=auth is supported")
    if nc_hex is None or cnonce is None:
        raise DigestError("qop=auth needs nc and cnonce")
    return hex_digest(_utf8(f"{ha1_hex}:{nonce}:{nc_hex}:{cnonce}:{qop}:{ha2}"))


@functools.lru_cache(maxsize=256)
def _ha2(algorithm: Algorithm, method: str, uri: str) -> str:
    """H(method ":" uri): the same for every REGISTER a phone sends, so kept
    (an error, not cached, is raised again on every call)."""
    return _HEX_DIGEST[algorithm](_utf8(f"{method}:{uri}"))


# --- Server side ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """A parsed Digest Authorization / Proxy-Authorization value.

    ``response`` is lower-case hex. ``qop`` is as sent (only "auth" in any
    case gets this far); with ``qop`` None, ``nc`` and ``cnonce`` are None
    (the RFC 2069 form; values a client sent anyway are ignored).
    ``nc_value`` is the nonce count exactly as sent, since the response is
    computed over that text; `verify` falls back to ``f"{nc:08x}"`` when it
    is None (credentials built by hand).
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm
    qop: str | None
    nc: int | None
    cnonce: str | None
    opaque: str | None
    nc_value: str | None = field(default=None, repr=False)


_REQUIRED_CREDENTIALS: Final = ("username", "realm", "nonce", "uri", "response")


def parse_credentials(value: str) -> Credentials:
    """Parse a Digest Authorization or Proxy-Authorization value.

    Requires the Digest scheme and username, realm, nonce, uri and response
    (RFC 3261 §25 dig-resp); ``qop=auth`` also requires nc (8 hex digits)
    and cnonce (RFC 7616 §3.4). algorithm defaults to MD5. Unknown
    parameters are ignored (RFC 7616 §3.4).

    Raises `DigestError` when malformed, `UnsupportedDigest` for an
    algorithm, qop or userhash this module does not implement.
    """
    scheme, params = parse_auth_header(value)
    if scheme.lower() != "digest":
        raise DigestError("authorization scheme is not Digest")
    for name in _REQUIRED_CREDENTIALS:
        if name not in params:
            raise DigestError(f"digest parameter {name!r} is missing")
    algorithm_token = params.get("algorithm")
    algorithm = Algorithm.MD5 if algorithm_token is None else Algorithm.parse(algorithm_token)
    userhash = params.get("userhash")
    if userhash is not None and userhash.lower() == "true":
        # RFC 7616 §3.4.4: the username would be a hash we cannot look up.
        raise UnsupportedDigest("userhash is not supported")
    response = params["response"]
    if _RESPONSE_RE[algorithm].fullmatch(response) is None:
        raise DigestError(f"response is not a {algorithm.value} hex digest")
    qop = params.get("qop")
    nc: int | None = None
    nc_value: str | None = None
    cnonce: str | None = None
    if qop is not None:
        if qop.lower() != "auth":
            raise UnsupportedDigest("only qop=auth is supported")
        nc_value = params.get("nc")
        cnonce = params.get("cnonce")
        if nc_value is None or cnonce is None:
            raise DigestError("qop=auth needs nc and cnonce")
        if _NC_RE.fullmatch(nc_value) is None:
            raise DigestError("nc is not 8 hex digits")
        nc = int(nc_value, 16)
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response.lower(),
        algorithm=algorithm,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.get("opaque"),
        nc_value=nc_value,
    )


def verify(credentials: Credentials, ha1_hex: str, method: str) -> bool:
    """Whether ``credentials.response`` is right for ``ha1_hex`` and the
    request ``method``; compared in constant time (hmac.compare_digest).

    Checks the digest only: the nonce (`NonceIssuer`), realm, username and
    digest-uri are the caller's to check.
    """
    nc_hex = credentials.nc_value
    if nc_hex is None and credentials.nc is not None:
        nc_hex = f"{credentials.nc:08x}"
    try:
        expected = response_for(
            credentials.algorithm,
            ha1_hex,
            credentials.nonce,
            method,
            credentials.uri,
            credentials.qop,
            nc_hex,
            credentials.cnonce,
        )
    except DigestError:
        return False
    response = credentials.response
    # compare_digest refuses non-ASCII str; such a response cannot match.
    return response.isascii() and hmac.compare_digest(expected, response)


def format_challenge(
    realm: str,
    nonce: str,
    algorithm: Algorithm,
    *,
    stale: bool = False,
    opaque: str | None = None,
    qop: str | None = "auth",
) -> str:
    """A WWW-Authenticate / Proxy-Authenticate value (RFC 3261 §22.4):
    ``Digest realm="…", nonce="…", algorithm=MD5, qop="auth"``, plus
    ``opaque`` if given and ``stale=true`` when the client's nonce was only
    too old (RFC 7616 §3.3). ``qop=None`` leaves qop out (RFC 2069 form).

    To offer several algorithms, send one value per algorithm, most
    preferred first (RFC 8760 §2.3).
    """
    # Realm, nonce, opaque, qop: checked in this order, as they are written.
    before = _challenge_before_nonce(realm)
    quoted_nonce = _quote("nonce", nonce)
    return f"{before}{quoted_nonce}{_challenge_after_nonce(algorithm, stale, opaque, qop)}"


# What `format_challenge` writes around the nonce is the same for every
# challenge of a realm: made once. An error is not cached, so it is raised
# again on every call.
@functools.lru_cache(maxsize=16)
def _challenge_before_nonce(realm: str) -> str:
    return f"Digest realm={_quote('realm', realm)}, nonce="


@functools.lru_cache(maxsize=64)
def _challenge_after_nonce(algorithm: Algorithm, stale: bool, opaque: str | None, qop: str | None) -> str:
    parts = [""]
    if opaque is not None:
        parts.append(f"opaque={_quote('opaque', opaque)}")
    parts.append(f"algorithm={algorithm.value}")
    if qop is not None:
        parts.append(f"qop={_quote('qop', qop)}")
    if stale:
        parts.append("stale=true")
    return ", ".join(parts)


class NonceStatus(enum.Enum):
    """What `NonceIssuer.check` thinks of a nonce (and nonce count)."""

    VALID = "valid"
    #: Ours, but too old (or evicted from the replay table): answer a new
    #: challenge with stale=true so the client retries without asking its
    #: user (RFC 7616 §3.3).
    STALE = "stale"
    #: Not issued with our secret, or altered.
    INVALID = "invalid"
    #: nc not above the highest already accepted for this nonce, or a
    #: no-qop nonce used a second time (RFC 7616 §3.4.6, RFC 3261 §22.4).
    REPLAY = "replay"


# Highest-nc marker for a nonce used without qop: above every 8-hex-digit nc,
# so any further use of that nonce is a replay.
_USED_WITHOUT_QOP: Final = 1 << 32
# Expired entries dropped per issue()/accept(): bounds the work of one call
# while still removing entries faster than accept() adds them.
_PURGE_BATCH: Final = 16
_NONCE_RE: Final = re.compile(r"[0-9a-f]{64}")
_NONCE_MAC_CONTEXT: Final = b"pbx sip digest nonce v1\x00"
_INT64_MASK: Final = (1 << 64) - 1


class _MacState(Protocol):
    def copy(self) -> "_MacState": ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


class NonceIssuer:
    """Makes nonces and remembers, per nonce, the highest nonce count
    accepted, so a captured request cannot be replayed.

    A nonce is 64 lower-case hex digits: issue time (ms), a sequence number,
    and a 128-bit HMAC-SHA-256 over both under ``secret``. No state is kept
    for issued nonces, so unauthenticated traffic cannot fill any table;
    every node holding the same ``secret`` (and a shared clock, e.g. wall
    time) can validate the others' nonces, though replay tracking is per
    issuer.

    Replay table: nonce -> highest accepted nc, bounded by ``max_tracked``.
    Entries of expired nonces are dropped a few at a time in `issue` and
    `accept`; when full, the oldest entry is evicted and nonces issued no
    later than any dropped entry answer STALE unless still tracked, so an
    evicted nonce cannot be replayed (the client just retries with a new
    nonce).

    Two steps, so a wrong password does not consume a nonce count:
    `check` is read-only; `accept` checks again and records the nc, and is
    called only after `verify` succeeded.

    ``clock_skew`` is how far in the future a nonce's issue time may be
    (nodes whose clocks differ); 0 suits a single process.

    ``bound_to`` (optional, e.g. the client's address) goes into the MAC: a
    nonce issued for one binding is INVALID for any other. Bound to the
    source address, a nonce fetched from one address is useless in a
    request forged to come from another (as Kamailio's auth module does with
    its source-IP nonce check), so a spoofer cannot make failures count
    against someone else's address.
    """

    __slots__ = (
        "_secret",
        "_lifetime",
        "_max_tracked",
        "_clock_skew",
        "_sequence",
        "_tracked",
        "_forgotten_up_to",
        "_mac_base",
        "_verified",
    )

    def __init__(
        self,
        secret: bytes,
        lifetime: float,
        max_tracked: int = 200_000,
        *,
        clock_skew: float = 0.0,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if not lifetime > 0:
            raise ValueError("nonce lifetime must be positive")
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        if not clock_skew >= 0:
            raise ValueError("clock_skew must not be negative")
        self._secret = bytes(secret)
        self._lifetime = float(lifetime)
        self._max_tracked = max_tracked
        self._clock_skew = float(clock_skew)
        # Random start: two issuers sharing a secret do not repeat nonces.
        self._sequence = secrets.randbits(64)
        # nonce -> (issued_at, highest accepted nc); oldest first accepted first.
        self._tracked: OrderedDict[str, tuple[float, int]] = OrderedDict()
        # Every accepted nonce no longer in _tracked was issued at or before this.
        self._forgotten_up_to = -math.inf
        # HMAC state after key and context: each MAC copies it (same result
        # as hmac.digest(secret, context + payload), less set-up work).
        base = hmac.new(self._secret, _NONCE_MAC_CONTEXT, "sha256")
        # hmac.HMAC wraps OpenSSL's HMAC object in Python methods (copy,
        # update and digest each a Python call); where it has one, copy
        # that object itself: the same bytes, less work per nonce.
        self._mac_base: _MacState = getattr(base, "_hmac", None) or base
        # The last nonce whose MAC checked out, and its issue time: `accept`
        # follows `check` for the same nonce, which need not be verified twice.
        self._verified: tuple[str, float, str] | None = None

    def __repr__(self) -> str:
        return f"NonceIssuer(lifetime={self._lifetime}, tracked={len(self._tracked)})"

    @property
    def lifetime(self) -> float:
        """Seconds a nonce stays valid after it was issued."""
        return self._lifetime

    @property
    def tracked(self) -> int:
        """How many nonces the replay table holds now."""
        return len(self._tracked)

    def issue(self, now: float, bound_to: str = "") -> str:
        """A fresh nonce issued at ``now`` (for ``bound_to``: see the class)."""
        self._purge(now)
        self._sequence = (self._sequence + 1) & _INT64_MASK
        payload = math.floor(now * 1000).to_bytes(8, "big", signed=True) + self._sequence.to_bytes(
            8, "big"
        )
        return (payload + self._mac(payload, bound_to)).hex()

    def check(self, nonce: str, nc: int | None, now: float, bound_to: str = "") -> NonceStatus:
        """Judge ``nonce`` with nonce count ``nc`` (None: no qop) at ``now``,
        presented by ``bound_to``, without recording anything."""
        return self._classify(nonce, nc, now, bound_to)[0]

    def accept(self, nonce: str, nc: int | None, now: float, bound_to: str = "") -> NonceStatus:
        """`check`, and if VALID record ``nc`` as the highest accepted for
        ``nonce`` (a no-qop nonce is then spent). Call once `verify` has
        passed. Returns the status."""
        status, issued_at = self._classify(nonce, nc, now, bound_to)
        if status is NonceStatus.VALID:
            tracked = self._tracked
            if nonce not in tracked:
                self._purge(now)
                if len(tracked) >= self._max_tracked:
                    self._forget(tracked.popitem(last=False)[1][0])
            tracked[nonce] = (issued_at, _USED_WITHOUT_QOP if nc is None else nc)
        return status

    def _mac(self, payload: bytes, bound_to: str = "") -> bytes:
        mac = self._mac_base.copy()
        mac.update(payload)
        if bound_to:
            # After the fixed-length payload, so no two bindings share a MAC input.
            mac.update(bound_to.encode())
        return mac.digest()[:16]

    def _classify(self, nonce: str, nc: int | None, now: float, bound_to: str = "") -> tuple[NonceStatus, float]:
        verified = self._verified
        if verified is not None and nonce == verified[0] and bound_to == verified[2]:
            issued_at = verified[1]
        else:
            if len(nonce) != 64 or _NONCE_RE.fullmatch(nonce) is None:
                return NonceStatus.INVALID, 0.0
            raw = bytes.fromhex(nonce)
            payload = raw[:16]
            if not hmac.compare_digest(raw[16:], self._mac(payload, bound_to)):
                return NonceStatus.INVALID, 0.0
            issued_at = int.from_bytes(payload[:8], "big", signed=True) / 1000
            self._verified = (nonce, issued_at, bound_to)
        age = now - issued_at
        if age > self._lifetime or age < -self._clock_skew:
            return NonceStatus.STALE, issued_at
        entry = self._tracked.get(nonce)
        if entry is None:
            if issued_at <= self._forgotten_up_to:
                # Possibly used and then dropped from the table: we no longer
                # know its nc, so make the client fetch a new nonce.
                return NonceStatus.STALE, issued_at
            highest = 0
        elif nc is None:
            return NonceStatus.REPLAY, issued_at
        else:
            highest = entry[1]
        if nc is None or nc > highest:
            return NonceStatus.VALID, issued_at
        return NonceStatus.REPLAY, issued_at

    def _forget(self, issued_at: float) -> None:
        if issued_at > self._forgotten_up_to:
            self._forgotten_up_to = issued_at

    def _purge(self, now: float) -> None:
        tracked = self._tracked
        lifetime = self._lifetime
        for _ in range(_PURGE_BATCH):
            if not tracked:
                return
            nonce = next(iter(tracked))
            issued_at = tracked[nonce][0]
            # Same test as _classify, so an entry goes only once its nonce
            # would answer STALE anyway.
            if not now - issued_at > lifetime:
                return
            del tracked[nonce]
            self._forget(issued_at)


# --- Client side -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed Digest WWW-Authenticate / Proxy-Authenticate value.

    ``qop_options`` lists the offered qop values lower-cased (empty: the
    RFC 2069 form). ``stale`` says the previous nonce was merely old, so
    the same password may be retried (RFC 7616 §3.3).
    """

    realm: str
    nonce: str
    algorithm: Algorithm
    qop_options: tuple[str, ...]
    opaque: str | None
    stale: bool


def parse_challenge(value: str) -> Challenge:
    """Parse a Digest challenge. Raises `DigestError` if malformed or not
    Digest, `UnsupportedDigest` for an algorithm we cannot compute."""
    scheme, params = parse_auth_header(value)
    if scheme.lower() != "digest":
        raise DigestError("challenge scheme is not Digest")
    realm = params.get("realm")
    nonce = params.get("nonce")
    if realm is None:
        raise DigestError("digest parameter 'realm' is missing")
    if nonce is None:
        raise DigestError("digest parameter 'nonce' is missing")
    algorithm_token = params.get("algorithm")
    algorithm = Algorithm.MD5 if algorithm_token is None else Algorithm.parse(algorithm_token)
    qop = params.get("qop")
    # qop-options = "qop" EQUAL LDQUOT qop-value *("," qop-value) RDQUOT
    qop_options = () if qop is None else tuple(
        option for option in (part.strip(" \t").lower() for part in qop.split(",")) if option
    )
    stale = params.get("stale")
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qop_options=qop_options,
        opaque=params.get("opaque"),
        stale=stale is not None and stale.lower() == "true",
    )


def answer_challenge(
    challenge_value: str,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int,
) -> str:
    """The Authorization (or Proxy-Authorization) value answering one
    challenge (RFC 3261 §22.2, §22.3).

    Uses qop=auth when offered, else the RFC 2069 form (then ``cnonce`` and
    ``nc`` are not sent); the algorithm is the challenge's; opaque is echoed.
    ``uri`` is the Request-URI, ``cnonce`` a fresh random string from the
    caller (e.g. ``secrets.token_hex(8)``), ``nc`` counts the requests sent
    with this nonce, from 1.

    Raises `DigestError` for a malformed challenge or bad arguments and
    `UnsupportedDigest` when the challenge needs something not implemented
    (another algorithm, only qop=auth-int).
    """
    challenge = parse_challenge(challenge_value)
    qop: str | None
    if not challenge.qop_options:
        qop = None
    elif "auth" in challenge.qop_options:
        qop = "auth"
    else:
        raise UnsupportedDigest("challenge offers no qop this client supports")
    if not 1 <= nc <= 0xFFFFFFFF:
        raise DigestError("nc must be between 1 and 0xffffffff")
    nc_hex = f"{nc:08x}"
    algorithm = challenge.algorithm
    response = response_for(
        algorithm,
        ha1(algorithm, username, challenge.realm, password),
        challenge.nonce,
        method,
        uri,
        qop,
        nc_hex if qop else None,
        cnonce if qop else None,
    )
    # Parameter order follows the RFC 3261 §22.4 example.
    parts = [
        f"Digest username={_quote('username', username)}",
        f"realm={_quote('realm', challenge.realm)}",
        f"nonce={_quote('nonce', challenge.nonce)}",
        f"uri={_quote('uri', uri)}",
        f"response=\"{response}\"",
        f"algorithm={algorithm.value}",
    ]
    if qop is not None:
        parts.append(f"cnonce={_quote('cnonce', cnonce)}")
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc_hex}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote('opaque', challenge.opaque)}")
    return ", ".join(parts)


_ALGORITHM_RANK: Final[dict[Algorithm, int]] = {Algorithm.SHA256: 0, Algorithm.MD5: 1}


def choose_challenge(values: list[str]) -> str | None:
    """The challenge value to answer among several, or None if none can be.

    Skips values that are malformed, not Digest, or need something not
    implemented; prefers SHA-256 over MD5 and, between equals, the topmost
    (RFC 8760 §2.4 lets local policy override "topmost supported"; ours is
    "strongest supported"). Never raises for bad values.
    """
    best: str | None = None
    best_rank = len(_ALGORITHM_RANK)
    for value in values:
        try:
            challenge = parse_challenge(value)
        except DigestError:
            continue
        if challenge.qop_options and "auth" not in challenge.qop_options:
            continue
        rank = _ALGORITHM_RANK[challenge.algorithm]
        if rank < best_rank:
            best, best_rank = value, rank
    return best
