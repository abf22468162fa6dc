"""The pure parts of trunk calls: what a gateway's final response means,
answering its challenges, and which sources are trunk gateways."""

from __future__ import annotations

import pytest

from pbx.routing.trunk_config import Gateway, Trunk
from pbx.sip import digest
from pbx.sip.address import Peer
from pbx.sip.message import Response, make_request, make_response
from pbx.trunks.outbound import TrunkDialling, Verdict, verdict
from pbx.trunks.sources import TrunkSources

GATEWAYS = (Gateway(host="198.51.100.1", port=5070), Gateway(host="2001:db8::7", port=5060, transport="tcp"))


def trunk(**changes: object) -> Trunk:
    fields: dict[str, object] = {"key": "viettel", "gateways": GATEWAYS, "username": "0287", "password": "pw",
                                 "domain": "sip.provider.example"}
    fields.update(changes)
    return Trunk(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "expected"), [
    (200, Verdict.ANSWERED), (202, Verdict.ANSWERED),
    (401, Verdict.AUTHENTICATE), (407, Verdict.AUTHENTICATE),
    (408, Verdict.NEXT_GATEWAY), (500, Verdict.NEXT_GATEWAY), (503, Verdict.NEXT_GATEWAY),
    (504, Verdict.NEXT_GATEWAY),
    (403, Verdict.END), (404, Verdict.END), (480, Verdict.END), (484, Verdict.END), (486, Verdict.END),
    (487, Verdict.END), (600, Verdict.END), (603, Verdict.END),
])
def test_verdict_table(status: int, expected: Verdict) -> None:
    assert verdict(status) is expected


def challenge(status: int = 407, *, stale: bool = False, algorithm: digest.Algorithm = digest.Algorithm.MD5
              ) -> Response:
    invite = make_request("INVITE", "sip:+84912345678@sip.provider.example", [
        ("via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc"), ("from", "<sip:0287@x>;tag=1"),
        ("to", "<sip:+84912345678@x>"), ("call-id", "c"), ("cseq", "1 INVITE")])
    header = "proxy-authenticate" if status == 407 else "www-authenticate"
    value = digest.format_challenge("sip.provider.example", "n1", algorithm, stale=stale)
    return make_response(invite, status, headers=[(header, value)])


def test_addresses_of_the_invite() -> None:
    dialling = TrunkDialling(trunk=trunk(), number="+84912345678", caller_id="02873000000")
    assert dialling.request_uri == "sip:+84912345678@sip.provider.example"
    assert dialling.to_uri == "<sip:+84912345678@sip.provider.example>"
    assert dialling.from_uri == "<sip:02873000000@sip.provider.example>"


def test_gateways_in_order_then_none() -> None:
    dialling = TrunkDialling(trunk=trunk(), number="1", caller_id="2")
    assert dialling.gateway == GATEWAYS[0]
    assert dialling.next_gateway("timeout") == GATEWAYS[1]
    assert dialling.next_gateway("503") is None
    assert dialling.failures == [(GATEWAYS[0], "timeout"), (GATEWAYS[1], "503")]


@pytest.mark.parametrize(("status", "header"), [(401, "authorization"), (407, "proxy-authorization")])
def test_credentials_answer_once_per_gateway(status: int, header: str) -> None:
    dialling = TrunkDialling(trunk=trunk(), number="+84912345678", caller_id="2")
    uri = dialling.request_uri
    answer = dialling.credentials(challenge(status), method="INVITE", uri=uri, cnonce="cn")
    assert answer is not None and answer[0] == header
    credentials = digest.parse_credentials(answer[1])
    assert digest.verify(credentials, digest.ha1(digest.Algorithm.MD5, "0287", "sip.provider.example", "pw"),
                         "INVITE")
    # A second plain challenge: the password was refused.
    assert dialling.credentials(challenge(status), method="INVITE", uri=uri, cnonce="cn") is None
    # The next gateway gets its own try.
    dialling.next_gateway("503")
    assert dialling.credentials(challenge(status), method="INVITE", uri=uri, cnonce="cn") is not None


def test_stale_challenges_are_answered_a_bounded_number_of_times() -> None:
    dialling = TrunkDialling(trunk=trunk(), number="1", caller_id="2")
    answers = [dialling.credentials(challenge(stale=True), method="INVITE", uri="sip:1@x", cnonce="c")
               for _ in range(5)]
    assert [a is not None for a in answers] == [True, True, True, False, False]


def test_no_credentials_no_answer() -> None:
    dialling = TrunkDialling(trunk=trunk(username=None, password=None), number="1", caller_id="2")
    assert dialling.credentials(challenge(), method="INVITE", uri="sip:1@x", cnonce="c") is None


def test_sources_match_address_and_port() -> None:
    sources = TrunkSources({"viettel": trunk()})
    assert sources.match(Peer("udp", "198.51.100.1", 5070)) == "viettel"
    assert sources.match(Peer("udp", "198.51.100.1", 5071)) is None
    assert sources.match(Peer("udp", "198.51.100.9", 5070)) is None
    # IPv6 in any spelling, over the registration's TCP connection.
    assert sources.match(Peer("tcp", "2001:0db8:0:0::7", 5060, connection=4)) == "viettel"
    assert sources.peer(GATEWAYS[1]) == Peer("tcp", "2001:db8::7", 5060)
    # The right address and port over the other transport is someone else.
    assert sources.match(Peer("tcp", "198.51.100.1", 5070, connection=9)) is None
    assert sources.match(Peer("udp", "2001:db8::7", 5060)) is None


def test_sources_of_gateways_given_by_name() -> None:
    named = trunk(gateways=(Gateway(host="GW.Provider.Example", port=5060),))
    sources = TrunkSources({"viettel": named}, {"GW.Provider.Example": ("203.0.113.5", "203.0.113.6")})
    assert sources.match(Peer("udp", "203.0.113.6", 5060)) == "viettel"
    assert sources.peer(named.gateways[0]) == Peer("udp", "203.0.113.5", 5060)
    unresolved = TrunkSources({"viettel": named})
    assert unresolved.match(Peer("udp", "203.0.113.5", 5060)) is None
    assert unresolved.peer(named.gateways[0]) == Peer("udp", "gw.provider.example", 5060)


def test_inbound_source_networks_match_any_port_of_their_addresses() -> None:
    import ipaddress

    wider = trunk(inbound_sources=(ipaddress.ip_network("203.0.113.0/28"), ipaddress.ip_network("2001:db8:5::/48")))
    sources = TrunkSources({"viettel": wider})
    assert sources.match(Peer("udp", "203.0.113.9", 40123)) == "viettel"
    assert sources.match(Peer("udp", "2001:db8:5:1::20", 5060)) == "viettel"
    assert sources.match(Peer("udp", "203.0.113.16", 5060)) is None  # just outside the /28
    assert sources.match(Peer("udp", "phone.example", 5060)) is None
    # The gateways still match by address and port as before.
    assert sources.match(Peer("udp", "198.51.100.1", 5070)) == "viettel"
    assert sources.match(Peer("udp", "198.51.100.1", 5071)) is None
