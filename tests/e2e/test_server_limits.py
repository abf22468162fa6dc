"""The transport limits of the dialplan's ``security:`` against `pbx serve`
(issue 12 §1, §4); the transport's own tests run it without the server.

- An idle TCP connection that carries no registration is closed after
  ``tcp_idle_seconds``, while a phone's connection its registration relies
  on stays open and usable, however quiet (the transport's tests fake the
  "in use" answer; this is the server's own, from registrations and calls).
- ``tcp_max_per_source`` from the dialplan: one connection over is closed.
- ``source_packets_per_second``: a source sending faster is answered for
  its burst and the rate, the rest dropped unread and logged sampled.
- 32 MB of line breaks on one connection do not grow the server (they grew
  it by as much before the framer consumed them).
"""

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
security:
  tcp_idle_seconds: 1
  tcp_message_seconds: 30
  tcp_max_per_source: 3
  source_packets_per_second: 50
  unauthenticated_per_second: 100000
  unauthenticated_burst: 100000
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
    (line,) = server.wait_lines('"event":"tcp_idle_closed"')
    assert json.loads(line)["count"] == 1


def test_connections_over_the_dialplans_per_source_cap_are_closed(server: RunningServer) -> None:
    streams = [socket.create_connection(("127.0.0.1", server.tcp_port), timeout=2) for _ in range(5)]
    try:
        assert [closed(sock, 0.3) for sock in streams] == [False, False, False, True, True]
    finally:
        for sock in streams:
            sock.close()
    (line,) = server.wait_lines('"event":"tcp_connection_refused"')
    assert json.loads(line)["limit"] == "max_per_source"


def test_a_source_past_its_packet_rate_is_dropped_unread(server: RunningServer) -> None:
    with SipClient("udp", ("127.0.0.1", server.udp_port), timeout=1.0) as flood:
        flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for n in range(400):  # well within a second: the burst (twice the rate) and a little refill
            flood.send_raw(flood.options_request(DOMAIN, n))
        answered = 0
        while flood.receive(timeout=0.5) is not None:
            answered += 1
    assert 90 <= answered <= 160, answered
    first = [json.loads(line) for line in server.lines_with('"event":"message_dropped"')]
    assert [(e["reason"], e["source"]) for e in first] == [("source_flooding", "127.0.0.1")]


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status", encoding="ascii"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_line_break_flood_is_consumed_not_stored(server: RunningServer) -> None:
    """The attack run's first probe, against the server: 40 MB of bare line
    breaks on one TCP connection grew it by 41 MB. Now 32 MB of them leave
    its memory where it was, and the same connection then carries a
    message as if nothing had happened."""
    pid = server.process.pid  # python -m pbx serve itself
    with SipClient("tcp", ("127.0.0.1", server.tcp_port), timeout=10.0) as sender:
        before = rss_kb(pid)
        chunk = b"\r\n" * (1 << 19)  # 1 MiB
        for _ in range(32):
            sender.sock.sendall(chunk)
        sender.send_raw(sender.register_request("1001", DOMAIN, call_id="after-flood", cseq=1))
        answer = sender.final_response()
        grown = rss_kb(pid) - before
    assert answer is not None and answer.status == 401
    assert grown < 4096, f"{grown} kB"
