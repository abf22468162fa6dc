"""Registering the PBX to a SIP trunk as a client (RFC 3261 §10.2), sans-I/O.

One :class:`TrunkRegistration` per trunk with ``register: true``. It is fed
responses, transaction timeouts and the time, and returns effects: REGISTER
requests to send and facts to log. It never reads a clock, opens a socket
or logs; :mod:`pbx.trunks.client` is the asyncio glue around it.

Rules it keeps:

- one Call-ID and From tag for the whole run, CSeq one up per REGISTER
  (§10.2.4 asks a UA to keep the Call-ID between refreshes);
- a 401/407 is answered with digest credentials (§22.2), once per attempt:
  a second challenge to the credentials just computed from a fresh one
  means the password is wrong, so the attempt fails instead of looping. A
  challenge with ``stale=true`` only says the nonce aged (RFC 7616 §3.3)
  and is answered again. Refreshes reuse the last challenge with the next
  nonce count, so a healthy refresh is one round trip;
- the binding is refreshed before it expires: at ``expires - min(60,
  expires / 2)`` seconds after the 2xx, with the lifetime the registrar
  granted (our Contact's ``expires`` parameter, else the Expires header);
- 423 Interval Too Brief raises our Expires to the registrar's Min-Expires
  and retries at once (§10.2.8), unless that would not change anything;
- any other failure (timeout, 4xx, 5xx, 6xx, a loop of challenges) is
  retried after an exponential back-off, honouring Retry-After; a timeout,
  408 or 5xx also moves on to the trunk's next gateway;
- :meth:`TrunkRegistration.stop` removes the binding (Expires: 0, §10.2.2)
  when one may exist.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pbx.routing.trunk_config import Gateway, Trunk
from pbx.sip import digest
from pbx.sip.message import Header, Request, Response, make_request, parse_name_addr

REFRESH_MARGIN: Final = 60.0
"""Refresh this many seconds before the binding expires (at most half of
its lifetime, so short bindings refresh at half-time)."""
MAX_EXPIRES: Final = 86_400
"""A 423's Min-Expires above this (a day) is not followed."""
MAX_CHALLENGES: Final = 3
"""Challenges answered within one attempt, stale ones included."""


class RegistrationState(enum.Enum):
    IDLE = "idle"                    # not started
    REGISTERING = "registering"      # a REGISTER is out, no final answer yet
    REGISTERED = "registered"        # bound; a refresh is due at ``refresh_at``
    BACKING_OFF = "backing_off"      # the last attempt failed; retry at ``retry_at``
    UNREGISTERING = "unregistering"  # the Expires: 0 REGISTER is out
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Delays between failed attempts: ``first``, then times ``factor`` each
    consecutive failure, never more than ``cap`` seconds."""

    first: float = 10.0
    factor: float = 2.0
    cap: float = 600.0

    def __post_init__(self) -> None:
        if self.first <= 0 or self.factor < 1 or self.cap < self.first:
            raise ValueError("back-off needs first > 0, factor >= 1 and cap >= first")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1)."""
        delay = self.first
        for _ in range(1, failures):
            delay *= self.factor
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)


# ---------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRegister:
    """Send ``request`` to ``gateway`` in a new non-INVITE client transaction;
    report its final response, or its timeout, back to the machine."""

    request: Request
    gateway: Gateway


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered:
    trunk: str
    gateway: Gateway
    expires: int
    """Seconds granted by the registrar."""
    refresh_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiresRaised:
    """The registrar answered 423; the next REGISTER asks for ``expires``."""

    trunk: str
    expires: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationFailed:
    trunk: str
    gateway: Gateway
    reason: str
    """snake_case: ``timeout``, ``rejected``, ``auth_rejected``,
    ``unusable_challenge``, ``too_many_challenges``, ``interval_too_brief``."""
    status: int | None
    failures: int
    """Consecutive failures so far, this one included."""
    retry_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Unregistered:
    trunk: str
    confirmed: bool
    """True when the registrar answered the removal with a 2xx."""
    status: int | None


