"""SIP over WebSocket (RFC 7118) through a real `pbx serve --listen ws:`
(and wss:): a browser-style client registers, calls a pjsua2 phone and is
called by it over the connection it registered on."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.server import RunningServer, run_server
from tests.tls_certs import write_leaf
from tests.wsclient import WsPhone

from .harness import DOMAIN
from .phone import PhoneFactory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DIALPLAN = """\
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An Nguyen, department: sales, password: an-secret-1001}
  1004: {name: Dung Pham, department: sales, password: dung-secret-1004}
security:
  tcp_max_per_source: 3
"""


@pytest.fixture
def ws_server(tmp_path: Path) -> Iterator[tuple[RunningServer, trustme.CA]]:
    ca = trustme.CA()
    cert, key = write_leaf(ca, tmp_path / "tls", "127.0.0.1")
    plan = tmp_path / "plan.yaml"
    plan.write_text(DIALPLAN)
    with run_server(plan, f"sqlite:///{tmp_path / 'pbx.sqlite3'}",
                    ["udp:127.0.0.1:0", "ws:127.0.0.1:0", "wss:127.0.0.1:0"],
                    ("--tls-cert", str(cert), "--tls-key", str(key))) as server:
        yield server, ca


def url(server: RunningServer, scheme: str) -> str:
    port = next(l.port for l in server.listening if l.transport == scheme)
    return f"{scheme}://127.0.0.1:{port}"


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_a_websocket_phone_registers_and_calls_a_pjsua2_phone(
        ws_server: tuple[RunningServer, trustme.CA], phones: PhoneFactory, scheme: str) -> None:
    server, ca = ws_server
    bob = phones("ext1004")
    assert bob.register("1004", "dung-secret-1004", DOMAIN, f"127.0.0.1:{server.udp_port}",
                        auto_answer=200)["code"] == 200
    context = None
    if scheme == "wss":
        context = ssl.create_default_context()
        ca.configure_trust(context)

    async def scenario() -> tuple[int, int, int]:
        alice = WsPhone(url(server, scheme), "1001", "an-secret-1001", DOMAIN, ssl_context=context)
        await alice.open()
        registered = await alice.register()
        answer, call_id, tag = await alice.call("1004")
        await asyncio.sleep(0.5)
        bye = await alice.hang_up(answer, call_id, tag)
        await alice.close()
        return registered.status, answer.status, bye.status

    assert asyncio.run(scenario()) == (200, 200, 200)
    bob.wait_call_state("CONFIRMED", timeout=10.0)
    bob.wait_call_state("DISCONNECTED", timeout=10.0)


def test_a_pjsua2_phone_reaches_a_websocket_phone_over_its_connection(
        ws_server: tuple[RunningServer, trustme.CA], phones: PhoneFactory) -> None:
    server, _ = ws_server
    bob = phones("ext1004")
    assert bob.register("1004", "dung-secret-1004", DOMAIN, f"127.0.0.1:{server.udp_port}")["code"] == 200

    async def scenario() -> tuple[str, str]:
        alice = WsPhone(url(server, "ws"), "1001", "an-secret-1001", DOMAIN)
        await alice.open()
        assert (await alice.register()).status == 200
        call = await asyncio.to_thread(bob.call, f"sip:1001@127.0.0.1:{server.udp_port}")
        invite = await alice.answer_incoming()
        await asyncio.to_thread(bob.wait_for, "media_state", 10.0, call=call, status="active")
        await asyncio.to_thread(bob.hangup, call)
        await alice.expect_request("BYE")
        await alice.close()
        return invite.uri, invite.get("via") or ""

    uri, via = asyncio.run(scenario())
    assert uri.endswith(".invalid;transport=ws")          # its Contact: no address, only the connection
    assert via.startswith("SIP/2.0/WS 127.0.0.1:")


def test_websocket_handshakes_without_sip_or_over_the_limit_are_refused(
        ws_server: tuple[RunningServer, trustme.CA]) -> None:
    server, _ = ws_server

    async def scenario() -> tuple[int | None, int]:
        try:
            async with connect(url(server, "ws")):            # no "sip" subprotocol
                code = 101
        except InvalidStatus as status:
            code = status.response.status_code
        held = [await connect(url(server, "ws"), subprotocols=["sip"]) for _ in range(3)]  # type: ignore[list-item]
        try:
            await connect(url(server, "ws"), subprotocols=["sip"])  # type: ignore[list-item]
            refused = 101
        except InvalidStatus as status:
            refused = status.response.status_code
        for socket in held:
            await socket.close()
        return code, refused

    assert asyncio.run(scenario()) == (400, 503)
