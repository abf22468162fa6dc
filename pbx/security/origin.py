"""Who really sent a request that came through a trusted edge proxy.

Behind Kamailio every request arrives from the edge's address, so the
per-source protections (rate limits, lock-outs of guessers) would count
every phone as one source: one guesser could lock everyone out. For a
request from an address listed in ``security.trusted_proxies`` the client is
read from the Via the proxy received it with (§18.2.1: the proxy added
``received`` when the sent-by host was not the packet's source, RFC 3581
``rport`` with the port it came from), walking past each trusted hop.

Only the proxy's own entry is trusted: a phone's claims in its Via count
only where the proxy's received/rport do not correct them, and a request
from anywhere else keeps its packet's source. Where the Via cannot be read
the edge's address stays (the safe side: the edge is then the one blocked).

Pure: no sockets, no logging.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from pbx.sip.address import Peer
from pbx.sip.errors import SipError
from pbx.sip.message import HeaderValueError, Request, Via, parse_via

_TRANSPORTS = {"UDP": "udp", "TCP": "tcp", "TLS": "tls", "WS": "tcp", "WSS": "tls"}


def client_of(request: Request, source: Peer, trusted: Collection[str]) -> Peer | None:
    """The client behind ``source`` when it is a trusted proxy; None when
    ``source`` is not one (the packet's source is the client)."""
    if source.host not in trusted:
        return None
    vias = request.get_all("via")
    client = source
    for value in vias[1:]:
        peer = _sender(value)
        if peer is None:
            return client
        client = peer
        if peer.host not in trusted:
            return client
    return client


def _sender(value: str) -> Peer | None:
    """Where the hop that wrote this Via sent from, as its receiver saw it."""
    try:
        via: Via = parse_via(value)
    except (HeaderValueError, SipError, ValueError):
        return None
    host = via.params.get("received") or via.host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    rport = via.params.get("rport")
    port = int(rport) if rport and rport.isdigit() else via.port or 5060
    if not 1 <= port <= 65535:
        return None
    return Peer(_TRANSPORTS.get(via.transport.upper(), "udp"), str(address), port)
