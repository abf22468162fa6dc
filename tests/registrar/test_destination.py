"""Where a call to a registered phone is sent: the Contact (RFC 3261, RFC
3263 §4 for an address), the REGISTER's source when NAT is seen or forced."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pbx.registrar.bindings import Binding
from pbx.registrar.destination import Destination, destination
from pbx.routing.dialplan import NatMode
from pbx.sip.address import Peer

LOOPBACK = Peer("udp", "127.0.0.1", 40001)
NAT_PUBLIC = Peer("udp", "8.8.4.4", 61000)  # a home router's public mapping
LAN = Peer("udp", "192.168.1.50", 5060)


def binding(contact: str, source: Peer) -> Binding:
    return Binding(aor="1001", contact=contact, expires_at=1000.0, call_id="reg-1", cseq=1, source=source)


# (contact, source, nat, expected destination, reason)
CASES = [
    # RFC 3261: the Contact, resolved as RFC 3263 §4 says for an address.
    ("sip:1001@127.0.0.1:5090", LOOPBACK, "auto", Peer("udp", "127.0.0.1", 5090), "contact"),
    ("sip:1001@127.0.0.1", LOOPBACK, "auto", Peer("udp", "127.0.0.1", 5060), "contact"),
    ("sip:1001@127.0.0.1;transport=TCP", LOOPBACK, "auto", Peer("tcp", "127.0.0.1", 5060), "contact"),
    ("sip:1001@127.0.0.1", Peer("tls", "127.0.0.1", 40001), "auto", Peer("tls", "127.0.0.1", 5061), "contact"),
    ("sip:1001@127.0.0.1;transport=tls", LOOPBACK, "auto", Peer("tls", "127.0.0.1", 5061), "contact"),
    ("sips:1001@127.0.0.1", LOOPBACK, "auto", Peer("tls", "127.0.0.1", 5061), "contact"),
    ("sips:1001@127.0.0.1:5071;transport=tcp", LOOPBACK, "auto", Peer("tls", "127.0.0.1", 5071), "contact"),
    ("sip:1001@[::1]:5090", Peer("udp", "::1", 40001), "auto", Peer("udp", "::1", 5090), "contact"),
    ("sip:1001@192.168.1.50:5062", LAN, "auto", Peer("udp", "192.168.1.50", 5062), "contact"),
    # A dual-stack socket sees an IPv4 phone as ::ffff:a.b.c.d: the same host.
    ("sip:1001@127.0.0.1:5090", Peer("udp", "::ffff:127.0.0.1", 40001), "auto",
     Peer("udp", "127.0.0.1", 5090), "contact"),
    # A public host with two public addresses is no translator.
    ("sip:1001@8.8.8.8:5060", NAT_PUBLIC, "auto", Peer("udp", "8.8.8.8", 5060), "contact"),
    # NAT: a private, shared, link-local or loopback Contact seen from elsewhere.
    ("sip:1001@10.0.0.5:5060", LOOPBACK, "auto", LOOPBACK, "nat_detected"),
    ("sip:1001@192.168.1.50:5060", NAT_PUBLIC, "auto", NAT_PUBLIC, "nat_detected"),
    ("sip:1001@172.16.4.4", NAT_PUBLIC, "auto", NAT_PUBLIC, "nat_detected"),
    ("sip:1001@100.64.1.9:5060", NAT_PUBLIC, "auto", NAT_PUBLIC, "nat_detected"),  # RFC 6598 (CGN)
    ("sip:1001@169.254.7.7:5060", NAT_PUBLIC, "auto", NAT_PUBLIC, "nat_detected"),
    ("sip:1001@127.0.0.1:5060", LAN, "auto", LAN, "nat_detected"),
    ("sip:1001@[fd00::5]:5060", Peer("udp", "2001:4860::1", 9000), "auto",
     Peer("udp", "2001:4860::1", 9000), "nat_detected"),
    # ... or a public Contact (learnt by STUN) sent from a private network.
    ("sip:1001@8.8.8.8:5060", LAN, "auto", LAN, "nat_detected"),
    # nat: force and nat: never.
    ("sip:1001@127.0.0.1:5090", LOOPBACK, "force", LOOPBACK, "nat_forced"),
    ("sip:1001@10.0.0.5:5060", LOOPBACK, "never", Peer("udp", "10.0.0.5", 5060), "contact"),
    # Unusable as written, whatever the setting: the source reached us.
    ("sip:1001@phone.example.com:5060", LOOPBACK, "never", LOOPBACK, "contact_unusable"),
    ("sip:1001@0.0.0.0:5060", LOOPBACK, "auto", LOOPBACK, "contact_unusable"),
    ("sip:1001@224.0.1.75:5060", LOOPBACK, "never", LOOPBACK, "contact_unusable"),
    ("sip:1001@127.0.0.1:5060;transport=sctp", LOOPBACK, "auto", LOOPBACK, "contact_unusable"),
    ("tel:+84912345678", LOOPBACK, "auto", LOOPBACK, "contact_unusable"),
    ("not a uri", LOOPBACK, "auto", LOOPBACK, "contact_unusable"),
]


@pytest.mark.parametrize(("contact", "source", "nat", "expected", "reason"), CASES)
def test_destination(contact: str, source: Peer, nat: NatMode, expected: Peer, reason: str) -> None:
    assert destination(binding(contact, source), nat) == Destination(expected, reason)


def test_a_contact_where_the_phone_sends_from_is_its_source() -> None:
    # The same object, not an equal copy: every call to the phone shares it.
    assert destination(binding("sip:1001@127.0.0.1:40001", LOOPBACK)).peer is LOOPBACK


def test_default_is_auto() -> None:
    assert destination(binding("sip:1001@10.0.0.5", LOOPBACK)).reason == "nat_detected"
    assert destination(binding("sip:1001@127.0.0.1:5090", LOOPBACK)).peer.port == 5090


# A phone registered over a connection: the connection stays in use while it
# lives (RFC 5923); the address is where to connect once it has closed.
TCP_SOURCE = Peer("tcp", "127.0.0.1", 51000, connection=7)


@pytest.mark.parametrize(
    ("contact", "nat", "expected", "reason"),
    [
        ("sip:1001@127.0.0.1:5070;transport=tcp", "auto", Peer("tcp", "127.0.0.1", 5070, 7), "contact"),
        # No transport parameter: the one the phone registered over.
        ("sip:1001@127.0.0.1:5070", "auto", Peer("tcp", "127.0.0.1", 5070, 7), "contact"),
        # Another transport named: the connection wins.
        ("sip:1001@127.0.0.1:5070;transport=udp", "never", TCP_SOURCE, "connection"),
        ("sip:1001@10.0.0.5:5070;transport=tcp", "auto", TCP_SOURCE, "nat_detected"),
        ("sip:1001@127.0.0.1:5070;transport=tcp", "force", TCP_SOURCE, "nat_forced"),
    ],
)
def test_a_connection_is_kept(contact: str, nat: NatMode, expected: Peer, reason: str) -> None:
    found = destination(binding(contact, TCP_SOURCE), nat)
    assert found == Destination(expected, reason)
    assert found.peer.connection == 7


def test_a_stored_tcp_binding_reconnects_to_the_contact() -> None:
    # After a restart the connection is gone (binding_of: connection None):
    # a new one goes where the phone listens, not to its old client port.
    stored = Peer("tcp", "127.0.0.1", 51000)
    found = destination(binding("sip:1001@127.0.0.1:5070;transport=tcp", stored))
    assert found == Destination(Peer("tcp", "127.0.0.1", 5070), "contact")


EDGE = "<sip:127.0.0.1:5180;lr;received=sip:127.0.0.1:40123>"


@pytest.mark.parametrize(("path", "nat", "expected"), [
    # RFC 3327 §5.1: through the edge the phone registered through, whatever
    # the Contact or NAT say (the edge holds the mapping).
    ((EDGE,), "auto", Destination(Peer("udp", "127.0.0.1", 5180), "path")),
    ((EDGE,), "force", Destination(Peer("udp", "127.0.0.1", 5180), "path")),
    (("<sip:127.0.0.1:5181;transport=tcp;lr>", EDGE), "never", Destination(Peer("tcp", "127.0.0.1", 5181), "path")),
    # A Path naming a host by name cannot be used without DNS: as without Path.
    (("<sip:edge.example.com;lr>",), "never", Destination(Peer("udp", "192.168.1.50", 5060), "contact")),
    (("garbage",), "never", Destination(Peer("udp", "192.168.1.50", 5060), "contact")),
])
def test_a_binding_with_a_path_goes_through_it(path: tuple[str, ...], nat: NatMode, expected: Destination) -> None:
    bound = replace(binding("sip:1001@192.168.1.50", NAT_PUBLIC), path=path)
    assert destination(bound, nat) == expected
