"""What the PBX's own out-of-dialog services share at the edge: who sent a
request (digest, as for INVITE), the Via and Contact of requests the PBX
sends itself (NOTIFY, MESSAGE), and the answers to them.

Authentication is the calling path's (:mod:`pbx.calls.controller`): a 407
with Proxy-Authenticate, sent statelessly so a forged source address gets
one packet at most; every failure goes to the security events (logs, the
lock-out, the rate limit), and under a block nothing is answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pbx.registrar.auth import Authenticated, Authenticator, Challenge, ChallengeSink
from pbx.routing.dialplan import Dialplan, Extension
from pbx.sip.dialog import contact_value, new_branch, via_value
from pbx.sip.endpoint import SipEndpoint
from pbx.sip.events import RequestReceived, ResponseReceived, TimedOut, TransactionKey, TransportFailed
from pbx.sip.session import LocalAddress, refusal
from pbx.sip.uri import SipUri, parse_uri

T = TypeVar("T")


def authenticated(event: RequestReceived, *, plan: Dialplan, auth: Authenticator, challenges: ChallengeSink,
                  endpoint: SipEndpoint, wall: float, now: float) -> Extension | None:
    """The extension that sent ``event``'s request; None once it has been
    answered (407, 400) or dropped (blocked). ``wall`` is the wall clock
    (nonces), ``now`` the transaction layer's."""
    request, source = event.request, event.origin  # the phone, behind a trusted edge
    try:
        from_uri = parse_uri(request.from_.uri)
    except Exception:
        endpoint.send_response(event.key, refusal(request, 400, reason="Bad From"), now)
        return None
    claimed = from_uri.user if isinstance(from_uri, SipUri) else None
    result = auth.authenticate(request, source.host, wall, proxy=True, user=claimed,
                               qop_optional=request.method in plan.security.digest_without_qop)
    if isinstance(result, Challenge):
        if challenges.answer(result, source, request.method):
            endpoint.answer_statelessly(event.key, refusal(
                request, 407, headers=[("proxy-authenticate", value) for value in result.header_values]))
        else:
            endpoint.discard(event.key)
        return None
    assert isinstance(result, Authenticated)
    return result.extension


def request_user(uri_text: str) -> str | None:
    """The user part of a SIP Request-URI (the extension a request is for)."""
    try:
        uri = parse_uri(uri_text)
    except Exception:
        return None
    return uri.user if isinstance(uri, SipUri) else None


class LocalParty:
    """Via and Contact of requests the PBX sends from its own address."""

    def __init__(self, local_address: LocalAddress) -> None:
        self.local_address: Callable[[str], tuple[str, int]] = local_address

    def via(self, transport: str) -> str:
        return via_value(transport, *self.local_address(transport), new_branch())

    def contact(self, transport: str) -> str:
        return contact_value(transport, *self.local_address(transport))


def answered(event: object, pending: dict[TransactionKey, T]) -> tuple[T, int] | bool:
    """What ``event`` says of a request we sent and keep in ``pending``:
    (its owner, the final status: 408 for a timeout or a transport
    failure), the entry then dropped; True for a provisional answer; False
    when the event is not about one of them."""
    if isinstance(event, ResponseReceived):
        owner = pending.get(event.key)
        if owner is None:
            return False
        if event.response.status < 200:
            return True
        del pending[event.key]
        return owner, event.response.status
    if isinstance(event, (TimedOut, TransportFailed)):
        owner = pending.pop(event.key, None)
        return False if owner is None else (owner, 408)
    return False
