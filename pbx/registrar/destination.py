"""Where a request to a registered phone goes: its Contact, unless NAT.

RFC 3261 §10.3 and §16.5: a registration binds the address-of-record to the
Contact URI, and requests for the AOR go to that URI. Resolving it follows
RFC 3263 §4 for a numeric host: the host and port as written (5060 when no
port is given, 5061 for TLS), over the transport its ``transport``
parameter names, TLS for ``sips:``. A ``sip:`` Contact naming no transport
is reached over the transport its REGISTER came over: RFC 3263 §4.1 would
say UDP, but a phone seen only over TCP is not known to listen on UDP. That
is right for a phone, or SIPp, that registers from one socket and listens
on another.

It is wrong for a phone behind NAT: its Contact names an address only its
own network can reach, while the REGISTER came from the NAT's public
mapping, which is the one place a request can reach it (RFC 3581's rport;
Kamailio's ``nat_uac_test`` and Asterisk's ``nat=force_rport`` do the same).
So, per extension (``nat`` in the dialplan):

- ``auto`` (default): the Contact, unless NAT is seen: the Contact's address
  differs from the address the REGISTER came from and the two are not both
  public. A private (RFC 1918), shared (RFC 6598), link-local or loopback
  Contact seen from elsewhere, or a public Contact sent from a private
  address, means an address translator sits between;
- ``force``: always the REGISTER's source;
- ``never``: always the Contact.

Whatever the setting, a Contact that cannot be used as it is goes to the
source: a host name (resolving it is I/O, not for the call path; the source
reached the PBX, so it can be reached back), a tel: URI, an unspecified or
multicast address, or a transport the PBX does not speak.

Connections: a binding that came over a TCP/TLS connection keeps its
connection id, so while the connection lives requests use it (RFC 5923's
connection reuse, in RFC 5626's spirit); the host and port only matter once
it has closed, when a new connection goes to the Contact (or the source).

Path (RFC 3327): a phone that registered through an edge proxy is reached
through it, whatever its Contact says: the first Path entry is where the
request goes, the whole Path its preloaded route set (§5.1: "the registrar
MUST use the Path as the route set"). The edge knows the phone's NAT
mapping or connection; the PBX node does not, and may not be the node that
took the REGISTER.

Pure: no sockets, no clock, no logging.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, replace
from typing import Final

from pbx.registrar.bindings import Binding
from pbx.routing.dialplan import NatMode
from pbx.sip.address import Peer
from pbx.sip.errors import SipError
from pbx.sip.message import HeaderValueError, parse_name_addr
from pbx.sip.uri import SipUri, parse_uri

DEFAULT_PORTS: Final = {"udp": 5060, "tcp": 5060, "tls": 5061}
"""RFC 3263 §4.2: the port when the URI names none, by transport."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send, and why (a stable snake_case tag)."""

    peer: Peer
    reason: str
    """``contact`` (RFC 3261), ``nat_detected``, ``nat_forced``,
    ``contact_unusable``, ``connection`` (kept on the connection the
    REGISTER came over, the Contact naming another transport) or ``path``
    (the first hop of the registration's Path)."""


def destination(binding: Binding, nat: NatMode = "auto") -> Destination:
    """Where requests to ``binding``'s phone go under ``nat`` (see the
    module docstring)."""
    if binding.path:
        hop = first_hop(binding.path[0], binding.source)
        if hop is not None:
            return Destination(hop, "path")
    return remote_target(binding.contact, binding.source, nat)


def first_hop(route: str, source: Peer) -> Peer | None:
    """Where a request whose first Route (or Path) entry is ``route`` goes
    (§8.1.2, loose routing): that URI's address, as RFC 3263 resolves a
    numeric host. None when it names a host that needs DNS, or is not a
    name-addr at all. ``source`` is where the entry came from: a
    connection it arrived on is reused when the hop is the same place."""
    try:
        uri = parse_name_addr(route).uri
    except HeaderValueError:
        return None
    peer = _contact_peer(uri, source.transport)
    if peer is None:
        return None
    if source.connection is not None and (peer.transport, peer.host, peer.port) == (
            source.transport, source.host, source.port):
        return source
    return peer


def remote_target(contact: str, source: Peer, nat: NatMode = "auto") -> Destination:
    """Where requests go to a phone whose Contact is ``contact`` and whose
    request came from ``source``: a registration's binding, or the caller's
    side of a call (§12.1.1: the remote target is the INVITE's Contact)."""
    if nat == "force":
        return Destination(source, "nat_forced")
    peer = _contact_peer(contact, source.transport)
    if peer is None:
        return Destination(source, "contact_unusable")
    if nat == "auto" and _behind_nat(peer.host, source.host):
        return Destination(source, "nat_detected")
    if source.connection is not None:
        if peer.transport != source.transport:
            # Registered over a connection, the Contact names another
            # transport: the connection wins.
            return Destination(source, "connection")
        return Destination(replace(peer, connection=source.connection), "contact")
    if peer == source:
        # The usual phone: its Contact is where it sends from. The source's
        # object (the transport keeps one per address) serves every call
        # and registration of that phone instead of one copy each.
        return Destination(source, "contact")
    return Destination(peer, "contact")


def _contact_peer(contact: str, registered_over: str) -> Peer | None:
    """The Contact as a transport address, or None when it cannot be used
    without resolving a name (or not at all)."""
    try:
        uri = parse_uri(contact)
    except SipError:
        return None  # the registrar checked it; a stored row may predate that
    if not isinstance(uri, SipUri):
        return None
    named = uri.params.get("transport")
    if uri.scheme == "sips":
        transport = "tls"  # §26.2.2: sips over TCP means TLS; it is never UDP
    else:
        transport = named.lower() if named else registered_over
    default_port = DEFAULT_PORTS.get(transport)
    address = _ip(uri.host)
    if default_port is None or address is None or address.is_unspecified or address.is_multicast:
        return None
    return Peer(transport, str(address), uri.port if uri.port is not None else default_port)


def _behind_nat(contact_host: str, source_host: str) -> bool:
    contact, source = _ip(contact_host), _ip(source_host)
    if contact is None or source is None:
        return True
    if contact == source:
        return False
    # Different addresses: fine for a public host with several of them;
    # anything else is a translator between the phone and us.
    return not (contact.is_global and source.is_global)


@functools.lru_cache(maxsize=4096)  # a few hosts, asked several times a call: parsed once
def _ip(host: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address
