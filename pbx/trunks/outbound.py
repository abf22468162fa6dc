"""One outbound call through a trunk: the addresses its INVITE carries, the
gateways it tries in order, and what each final response means.

Pure (no clock, no sockets, no logging); the call controller places the
INVITEs and keeps the timers. Rules:

- Request-URI and To are ``sip:<number>@<trunk domain>`` with the number as
  routing rewrote it (often E.164); From carries the caller ID presented to
  the provider;
- a 401/407 is answered with the trunk's credentials by re-sending the
  INVITE with a new CSeq and the same Call-ID and From tag (RFC 3261
  §22.2, §8.1.3.5), once per gateway (again only for ``stale=true``), so
  wrong credentials end the call instead of looping;
- a gateway that sends nothing within ``invite_timeout``, a transport
  failure, a 408 or any 5xx moves the call on to the next gateway: those
  say the gateway (not the callee) could not take it (§8.1.3.1: a timeout
  counts as 408, a transport error as 503);
- any other 4xx, and 6xx, come from the callee's side (486 busy, 404 no
  such number, 603 declined) and end the call with that status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pbx.routing.trunk_config import Gateway, Trunk
from pbx.sip import digest
from pbx.sip.message import Header, Response

MAX_STALE_CHALLENGES = 2
"""Challenges with ``stale=true`` answered per gateway on top of the first."""
RING_TIMEOUT = 180.0
"""Seconds an outbound trunk call may go unanswered before the PBX gives up
with 480: the provider normally ends it sooner, but a gateway that sent a
1xx and died would otherwise leave the caller ringing for ever."""


class Verdict(enum.Enum):
    ANSWERED = "answered"
    AUTHENTICATE = "authenticate"   # 401/407: answer the challenge
    NEXT_GATEWAY = "next_gateway"   # the gateway failed: try the next one
    END = "end"                     # the callee's side said no: end the call


def verdict(status: int) -> Verdict:
    """What a final response from a gateway means for the call."""
    if 200 <= status < 300:
        return Verdict.ANSWERED
    if status in (401, 407):
        return Verdict.AUTHENTICATE
    if status == 408 or 500 <= status < 600:
        return Verdict.NEXT_GATEWAY
    return Verdict.END


@dataclass(slots=True, kw_only=True)
class TrunkDialling:
    """The state of one call's way out through ``trunk``."""

    trunk: Trunk
    number: str
    """As sent to the provider (after the trunk's rewrites)."""
    caller_id: str
    gateway_index: int = 0
    challenges: int = 0
    """Challenges answered on the current gateway."""
    failures: list[tuple[Gateway, str]] = field(default_factory=list)
    """Gateways given up on, with why (``timeout``, ``503`` ...), for the log."""
    silence_timer: Any = None
    """The controller's handle for the invite_timeout of the current gateway."""

    @property
    def gateway(self) -> Gateway:
        return self.trunk.gateways[self.gateway_index]

    @property
    def request_uri(self) -> str:
        return f"sip:{self.number}@{self.trunk.sip_domain}"

    @property
    def to_uri(self) -> str:
        return f"<{self.request_uri}>"

    @property
    def from_uri(self) -> str:
        """From without its tag: the caller ID at the provider's domain."""
        return f"<sip:{self.caller_id}@{self.trunk.sip_domain}>"

    def next_gateway(self, why: str) -> Gateway | None:
        """Give up on the current gateway; the next one, or None when every
        gateway has been tried."""
        self.failures.append((self.gateway, why))
        if self.gateway_index + 1 >= len(self.trunk.gateways):
            return None
        self.gateway_index += 1
        self.challenges = 0
        return self.gateway

    def credentials(self, response: Response, *, method: str, uri: str, cnonce: str) -> Header | None:
        """The Authorization or Proxy-Authorization header answering the
        challenge in ``response``; None when it must not or cannot be
        answered (no credentials on this trunk, answered already and not
        stale, or no usable challenge)."""
        username, password = self.trunk.username, self.trunk.password
        if username is None or password is None:
            return None
        header = "www-authenticate" if response.status == 401 else "proxy-authenticate"
        value = digest.choose_challenge(response.get_all(header))
        if value is None:
            return None
        if self.challenges > 0:
            stale = digest.parse_challenge(value).stale
            if not stale or self.challenges > MAX_STALE_CHALLENGES:
                return None
        try:
            answer = digest.answer_challenge(value, username=username, password=password, method=method,
                                             uri=uri, cnonce=cnonce, nc=1)
        except digest.DigestError:
            return None
        self.challenges += 1
        return ("authorization" if response.status == 401 else "proxy-authorization", answer)
