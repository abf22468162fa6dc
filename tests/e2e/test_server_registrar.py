"""`pbx serve` as a process, over real UDP and TCP sockets."""

from __future__ import annotations

import time

import pytest

from pbx.sip.message import parse_name_addr
from tests.server import RunningServer
from tests.sipclient import SipClient

from .harness import DOMAIN

pytestmark = pytest.mark.e2e

DIALPLAN = """\
domain: pbx.example.com
registrar: {min_expires: 60, max_expires: 3600, default_expires: 600}
security: {max_auth_failures: 4, failure_window: 60, block_seconds: 3}
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}
  1002: {name: Binh, department: sales, password: binh-secret-1002}
"""


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def client(server: RunningServer, transport: str) -> SipClient:
    port = server.udp_port if transport == "udp" else server.tcp_port
    return SipClient(transport, ("127.0.0.1", port))


def contacts(response: object) -> dict[str, int]:
    from pbx.sip.message import Response

    assert isinstance(response, Response)
    return {
        parse_name_addr(v).uri: int(parse_name_addr(v).params["expires"] or -1)
        for v in response.get_all("contact")
    }


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_query_unregister(server: RunningServer, transport: str) -> None:
    with client(server, transport) as phone:
        ok = phone.register("1001", "an-secret-1001", DOMAIN, expires=300)
        assert ok is not None and ok.status == 200
        host, port = phone.local
        mine = f"sip:1001@{host}:{port};transport={transport}"
        assert contacts(ok) == {mine: 300}
        query = phone.register("1001", "an-secret-1001", DOMAIN, contact=None, expires=None)
        assert query is not None and query.status == 200 and mine in contacts(query)
        gone = phone.register("1001", "an-secret-1001", DOMAIN, expires=0)
        assert gone is not None and gone.status == 200 and contacts(gone) == {}


