"""Which trunk a request came from, and where a trunk's gateways are.

Pure lookup tables built from the dialplan's trunks and the addresses their
host names resolved to (resolution is the asyncio side's job).

A request counts as coming from a trunk when its source address, port *and
transport* are one of the trunk's gateways (a TCP connection from the port
of a gateway configured for UDP is someone else, not the provider). The port matters: a provider's SIP server
sends from the port it listens on (what RFC 3581 symmetric signalling
relies on), and matching the address alone would let anything else on the
same host, e.g. a phone beside a test provider on 127.0.0.1, bypass
authentication. Requests over the TCP connection the PBX opened to a
gateway (its registration's) carry that gateway's address and port, so
they match too. A trunk's ``inbound_sources`` networks match on address
alone, for providers that deliver calls from other machines. Anything else
is an ordinary caller and is challenged.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping

from pbx.routing.trunk_config import Gateway, Network, Trunk
from pbx.sip.address import Peer


# Asked for every datagram (is it a trunk's?), and parsing an address with
# `ipaddress` is most of that; a server hears from few distinct addresses,
# and a flood of new ones only churns the cache.
@functools.lru_cache(maxsize=4096)
def normalise_host(host: str) -> str:
    """An IP address in its canonical text form (``::1``, not ``[0::1]``);
    a name lower-cased."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text.lower()


class TrunkSources:
    """Gateway addresses -> trunk key, and gateway -> where to send."""

    def __init__(self, trunks: Mapping[str, Trunk] | None = None,
                 resolved: Mapping[str, tuple[str, ...]] | None = None) -> None:
        """``resolved`` maps a gateway host name to its IP addresses; hosts
        given as IP addresses need no entry."""
        self._by_address: dict[tuple[str, int, str], str] = {}
        self._networks: list[tuple[Network, str]] = []
        self._peers: dict[Gateway, Peer] = {}
        self._tls: dict[tuple[str, int], Gateway] = {}
        resolved = resolved or {}
        for key, trunk in (trunks or {}).items():
            self._networks.extend((network, key) for network in trunk.inbound_sources)
            for gateway in trunk.gateways:
                addresses = resolved.get(gateway.host) or (gateway.host,)
                for address in addresses:
                    # Two trunks on one gateway address: the first keeps it
                    # (the loader warns about such a plan).
                    self._by_address.setdefault((normalise_host(address), gateway.port, gateway.transport), key)
                    if gateway.transport == "tls":
                        self._tls.setdefault((normalise_host(address), gateway.port), gateway)
                self._peers[gateway] = Peer(gateway.transport, normalise_host(addresses[0]), gateway.port)

    def match(self, source: Peer) -> str | None:
        """The key of the trunk ``source`` is a gateway of, or None."""
        if not self._by_address and not self._networks:
            return None  # no trunks: the common case on a phones-only plan
        host = normalise_host(source.host)
        found = self._by_address.get((host, source.port, source.transport))
        if found is not None or not self._networks:
            return found
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        for network, key in self._networks:
            if address in network:
                return key
        return None

    def peer(self, gateway: Gateway) -> Peer:
        """Where to send to ``gateway``."""
        found = self._peers.get(gateway)
        if found is not None:
            return found
        return Peer(gateway.transport, normalise_host(gateway.host), gateway.port)

    def tls_gateway(self, dest: Peer) -> Gateway | None:
        """The TLS gateway at ``dest``'s address: how to check its certificate."""
        return self._tls.get((normalise_host(dest.host), dest.port))

    def __len__(self) -> int:
        return len(self._by_address)
