"""Digest authentication of requests against the dialplan's extensions.

Used by the registrar (401/WWW-Authenticate) and by the calling path
(407/Proxy-Authenticate). Pure: the caller passes ``now`` (wall clock).

Security rules kept here:
- an unknown user and a wrong password get the same answer, after the same
  work (a dummy HA1 is checked for unknown users), so no user enumeration;
- only a response checked against one of our own live nonces counts as a
  failure towards the lockout: a forged or expired nonce is never verified,
  so it gives an attacker no oracle and costs a real phone nothing;
- an unknown user is offered the same algorithms a real user could be: a
  user whose extension stores only an MD5 hash is offered MD5 alone, so an
  unknown name gets a set drawn (keyed by the name, so it never changes)
  from the sets the plan's real users get, in their proportions;
- a wrong response does not consume the nonce count (RFC 7616 §3.4.6);
- failures are counted by the `Lockout` (per source and username); under a
  block a failing request gets no answer at all, a valid one is served;
- a digest without ``qop`` (RFC 2069) is accepted only for the methods the
  dialplan lists (REGISTER by default, for old phones): its response does
  not cover a client nonce, so a captured INVITE is easier to replay.
- the digest's ``uri`` must name the Request-URI (RFC 3261 §22.4, RFC 7616
  §3.5): otherwise a response computed for one request (an INVITE to an
  extension) could be replayed on another (an INVITE to an outside number).
  A mismatch counts as a failure.
- a nonce is bound to the source address it was sent to (unless
  ``security.digest_nonce_per_address`` is false):
  presented from another address it is a foreign nonce, answered with a
  fresh challenge and never counted, so failures cannot be forged in the
  name of someone else's address (an office NAT's) with spoofed UDP and a
  nonce fetched elsewhere. Nonces are judged before the block's
  once-per-retry check, so forged requests do not use up the owner's turn.
"""

from __future__ import annotations

import hashlib
import hmac
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from pbx.security.lockout import Failure, Lockout
from pbx.routing.dialplan import Dialplan, Extension
from pbx.sip import digest
from pbx.sip.address import Peer
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
    username: str = ""
    """The username the credentials named (empty without credentials)."""
    failure: Failure | None = None
    """What counting this failure caused (blocks set, a username targeted)."""
    silent: bool = False
    """Under a block: answer nothing (the caller drops the request)."""


AuthResult = Authenticated | Challenge


class ChallengeSink(Protocol):
    """Where the registrar's and the calling path's failed authentications
    go (pbx/server/security.py: logs, the store, the rate limit)."""

    def answer(self, challenge: Challenge, source: Peer, method: str) -> bool:
        """Record ``challenge``; whether to send its 401/407 (False: drop
        the request unanswered)."""
        ...


class AnswerUnlessSilent:
    """A `ChallengeSink` for tests and tools: answers unless the lock-out
    said not to, records nothing."""

    def answer(self, challenge: Challenge, source: Peer, method: str) -> bool:
        return not challenge.silent


