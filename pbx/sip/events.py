"""What crosses between the transaction layer and its transaction user (TU).

The transaction layer (``pbx.sip.transaction``) returns lists of these from
every call: ``Send`` for bytes to write to the network, the rest for the TU
(RFC 3261 §17: the TU is the UA core, proxy core or our registrar/B2BUA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pbx.sip.address import Peer
from pbx.sip.message import Request, Response


class TransactionKey(NamedTuple):
    """Identifies one transaction; a plain tuple so dict lookups are cheap.

    Server side (§17.2.3): ``branch`` (with the magic cookie), the top Via's
    ``sent_by`` ("host:port", host lower-cased) and the method, where ACK is
    counted as INVITE and CANCEL keeps its own. For a request whose branch
    lacks the magic cookie (RFC 2543 peers) ``branch`` holds instead the
    identity of §17.2.3's second half and ``sent_by`` is empty.

    Client side (§17.1.3): the branch the request was sent with and the
    CSeq method; ``sent_by`` is empty.
    """

    server: bool
    branch: str
    sent_by: str
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """A datagram (UDP) or frame (TCP/TLS) to write to ``dest``."""

    data: bytes
    dest: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A request that matched no server transaction; one was created (§17.2.3).

    ``request`` carries ``received``/``rport`` on its top Via (§18.2.1,
    RFC 3581). Answer it with ``TransactionLayer.send_response(key, ...)``.
    CANCEL arrives this way too; ``invite_key_for_cancel`` finds its INVITE.
    """

    request: Request
    source: Peer
    key: TransactionKey
    client: Peer | None = None
    """Set by the edge when ``source`` is a trusted proxy: the client it
    relayed (``pbx.security.origin``). Responses still go to ``source``."""

    @property
    def origin(self) -> Peer:
        """Whom per-source protections (rate limits, lock-outs) count."""
        return self.client or self.source


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """An ACK outside any INVITE server transaction: the ACK to a 2xx (§13.3.1.4,
    §17.2.3), for the dialog layer. Also reported when it stopped the layer's
    own 2xx retransmissions."""

    request: Request
    source: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response for the client transaction ``key`` that the TU must see."""

    response: Response
    key: TransactionKey


@dataclass(frozen=True, slots=True, kw_only=True)
class StrayResponse:
    """A response matching no client transaction (§17.1.3).

    Typically a retransmitted 2xx to an INVITE whose transaction has ended:
    the dialog layer re-sends its ACK (§13.2.2.4). Otherwise drop it.
    """

    response: Response
    source: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut:
    """The transaction ``key`` ended without what it waited for.

    Client side, timer B or F: act as if a 408 had arrived (§8.1.3.1).
    INVITE server side, timer H: no ACK for a non-2xx final (§17.2.1); or
    timer L with the layer retransmitting a 2xx and no ACK (§13.3.1.4: the
    session should be ended with BYE).
    """

    key: TransactionKey


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed:
    """A send for ``key`` failed (§17.1.4, §17.2.4); the transaction has ended.

    Client side: act as if a 503 had arrived (§8.1.3.1).
    """

    key: TransactionKey


Event = RequestReceived | AckReceived | ResponseReceived | StrayResponse | TimedOut | TransportFailed
Output = Event | Send

__all__ = [
    "TransactionKey",
    "Send",
    "RequestReceived",
    "AckReceived",
    "ResponseReceived",
    "StrayResponse",
    "TimedOut",
    "TransportFailed",
    "Event",
    "Output",
]
