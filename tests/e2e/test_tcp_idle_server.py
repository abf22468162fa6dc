"""Idle TCP connections against `pbx serve` (issue 12 §1): one that carries
no registration is closed after ``tcp_idle_seconds``, while a phone's
connection its registration relies on stays open and usable, however quiet
(the transport's unit tests fake the "in use" answer; this is the server's
own, from its registrations and calls)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.server import RunningServer
from tests.sipclient import SipClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DOMAIN = "pbx.example.com"


@pytest.fixture
def dialplan() -> str:
    return """\
domain: pbx.example.com
security: {tcp_idle_seconds: 1, tcp_message_seconds: 30}
departments:
  sales: {name: Sales, voicemail: {enabled: false}}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}
"""


def closed(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(4096) == b""
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def test_an_unregistered_connection_is_closed_when_idle_and_a_phones_is_not(server: RunningServer) -> None:
    with SipClient("tcp", ("127.0.0.1", server.tcp_port)) as phone, \
            SipClient("tcp", ("127.0.0.1", server.tcp_port)) as stranger:
        ok = phone.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200
        # The stranger talks once (challenged, never registers), then idles.
        stranger.send_raw(stranger.register_request("1001", DOMAIN, call_id="stranger-1", cseq=1))
        challenge = stranger.final_response()
        assert challenge is not None and challenge.status == 401
        time.sleep(2.5)  # past tcp_idle_seconds, and the once-a-second sweep
        assert closed(stranger.sock, 1.0)
        assert not closed(phone.sock, 0.2)
        again = phone.register("1001", "an-secret-1001", DOMAIN)  # the same connection still carries it
        assert again is not None and again.status == 200
    (line,) = server.lines_with('"event":"tcp_idle_closed"')
    assert json.loads(line)["count"] == 1
