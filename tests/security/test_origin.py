"""The client behind a trusted edge proxy (pbx/security/origin.py), and the
dialplan key that names the proxies (security.trusted_proxies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.routing.loader import check_dialplan, load_dialplan
from pbx.security.origin import client_of
from pbx.sip.address import Peer
from pbx.sip.message import Request, make_request

EDGE = Peer("udp", "10.0.0.5", 5060)
EDGE_VIA = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKedge"


def request(*vias: str) -> Request:
    return make_request("REGISTER", "sip:pbx.example.com", [
        *(("via", via) for via in vias), ("from", "<sip:1001@pbx.example.com>;tag=a"),
        ("to", "<sip:1001@pbx.example.com>"), ("call-id", "c1"), ("cseq", "1 REGISTER")])


@pytest.mark.parametrize(("vias", "source", "expected"), [
    # Not from a trusted proxy: the packet's source is the client.
    ((EDGE_VIA, "SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKa"), Peer("udp", "198.51.100.9", 5060), None),
    # Behind NAT: the edge wrote where the packet came from (received, rport).
    ((EDGE_VIA, "SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKa;received=198.51.100.7;rport=40123"), EDGE,
     Peer("udp", "198.51.100.7", 40123)),
    # Not behind NAT: the sent-by is right, the edge added nothing.
    ((EDGE_VIA, "SIP/2.0/TCP 198.51.100.8:5062;branch=z9hG4bKa"), EDGE, Peer("tcp", "198.51.100.8", 5062)),
    ((EDGE_VIA, "SIP/2.0/UDP 198.51.100.8;branch=z9hG4bKa;rport=5099"), EDGE, Peer("udp", "198.51.100.8", 5099)),
    # Two trusted hops: past both.
    ((EDGE_VIA, "SIP/2.0/UDP 10.0.0.6:5060;branch=z9hG4bKb",
      "SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKa;received=198.51.100.7;rport=4000"), EDGE,
     Peer("udp", "198.51.100.7", 4000)),
    # A Via that cannot be read, or names a host: the edge stays the source.
    ((EDGE_VIA, "garbage"), EDGE, EDGE),
    ((EDGE_VIA, "SIP/2.0/UDP phone.example.com:5060;branch=z9hG4bKa"), EDGE, EDGE),
    ((EDGE_VIA,), EDGE, EDGE),
])
def test_the_client_behind_a_trusted_edge(vias: tuple[str, ...], source: Peer, expected: Peer | None) -> None:
    assert client_of(request(*vias), source, {"10.0.0.5", "10.0.0.6"}) == expected


PLAN = """\
domain: pbx.example.com
departments:
  ops: {{name: Ops}}
extensions:
  1001: {{name: A, department: ops, password: a-secret-1001}}
security:
  trusted_proxies: {proxies}
"""


def test_the_key_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.format(proxies='["10.0.0.5", "2001:db8::0:1"]'))
    assert load_dialplan(path).security.trusted_proxies == frozenset({"10.0.0.5", "2001:db8::1"})


@pytest.mark.parametrize("proxies", ['["999.1.1.1"]', '["edge.example.com"]', '"10.0.0.5"'])
def test_a_bad_entry_is_reported_at_its_place(tmp_path: Path, proxies: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.format(proxies=proxies))
    problems = [str(problem) for problem in check_dialplan(path)]
    assert problems and all(p.startswith(f"{path}:7:") for p in problems), problems