class Authenticator:
    def __init__(
        self,
        plan: Dialplan,
        nonces: digest.NonceIssuer,
        lockout: Lockout,
        algorithms: tuple[digest.Algorithm, ...] = (digest.Algorithm.SHA256, digest.Algorithm.MD5),
        *,
        decoy_key: bytes = b"",
    ) -> None:
        self.plan = plan
        self.nonces = nonces
        self.lockout = lockout
        self.algorithms = algorithms
        # Keys the choice of an unknown user's algorithms: without it an
        # attacker could work out which names get which set.
        self._decoy_key = decoy_key or nonces.issue(0.0).encode()
        self._ha1_cache: dict[tuple[str, digest.Algorithm], str] = {}
        self._decoys: tuple[list[float], list[tuple[digest.Algorithm, ...]]] = self._decoy_sets()

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan
        self._ha1_cache.clear()
        self._decoys = self._decoy_sets()

    def offered(self, user: str | None) -> tuple[digest.Algorithm, ...]:
        """The algorithms a challenge for ``user`` offers.

        An extension configured with only one stored HA1 can only answer
        that algorithm, so a challenge for it offers only that one; an
        unknown user gets one of the sets real users get (see the module).
        """
        extension = self.plan.extension(user) if user else None
        if extension is not None:
            return self._offered_to(extension)
        bounds, sets = self._decoys
        if len(sets) == 1:
            return sets[0]
        mac = hmac.new(self._decoy_key, (user or "").encode(), hashlib.sha256).digest()
        point = int.from_bytes(mac[:8], "big") / 2**64
        return sets[min(bisect_right(bounds, point), len(sets) - 1)]

    def _offered_to(self, extension: Extension) -> tuple[digest.Algorithm, ...]:
        return self._offered_for(_credentials(extension))

    def _offered_for(self, credentials: tuple[bool, bool, bool]) -> tuple[digest.Algorithm, ...]:
        """What a user with these stored credentials (see `_credentials`) is offered."""
        has_password, has_md5, has_sha256 = credentials
        offered = self.algorithms
        if not has_password and len(offered) > 1:
            # As `_ha1`: without a password only the stored HA1s can be checked.
            offered = tuple(a for a in offered if (has_md5 if a is digest.Algorithm.MD5 else has_sha256)) or offered
        return offered

    def _decoy_sets(self) -> tuple[list[float], list[tuple[digest.Algorithm, ...]]]:
        """Cumulative shares of each offered set among the plan's users.

        Run on the event loop at every reload: the users are counted by what
        they store, a few attribute reads each (5 ms for 20,000), not by
        working out each one's offer (40 ms)."""
        counts: Counter[tuple[digest.Algorithm, ...]] = Counter()
        for credentials, count in Counter(map(_credentials, self.plan.extensions.values())).items():
            counts[self._offered_for(credentials)] += count
        if len(counts) <= 1:
            return [1.0], [next(iter(counts), self.algorithms)]
        total = sum(counts.values())
        bounds, sets, running = [], [], 0
        for offered, count in sorted(counts.items(), key=lambda item: [a.value for a in item[0]]):
            running += count
            bounds.append(running / total)
            sets.append(offered)
        return bounds, sets

    def challenge(self, now: float, *, stale: bool = False, user: str | None = None,
                  source: str = "") -> tuple[str, ...]:
        """Challenge values, most preferred algorithm first (RFC 8760 §2.4),
        with a nonce for ``source`` (the client's address)."""
        nonce = self.nonces.issue(now, source if self.plan.security.digest_nonce_per_address else "")
        offered = self.offered(user)
        return tuple(
            digest.format_challenge(self.plan.domain, nonce, algorithm, stale=stale)
            for algorithm in offered
        )

    def authenticate(
        self, request: Request, source_ip: str, now: float, *, proxy: bool = False, user: str | None = None,
        exempt: bool = False, qop_optional: bool = False, registered_phone: bool = False,
    ) -> AuthResult:
        """Check the request's credentials. ``user`` is who the request claims
        to be (the To user of a REGISTER, From user of an INVITE): it only
        tailors the challenge's algorithms, never who is authenticated.
        ``exempt`` sources (a trunk's gateways) are never counted or
        blocked; ``qop_optional`` accepts a digest without ``qop``;
        ``registered_phone``: the request comes from the very address and
        port a live registration of ``user`` came from, and is checked even
        under a block's one check per interval (a guesser behind the same
        NAT cannot take its turns; a forger cannot use it, the nonce being
        bound to the address; with ``digest_nonce_per_address`` off it is
        not trusted)."""
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
            return self._challenge(now, reason, user, source=source_ip)
        username = credentials.username
        if credentials.algorithm not in self.algorithms:
            return self._challenge(now, "unsupported_algorithm", user, username, source_ip)
        if credentials.qop is None and not qop_optional:
            return self._challenge(now, "qop_required", user, username, source_ip)
        bound_to = source_ip if self.plan.security.digest_nonce_per_address else ""
        # The nonce first (a MAC, no state): a request forged from another
        # address carries a foreign nonce and must not use up a blocked
        # pair's one check per retry interval.
        status = self.nonces.check(credentials.nonce, credentials.nc, now, bound_to)
        if status is digest.NonceStatus.STALE:
            return Challenge(header_values=self.challenge(now, stale=True, user=user, source=source_ip),
                             failed=False, reason="stale_nonce", username=username)
        if status is digest.NonceStatus.INVALID:
            return self._challenge(now, "foreign_nonce", user, username, source_ip)
        lockout = self.lockout
        # Only with bound nonces: otherwise a forger of the phone's address
        # and port could guess unhindered (its Contact would tell it when
        # it was right).
        own_phone = registered_phone and bool(bound_to)
        if not exempt and not own_phone and not lockout.may_check(source_ip, username, now):
            # Blocked, and checked a moment ago: dropped unchecked, which is
            # what holds a guesser to one try per retry interval.
            return Challenge(header_values=(), failed=False, reason="blocked_unchecked", username=username,
                             silent=True)
        if status is digest.NonceStatus.REPLAY:
            return self._failure(source_ip, now, "nonce_replay", user, username, exempt)
        if not _same_uri(credentials.uri, request.uri):
            return self._failure(source_ip, now, "uri_mismatch", user, username, exempt)
        extension = self.plan.extension(username)
        ha1 = self._ha1(extension, credentials.algorithm) if extension else None
        ok = digest.verify(credentials, ha1 or _DUMMY_HA1[credentials.algorithm], request.method)
        if extension is None or ha1 is None or not ok:
            return self._failure(source_ip, now, "bad_credentials", user, username, exempt)
        self.nonces.accept(credentials.nonce, credentials.nc, now, bound_to)
        return Authenticated(extension=extension)

    def _challenge(self, now: float, reason: str, user: str | None, username: str = "",
                   source: str = "") -> Challenge:
        return Challenge(header_values=self.challenge(now, user=user, source=source), failed=False, reason=reason,
                         username=username)

    def _failure(self, source_ip: str, now: float, reason: str, user: str | None, username: str,
                 exempt: bool) -> Challenge:
        if exempt:
            return Challenge(header_values=self.challenge(now, user=user, source=source_ip), failed=True,
                             reason=reason, username=username)
        failure = self.lockout.failure(source_ip, username, now)
        if self.lockout.blocked(source_ip, username, now) is not None:
            # Blocked (perhaps by this very failure): a guesser learns
            # nothing, not even that the guess was checked.
            return Challenge(header_values=(), failed=True, reason=reason, username=username, failure=failure,
                             silent=True)
        return Challenge(header_values=self.challenge(now, user=user, source=source_ip), failed=True,
                         reason=reason, username=username, failure=failure)

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


def _credentials(extension: Extension) -> tuple[bool, bool, bool]:
    """Whether an extension stores a password, an MD5 HA1, a SHA-256 HA1."""
    return extension.password is not None, extension.ha1_md5 is not None, extension.ha1_sha256 is not None


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
