"""The outside attack run's probes that had only unit tests, on real sockets
(issue 12 §2, §3, §5): `pbx serve` with the example dialplan, its trunks'
gateways replaced by UDP sockets this test holds (as in
test_number_fraud.py).

- A digest computed for one Request-URI, sent on an INVITE to another
  (the attack run's INVITE to 0912345678 carrying a response made for
  ``sip:1002@…``), is refused and nothing reaches a trunk; so is an INVITE
  digest without ``qop`` (the example keeps the default, REGISTER only).
- A trunk's gateway is never silenced: while 127.0.0.1, the gateways'
  address, is blocked as a username scanner and out of unauthenticated
  tokens, the gateway's INVITE to a DID is still served without a challenge.
- A TCP connection from a UDP gateway's address and port is not the trunk:
  it is challenged like anyone.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pbx.sip import digest
from pbx.sip.message import Response
from pbx.sip.parser import StreamFramer, parse_message
from tests.e2e.sipua import sdp
from tests.e2e.test_number_fraud import PASSWORDS, Gateways, example_server, gateways  # noqa: F401 (a fixture)
from tests.server import RunningServer
from tests.sipclient import SipClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

DOMAIN = "pbx.example.com"
DIRECTORS_DID = "+842873000101"  # rings 1001 (example dialplan: inbound)

Answer = Callable[[str, str], str]
"""Makes a Proxy-Authorization value from a challenge and the Request-URI."""


@pytest.fixture
def server(tmp_path: Path, gateways: Gateways) -> Iterator[RunningServer]:
    with example_server(tmp_path, gateways, ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]) as running:
        yield running


def logged(server: RunningServer, event: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.lines_with(f'"event":"{event}"')]


def invite_with(server: RunningServer, number: str, answer: Answer, wait: float = 3.0) -> Response | None:
    """1001 INVITEs ``number``; its 407 is answered by ``answer(challenge,
    request_uri)``. The final response to the second INVITE within
    ``wait`` seconds, or None."""
    with SipClient("udp", ("127.0.0.1", server.udp_port), timeout=3.0) as phone:
        call_id, tag = f"probe-{secrets.token_hex(4)}", secrets.token_hex(4)
        first = phone.invite_request("1001", number, DOMAIN, call_id=call_id, cseq=1, from_tag=tag,
                                     branch=f"z9hG4bK{secrets.token_hex(8)}")
        phone.send_raw(first)
        challenge = phone.final_response()
        assert challenge is not None and challenge.status == 407, challenge
        phone.ack(first, challenge)
        value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
        assert value is not None
        second = phone.invite_request("1001", number, DOMAIN, call_id=call_id, cseq=2, from_tag=tag,
                                      branch=f"z9hG4bK{secrets.token_hex(8)}",
                                      proxy_authorization=answer(value, f"sip:{number}@{DOMAIN}"))
        phone.send_raw(second)
        final = phone.final_response(wait)
        if final is not None:
            phone.ack(second, final)
        return final


def with_uri(uri: str | None) -> Answer:
    """1001's right password, its response computed for ``uri`` (None: the
    Request-URI itself)."""
    def answer(challenge: str, request_uri: str) -> str:
        return digest.answer_challenge(challenge, username="1001", password=PASSWORDS["1001"], method="INVITE",
                                       uri=uri or request_uri, cnonce=secrets.token_hex(4), nc=1)
    return answer


def without_qop(challenge: str, request_uri: str) -> str:
    """An RFC 2069 answer: no qop, no cnonce, no nc (right password)."""
    parsed = digest.parse_challenge(challenge)
    ha1 = digest.ha1(parsed.algorithm, "1001", DOMAIN, PASSWORDS["1001"])
    response = digest.response_for(parsed.algorithm, ha1, parsed.nonce, "INVITE", request_uri, None, None, None)
    return (f'Digest username="1001", realm="{DOMAIN}", nonce="{parsed.nonce}", uri="{request_uri}", '
            f'response="{response}", algorithm={parsed.algorithm.value}')


def test_a_digest_for_another_request_uri_is_refused_before_any_trunk(server: RunningServer,
                                                                      gateways: Gateways) -> None:
    # The attack run's replay: a response made for a call to 1002, on a call out.
    final = invite_with(server, "0912345678", with_uri(f"sip:1002@{DOMAIN}"))
    assert final is not None and final.status == 407
    assert gateways.invites(gateways.viettel, 0.5) == [] and gateways.invites(gateways.cht, 0.1) == []
    assert [e["reason"] for e in logged(server, "auth_failed")] == ["uri_mismatch"]
    # The control: the same password for the Request-URI itself does reach the trunk.
    invite_with(server, "0912345678", with_uri(None), wait=0.2)
    reached = gateways.invites(gateways.viettel, 2.0)  # declined at once (a retransmission or two, maybe)
    assert reached and {r.uri for r in reached} == {"sip:+84912345678@sip.provider.example"}


def test_an_invite_digest_without_qop_is_refused_before_any_trunk(server: RunningServer,
                                                                   gateways: Gateways) -> None:
    final = invite_with(server, "0912345678", without_qop)
    assert final is not None and final.status == 407
    assert gateways.invites(gateways.viettel, 0.5) == [] and gateways.invites(gateways.cht, 0.1) == []


def test_a_gateway_is_served_while_its_address_is_blocked_and_rate_limited(server: RunningServer,
                                                                         gateways: Gateways) -> None:
    with SipClient("udp", ("127.0.0.1", server.udp_port), timeout=1.0) as scanner:
        # Ten usernames failing from 127.0.0.1 block the whole address
        # (scan_usernames, default 10) ...
        for n in range(10):
            scanner.register(f"77{n:02d}", "1234", DOMAIN)
        server.wait_lines('"event":"security_block"')
        assert [(b["source"], b["scope"]) for b in logged(server, "security_block")] == [("127.0.0.1", "source")]
        # ... and a flood of unauthenticated requests empties its bucket
        # (unauthenticated_burst, default 400).
        for n in range(450):
            scanner.send_raw(scanner.register_request("1002", DOMAIN, call_id=f"flood-{n}", cseq=1))
        server.wait_lines('"event":"source_rate_limited"')
    # The provider, on that same address, delivers a call to a DID: no
    # challenge, no silence.
    provider = gateways.viettel
    dialog = provider.new_dialog(DIRECTORS_DID)
    dialog.invite = dialog.send("INVITE", body=sdp(41000))
    dialog.invite_cseq = dialog.local_cseq
    response = dialog.expect_response(method="INVITE", timeout=5.0)
    assert response.status not in (401, 407), response.status
    while response.status < 200:
        response = dialog.expect_response(method="INVITE", timeout=30.0)
    assert response.status not in (401, 407), response.status
    if response.status < 300:
        dialog.confirm(response)
        dialog.ack()
        dialog.send("BYE")
        dialog.expect_response(method="BYE")


def test_a_tcp_connection_from_a_udp_gateways_port_is_challenged(server: RunningServer,
                                                                   gateways: Gateways) -> None:
    port = gateways.viettel.local[1]  # the gateway's own UDP port, now over TCP
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.settimeout(5.0)
        sock.connect(("127.0.0.1", server.tcp_port))
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        lines = [
            f"INVITE sip:{DIRECTORS_DID}@127.0.0.1:{server.tcp_port} SIP/2.0",
            f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:viettel@sip.provider.example>;tag={secrets.token_hex(4)}",
            f"To: <sip:{DIRECTORS_DID}@{DOMAIN}>",
            f"Call-ID: tcp-gw-{secrets.token_hex(4)}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:viettel@127.0.0.1:{port};transport=tcp>",
            "Content-Length: 0",
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        framer, final = StreamFramer(), None
        while final is None:
            chunk = sock.recv(65535)
            assert chunk, "the server closed the connection without an answer"
            for frame in framer.feed(chunk):
                message = parse_message(frame) if frame.strip() else None
                if isinstance(message, Response) and message.status >= 200:
                    final = message
    # Taken as the trunk (before), the call would have rung 1001 unchallenged.
    assert final.status == 407