def test_options_and_unsupported_method(server: RunningServer) -> None:
    with client(server, "udp") as probe:
        host, port = probe.local
        base = (
            "{method} sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch}\r\n"
            "From: <sip:x@example.org>;tag=1\r\nTo: <sip:pbx.example.com>\r\nCall-ID: opt-{branch}\r\n"
            "CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        probe.send_raw(base.format(method="OPTIONS", host=host, port=port, branch="o1").encode())
        answer = probe.final_response()
        assert answer is not None and answer.status == 200
        assert "REGISTER" in (answer.get("allow") or "")
        assert answer.has("accept") and answer.has("supported")
        probe.send_raw(base.format(method="PUBLISH", host=host, port=port, branch="p1").encode())
        refused = probe.final_response()
        assert refused is not None and refused.status == 405 and refused.has("allow")


def test_restart_keeps_registrations(server: RunningServer) -> None:
    with client(server, "udp") as phone:
        assert (ok := phone.register("1002", "binh-secret-1002", DOMAIN, expires=900)) is not None
        assert ok.status == 200
        host, port = phone.local
    server.restart()
    with client(server, "udp") as other:
        query = other.register("1002", "binh-secret-1002", DOMAIN, contact=None, expires=None)
        assert query is not None and query.status == 200
        remaining = contacts(query)
        assert f"sip:1002@{host}:{port};transport=udp" in remaining
        assert 800 < remaining[f"sip:1002@{host}:{port};transport=udp"] <= 900


def test_unknown_user_and_wrong_password_answer_alike(server: RunningServer) -> None:
    with client(server, "udp") as phone:
        wrong = phone.register("1001", "not-the-password", DOMAIN)
        unknown = phone.register("1999", "whatever", DOMAIN)
        assert wrong is not None and unknown is not None
        assert (wrong.status, wrong.reason) == (unknown.status, unknown.reason) == (401, "Unauthorized")


def test_wrong_password_never_registers_and_gets_blocked_over_tcp(server: RunningServer) -> None:
    """tests/e2e/test_lockout.py has the rules over UDP; the same over TCP."""
    with client(server, "tcp") as attacker:
        answers = [attacker.register("1001", f"guess-{i}", DOMAIN) for i in range(4)]
        assert [a.status if a else None for a in answers] == [401, 401, 401, None]
        assert attacker.register("1001", "guess-5", DOMAIN) is None  # blocked: failures go unanswered
        time.sleep(2.1)  # blocked_retry_seconds (default 2): then the owner's password is checked
        ok = attacker.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200
    log = server.output()
    assert '"event":"security_block"' in log
    assert "an-secret-1001" not in log and "guess-" not in log


# --------------------------------------------------------------- bad input

VALID_HEAD = (
    "Via: SIP/2.0/{t} 127.0.0.1:{port};branch=z9hG4bK{b}\r\n"
    "From: <sip:1001@pbx.example.com>;tag=1\r\nTo: <sip:1001@pbx.example.com>\r\n"
    "Call-ID: junk-{b}@127.0.0.1\r\n"
)


def corpus(transport: str, port: int) -> list[tuple[bytes, int | None]]:
    """(message, status expected back or None for silence)."""
    t = transport.upper()

    def head(b: str) -> str:
        return VALID_HEAD.format(t=t, port=port, b=b)

    return [
        (b"\x00\xff\xfe binary junk \x01\x02\r\n\r\n", None),
        (("OPTIONS sip:pbx.example.com SIP/2.0\r\n" + head("a1") + "\r\n").encode(), None),  # no CSeq
        (("OPTIONS sip:pbx.example.com SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n").encode(), None),
        (("OPTIONS sip:pbx.example.com SIP/2.0\r\n" + head("a2") + "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode(), 400),
        (("OPTIONS sip:pbx.example.com SIP/2.0\r\n" + head("a3") + "CSeq: 1 OPTIONS\r\nContent-Length: zz\r\n\r\n").encode(), 400 if transport == "udp" else None),
        (("OPTIONS sip:10%0D%0AX-Evil:%201@pbx.example.com SIP/2.0\r\n" + head("a4") + "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(), 400),
        (("OPTIONS sip:1@pbx.example.com?Route=%3Csip:evil%3E SIP/2.0\r\n" + head("a5") + "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(), 400),
        (("OPTIONS mailto:x@y SIP/2.0\r\n" + head("a6") + "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(), 416),
        (("OPTIONS sip:pbx.example.com SIP/7.0\r\n" + head("a7") + "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(), 505),
        (("INVITE sip:1002@pbx.example.com SIP/2.0\r\n" + head("a8") + "CSeq: 1 INVITE\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n").encode(), 483),
        (("OPTIONS sip:pbx.example.com SIP/2.0\r\n" + head("a9") + "CSeq: 1 OPTIONS\r\nX-Big: " + "b" * 60_000 + "\r\nContent-Length: 0\r\n\r\n").encode(), 513),
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_broken_corpus_then_valid_register(server: RunningServer, transport: str) -> None:
    with client(server, transport) as sender:
        _, port = sender.local
        for data, expected in corpus(transport, port):
            if transport == "tcp" and expected is None:
                continue  # unframeable junk closes a TCP connection; sent on its own below
            sender.send_raw(data)
            answer = sender.receive(timeout=0.5 if expected is None else 3.0)
            if expected is None:
                assert answer is None, data[:60]
            else:
                assert answer is not None, data[:60]
                assert answer.status == expected, (data[:60], answer.status)
                assert answer.reason  # a reason phrase says what was wrong
        ok = sender.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200
    if transport == "tcp":
        for data, expected in corpus(transport, 0):
            if expected is None:
                with client(server, "tcp") as junk:
                    junk.send_raw(data)
                    assert junk.receive(timeout=0.3) is None
        with client(server, "tcp") as after:
            ok = after.register("1001", "an-secret-1001", DOMAIN)
            assert ok is not None and ok.status == 200


def test_oversized_tcp_header_closes_only_that_connection(server: RunningServer) -> None:
    with client(server, "tcp") as bad, client(server, "tcp") as good:
        bad.send_raw(b"OPTIONS sip:pbx.example.com SIP/2.0\r\nX-Endless: " + b"a" * 200_000)
        ok = good.register("1002", "binh-secret-1002", DOMAIN)
        assert ok is not None and ok.status == 200
        assert bad.receive(timeout=1.0) is None
