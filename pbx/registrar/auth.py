"""Digest authentication of requests against the dialplan's extensions.

Used by the registrar (401/WWW-Authenticate) and by the calling path
(407/Proxy-Authenticate). Pure: the caller passes ``now`` (wall clock).

Security rules kept here:
- an unknown user and a wrong password get the same answer, after the same
  work (a dummy HA1 is checked for unknown users), so no user enumeration;
- only a response checked against one of our own live nonces counts as a
  failure towards the lockout: a forged or expired nonce is never verified,
  so it gives an attacker no oracle and costs a real phone nothing;
- a wrong response does not consume the nonce count (RFC 7616 §3.4.6);
- the digest's ``uri`` must name the Request-URI (RFC 3261 §22.4, RFC 7616
  §3.5): otherwise a response computed for one request (an INVITE to an
  extension) could be replayed on another (an INVITE to an outside number).
  A mismatch counts as a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.registrar.lockout import Blocked, FailureTracker
from pbx.routing.dialplan import Dialplan, Extension
from pbx.sip import digest
from pbx.sip.errors import SipError
from pbx.sip.message import Request
from pbx.sip.uri import SipUri, parse_uri

_DUMMY_HA1 = {digest.Algorithm.MD5: "0" * 32, digest.Algorithm.SHA256: "0" * 64}


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    extension: Extension


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """Answer 401/407 with these header values."""

    header_values: tuple[str, ...]
    failed: bool
    """True when credentials were checked and were wrong (counted)."""
    reason: str
    """snake_case tag for the log: no_credentials, stale_nonce, bad_credentials ..."""
    blocked: Blocked | None = None


AuthResult = Authenticated | Challenge


class Authenticator:
    def __init__(
        self,
        plan: Dialplan,
        nonces: digest.NonceIssuer,
        tracker: FailureTracker,
        algorithms: tuple[digest.Algorithm, ...] = (digest.Algorithm.SHA256, digest.Algorithm.MD5),
    ) -> None:
        self.plan = plan
        self.nonces = nonces
        self.tracker = tracker
        self.algorithms = algorithms
        self._ha1_cache: dict[tuple[str, digest.Algorithm], str] = {}

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan
        self._ha1_cache.clear()

    def challenge(self, now: float, *, stale: bool = False, user: str | None = None) -> tuple[str, ...]:
        """Challenge values, most preferred algorithm first (RFC 8760 §2.4).

        An extension configured with only one stored HA1 can only answer
        that algorithm, so a challenge for it offers only that one. Unknown
        users get the full set, like most extensions.
        """
        nonce = self.nonces.issue(now)
        extension = self.plan.extension(user) if user else None
        offered = self.algorithms
        if extension is not None and extension.password is None and len(offered) > 1:
            offered = tuple(a for a in offered if self._ha1(extension, a) is not None) or offered
        return tuple(
            digest.format_challenge(self.plan.domain, nonce, algorithm, stale=stale)
            for algorithm in offered
        )

    def authenticate(
        self, request: Request, source_ip: str, now: float, *, proxy: bool = False, user: str | None = None
    ) -> AuthResult:
        """Check the request's credentials. ``user`` is who the request claims
        to be (the To user of a REGISTER, From user of an INVITE): it only
        tailors the challenge's algorithms, never who is authenticated."""
        header = "proxy-authorization" if proxy else "authorization"
        credentials = None
        for value in request.get_all(header):
            try:
                parsed = digest.parse_credentials(value)
            except digest.DigestError:
                continue
            if parsed.realm == self.plan.domain:
                credentials = parsed
                break
        if credentials is None:
            reason = "no_credentials" if not request.has(header) else "unusable_credentials"
            return Challenge(header_values=self.challenge(now, user=user), failed=False, reason=reason)
        if credentials.algorithm not in self.algorithms:
            return Challenge(header_values=self.challenge(now, user=user), failed=False, reason="unsupported_algorithm")
        status = self.nonces.check(credentials.nonce, credentials.nc, now)
        if status is digest.NonceStatus.STALE:
            return Challenge(header_values=self.challenge(now, stale=True, user=user), failed=False, reason="stale_nonce")
        if status is digest.NonceStatus.INVALID:
            return Challenge(header_values=self.challenge(now, user=user), failed=False, reason="foreign_nonce")
        if status is digest.NonceStatus.REPLAY:
            return self._failure(source_ip, now, "nonce_replay", user)
        if not _same_uri(credentials.uri, request.uri):
            return self._failure(source_ip, now, "uri_mismatch", user)
        extension = self.plan.extension(credentials.username)
        ha1 = self._ha1(extension, credentials.algorithm) if extension else None
        ok = digest.verify(credentials, ha1 or _DUMMY_HA1[credentials.algorithm], request.method)
        if extension is None or ha1 is None or not ok:
            return self._failure(source_ip, now, "bad_credentials", user)
        self.nonces.accept(credentials.nonce, credentials.nc, now)
        return Authenticated(extension=extension)

    def _failure(self, source_ip: str, now: float, reason: str, user: str | None) -> Challenge:
        blocked = self.tracker.failure(source_ip, now)
        return Challenge(header_values=self.challenge(now, user=user), failed=True, reason=reason, blocked=blocked)

    def _ha1(self, extension: Extension, algorithm: digest.Algorithm) -> str | None:
        key = (extension.number, algorithm)
        cached = self._ha1_cache.get(key)
        if cached is not None:
            return cached
        if extension.password is not None:
            value: str | None = digest.ha1(algorithm, extension.number, self.plan.domain, extension.password)
        elif algorithm is digest.Algorithm.MD5:
            value = extension.ha1_md5
        else:
            value = extension.ha1_sha256
        if value is not None:
            self._ha1_cache[key] = value
        return value


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    """The digest ``uri`` names the Request-URI: the same text, or the same
    scheme, host and port with the same user or none (a phone may spell the
    host in another case or leave out a parameter; SIPp, like some older
    phones, names only the server, ``sip:host:port``). A digest naming
    another user is what a replay looks like, and is refused."""
    if digest_uri == request_uri:
        return True
    try:
        ours, theirs = parse_uri(request_uri), parse_uri(digest_uri)
    except SipError:
        return False
    if not isinstance(ours, SipUri) or not isinstance(theirs, SipUri):
        return False
    same_user = theirs.user is None or theirs.user == ours.user
    return same_user and (ours.scheme, ours.host, ours.port or 5060) == (theirs.scheme, theirs.host, theirs.port or 5060)