Effect = SendRegister | Registered | ExpiresRaised | RegistrationFailed | Unregistered

LocalAddress = Callable[[str], tuple[str, int]]
"""transport -> (host, port) the PBX is reached at, for Via and Contact."""


def _token() -> str:
    return secrets.token_hex(8)


class TrunkRegistration:
    """The registration of this PBX at one trunk's registrar."""

    def __init__(
        self,
        trunk: Trunk,
        *,
        local_address: LocalAddress,
        backoff: Backoff = Backoff(),
        token: Callable[[], str] = _token,
        user_agent: str = "pbx",
    ) -> None:
        if trunk.username is None or trunk.password is None:
            raise ValueError(f"trunk {trunk.key!r} has no credentials to register with")
        self.trunk = trunk
        self.state = RegistrationState.IDLE
        self.expires = trunk.register_expires
        """What the next REGISTER asks for (raised by a 423)."""
        self.refresh_at: float | None = None
        self.retry_at: float | None = None
        self.registered_until: float | None = None
        """When the last granted binding runs out, if one was granted."""
        self.failures = 0
        self._username = trunk.username
        self._password = trunk.password
        self._local_address = local_address
        self._backoff = backoff
        self._token = token
        self._user_agent = user_agent
        self._gateway_index = 0
        self._call_id = f"{token()}@trunk"
        self._from_tag = token()
        self._cseq = 0
        self._pending_cseq: int | None = None
        self._contact_uri = ""
        # The challenge to answer on the next REGISTER: (header name, value, nc).
        self._challenge: tuple[str, str, int] | None = None
        self._answered_fresh = False   # this attempt answered a challenge it was just given
        self._challenges_this_attempt = 0
        self._raised_this_attempt = False

    # ------------------------------------------------------------ queries

    @property
    def gateway(self) -> Gateway:
        """Where REGISTERs go now (moves on after timeouts and 5xx)."""
        return self.trunk.gateways[self._gateway_index]

    @property
    def call_id(self) -> str:
        return self._call_id

    def is_registered(self, now: float) -> bool:
        return self.registered_until is not None and now < self.registered_until

    def deadline(self) -> float | None:
        """When :meth:`on_timer` must be called next; None: wait for input."""
        if self.state is RegistrationState.REGISTERED:
            return self.refresh_at
        if self.state is RegistrationState.BACKING_OFF:
            return self.retry_at
        return None

    # ------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Effect]:
        if self.state is not RegistrationState.IDLE:
            return []
        return self._begin_attempt()

    def on_timer(self, now: float) -> list[Effect]:
        due = self.deadline()
        if due is None or now < due:
            return []
        return self._begin_attempt()

    def on_response(self, response: Response, now: float) -> list[Effect]:
        """A response to our REGISTER. Provisional, stray and late responses
        (a CSeq other than the one awaited) change nothing."""
        status = response.status
        if status < 200 or self._pending_cseq is None:
            return []
        try:
            cseq = response.cseq
        except ValueError:
            return []
        if cseq.method != "REGISTER" or cseq.number != self._pending_cseq or response.call_id != self._call_id:
            return []
        self._pending_cseq = None
        if self.state is RegistrationState.UNREGISTERING:
            return self._on_unregister_response(response, now)
        if status < 300:
            return self._on_success(response, now)
        if status in (401, 407):
            return self._on_challenge(response, now)
        if status == 423:
            return self._on_interval_too_brief(response, now)
        next_gateway = status == 408 or 500 <= status < 600
        return self._fail("rejected", status, now, next_gateway=next_gateway,
                          retry_after=_retry_after(response))

    def on_timeout(self, now: float) -> list[Effect]:
        """The newest REGISTER's transaction ended without a final response
        (timer F), or the transport could not deliver it. (The glue reports
        only the newest one's: an older REGISTER timing out means nothing.)"""
        if self._pending_cseq is None:
            return []
        self._pending_cseq = None
        if self.state is RegistrationState.UNREGISTERING:
            self.state = RegistrationState.STOPPED
            return [Unregistered(trunk=self.trunk.key, confirmed=False, status=None)]
        return self._fail("timeout", None, now, next_gateway=True)

    def stop(self, now: float) -> list[Effect]:
        """Stop registering. Sends the removal when a binding may exist (we
        have been granted one, or a REGISTER is on its way); otherwise just
        stops."""
        if self.state in (RegistrationState.STOPPED, RegistrationState.UNREGISTERING):
            return []
        maybe_bound = self.is_registered(now) or self.state is RegistrationState.REGISTERING
        self.refresh_at = self.retry_at = None
        if not maybe_bound:
            self.state = RegistrationState.STOPPED
            return []
        self.state = RegistrationState.UNREGISTERING
        self._challenges_this_attempt = 0
        self._answered_fresh = False
        return [self._send(expires=0)]

    # ------------------------------------------------------------ outcomes

    def _begin_attempt(self) -> list[Effect]:
        self.state = RegistrationState.REGISTERING
        self.refresh_at = self.retry_at = None
        self._challenges_this_attempt = 0
        self._answered_fresh = False
        self._raised_this_attempt = False
        return [self._send(expires=self.expires)]

    def _on_success(self, response: Response, now: float) -> list[Effect]:
        granted = self._granted_expires(response)
        if granted <= 0:
            # A 2xx that lists no binding of ours: the registrar did not keep
            # it. Count it as a failure rather than refresh in a tight loop.
            return self._fail("no_binding", response.status, now, next_gateway=False)
        self.failures = 0
        self.state = RegistrationState.REGISTERED
        self.registered_until = now + granted
        self.refresh_at = now + max(1.0, granted - min(REFRESH_MARGIN, granted / 2))
        return [Registered(trunk=self.trunk.key, gateway=self.gateway, expires=granted,
                           refresh_at=self.refresh_at)]

    def _on_challenge(self, response: Response, now: float) -> list[Effect]:
        status = response.status
        header = "www-authenticate" if status == 401 else "proxy-authenticate"
        value = digest.choose_challenge(response.get_all(header))
        if value is None:
            return self._fail("unusable_challenge", status, now, next_gateway=False)
        stale = digest.parse_challenge(value).stale
        self._challenges_this_attempt += 1
        if self._answered_fresh and not stale:
            # We answered the challenge we were just given and were
            # challenged again: the credentials are wrong. Retrying now
            # would loop (and may get this PBX blocked by the provider).
            self._challenge = None
            return self._fail("auth_rejected", status, now, next_gateway=False)
        if self._challenges_this_attempt > MAX_CHALLENGES:
            self._challenge = None
            return self._fail("too_many_challenges", status, now, next_gateway=False)
        self._challenge = ("authorization" if status == 401 else "proxy-authorization", value, 1)
        self._answered_fresh = True
        expires = 0 if self.state is RegistrationState.UNREGISTERING else self.expires
        return [self._send(expires=expires)]

    def _on_interval_too_brief(self, response: Response, now: float) -> list[Effect]:
        minimum = _int_header(response, "min-expires")
        if minimum is None or minimum <= self.expires or minimum > MAX_EXPIRES or self._raised_this_attempt:
            return self._fail("interval_too_brief", 423, now, next_gateway=False)
        self.expires = minimum
        self._raised_this_attempt = True
        return [ExpiresRaised(trunk=self.trunk.key, expires=minimum), self._send(expires=minimum)]

    def _on_unregister_response(self, response: Response, now: float) -> list[Effect]:
        status = response.status
        if status in (401, 407):
            # Answered once like a REGISTER; a challenge that cannot be
            # answered ends in _fail, which gives the removal up.
            return self._on_challenge(response, now)
        self.state = RegistrationState.STOPPED
        if status < 300:
            self.registered_until = None
        return [Unregistered(trunk=self.trunk.key, confirmed=status < 300, status=status)]

    def _fail(self, reason: str, status: int | None, now: float, *, next_gateway: bool,
              retry_after: int | None = None) -> list[Effect]:
        gateway = self.gateway
        if self.state is RegistrationState.UNREGISTERING:
            self.state = RegistrationState.STOPPED
            return [Unregistered(trunk=self.trunk.key, confirmed=False, status=status)]
        self.failures += 1
        delay = self._backoff.delay(self.failures)
        if retry_after is not None:
            delay = min(max(delay, float(retry_after)), self._backoff.cap)
        if next_gateway:
            self._gateway_index = (self._gateway_index + 1) % len(self.trunk.gateways)
        self.state = RegistrationState.BACKING_OFF
        self.retry_at = now + delay
        return [RegistrationFailed(trunk=self.trunk.key, gateway=gateway, reason=reason, status=status,
                                   failures=self.failures, retry_at=self.retry_at)]

    # ------------------------------------------------------------ building

    def _send(self, *, expires: int) -> SendRegister:
        gateway = self.gateway
        transport = gateway.transport
        host, port = self._local_address(transport)
        domain = self.trunk.sip_domain
        request_uri = f"sip:{domain}"
        aor = f"<sip:{self._username}@{domain}>"
        suffix = "" if transport == "udp" else f";transport={transport}"
        self._contact_uri = f"sip:{self._username}@{_host(host)}:{port}{suffix}"
        self._cseq += 1
        headers: list[Header] = [
            ("via", f"SIP/2.0/{transport.upper()} {_host(host)}:{port};branch=z9hG4bK{self._token()};rport"),
            ("max-forwards", "70"),
            ("from", f"{aor};tag={self._from_tag}"),
            ("to", aor),
            ("call-id", self._call_id),
            ("cseq", f"{self._cseq} REGISTER"),
            ("contact", f"<{self._contact_uri}>"),
            ("expires", str(expires)),
            ("user-agent", self._user_agent),
        ]
        if self._challenge is not None:
            name, value, nc = self._challenge
            try:
                answer = digest.answer_challenge(
                    value, username=self._username, password=self._password, method="REGISTER",
                    uri=request_uri, cnonce=self._token(), nc=nc,
                )
            except digest.DigestError:
                self._challenge = None
            else:
                headers.append((name, answer))
                self._challenge = (name, value, nc + 1)
        self._pending_cseq = self._cseq
        return SendRegister(request=make_request("REGISTER", request_uri, headers), gateway=gateway)

    def _granted_expires(self, response: Response) -> int:
        """Our binding's lifetime in a 2xx (§10.2.4): the ``expires``
        parameter of the Contact that is ours, else the Expires header,
        else what we asked for. 0 when the registrar listed contacts but
        none of them is ours with a lifetime."""
        contacts = response.get_all("contact")
        ours = _uri_key(self._contact_uri)
        fallback = _int_header(response, "expires")
        for value in contacts:
            try:
                address = parse_name_addr(value)
            except ValueError:
                continue
            if _uri_key(address.uri) != ours:
                continue
            raw = address.params.get("expires")
            if raw is not None and raw.isdigit():
                return int(raw)
            return fallback if fallback is not None else self.expires
        if contacts and len(contacts) == 1:
            # A registrar behind NAT may show our Contact rewritten; a
            # single binding in the answer is ours.
            try:
                raw = parse_name_addr(contacts[0]).params.get("expires")
            except ValueError:
                raw = None
            if raw is not None and raw.isdigit():
                return int(raw)
        return fallback if fallback is not None else self.expires


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _uri_key(uri: str) -> str:
    """A Contact URI reduced to what identifies it here: user, host, port."""
    text = uri.strip().strip("<>")
    if text.lower().startswith("sip:"):
        text = text[4:]
    return text.split(";", 1)[0].lower()


def _int_header(message: Response, name: str) -> int | None:
    value = message.get(name)
    if value is None:
        return None
    text = value.split(";", 1)[0].strip()
    return int(text) if text.isdigit() else None


def _retry_after(response: Response) -> int | None:
    """Retry-After seconds (§20.33), comments and parameters ignored."""
    value = response.get("retry-after")
    if value is None:
        return None
    text = value.split("(", 1)[0].split(";", 1)[0].strip()
    return int(text) if text.isdigit() else None
