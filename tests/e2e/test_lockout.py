"""The lock-out, the rate limit and the stateless challenge, against `pbx
serve` on real sockets (issue 12 §2 and §4).

Every client here sends from 127.0.0.1, as phones behind one office NAT
address would: the point of most tests is that one guesser among them
cannot lock the others out.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pbx.sip import digest
from tests.server import RunningServer
from tests.sipclient import SipClient

from .harness import DOMAIN, Pbx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
F2B = REPO / "var" / "tools" / "fail2ban"

DIALPLAN = """\
domain: pbx.example.com
registrar: {min_expires: 60, max_expires: 3600, default_expires: 600}
security:
  max_auth_failures: 4
  failure_window: 60
  block_seconds: 120
  blocked_retry_seconds: 1
  scan_usernames: 5
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}
  1002: {name: Binh, department: sales, password: binh-secret-1002}
"""


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def client(server: RunningServer) -> SipClient:
    return SipClient("udp", ("127.0.0.1", server.udp_port), timeout=1.5)


def logged(server: RunningServer, event: str, *, wait_for: int = 0) -> list[dict[str, object]]:
    """The server's log lines of ``event``. A line reaches the test through
    a pipe and a reader thread, so it may come in after the SIP answer the
    server sent next: with ``wait_for``, first wait until that many are in."""
    if wait_for:
        server.wait_lines(f'"event":"{event}"', wait_for)
    out = []
    for line in server.output().splitlines():
        if f'"event":"{event}"' in line:
            out.append(json.loads(line))
    return out


def pbx_cli(pbx: Pbx, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "pbx", *args, "--db", pbx.db_url], capture_output=True,
                          text=True, timeout=30, check=True, cwd=REPO).stdout


def test_a_guesser_is_silenced_while_its_neighbours_and_the_right_password_are_served(
        pbx: Pbx, server: RunningServer) -> None:
    with client(server) as guesser, client(server) as neighbour:
        answers = [guesser.register("1001", f"guess-{i}", DOMAIN) for i in range(4)]
        # The fourth failure sets the block: it and later failures get no answer.
        assert [a.status if a else None for a in answers] == [401, 401, 401, None]
        assert guesser.register("1001", "guess-9", DOMAIN) is None
        # Another phone behind the same address, with its own password: served.
        ok = neighbour.register("1002", "binh-secret-1002", DOMAIN)
        assert ok is not None and ok.status == 200
        # The owner's right password from the blocked address: served too
        # (after the one-second wait a blocked pair has between checks).
        time.sleep(1.1)
        ok = guesser.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200
    (block,) = logged(server, "security_block", wait_for=1)
    assert (block["source"], block["username"], block["scope"]) == ("127.0.0.1", "1001", "username")
    assert "127.0.0.1" in pbx_cli(pbx, "security", "blocks", "list")
    log = server.output()
    assert "an-secret-1001" not in log and "guess-" not in log and "binh-secret" not in log


@pytest.mark.skipif(not (F2B / "usr" / "bin" / "fail2ban-regex").is_file(),
                    reason="fail2ban-regex is fetched by `make deps` into var/tools/fail2ban")
def test_the_shipped_fail2ban_filter_finds_the_blocked_address(server: RunningServer, tmp_path: Path) -> None:
    with client(server) as guesser:
        for i in range(4):
            guesser.register("1002", f"guess-{i}", DOMAIN)
    server.wait_lines("security_block")
    log_file = tmp_path / "pbx.log"
    log_file.write_text("\n".join(server.lines_with("{")) + "\n")
    env = {**os.environ, "PYTHONPATH": str(F2B / "usr" / "lib" / "python3" / "dist-packages")}
    result = subprocess.run(
        [sys.executable, str(F2B / "usr" / "bin" / "fail2ban-regex"), "--print-all-matched", str(log_file),
         str(REPO / "deploy" / "fail2ban" / "filter.d" / "pbx.conf")],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    )
    assert "1 matched" in result.stdout, result.stdout
    assert '"source":"127.0.0.1"' in result.stdout and "security_block" in result.stdout


def test_invite_guesses_block_and_the_block_outlives_a_restart_until_cleared(
        pbx: Pbx, server: RunningServer) -> None:
    with client(server) as guesser:
        finals = [guesser.invite("1002", f"guess-{i}", "1001", DOMAIN) for i in range(4)]
        assert [f[0].status if f[0] else None for f in finals] == [407] * 4
        assert [f[1].status if f[1] else None for f in finals] == [407, 407, 407, None]
    server.wait_lines("security_block")
    time.sleep(0.5)  # the store's writer commits within milliseconds
    server.restart()
    with client(server) as guesser:
        first, second = guesser.invite("1002", "guess-after-restart", "1001", DOMAIN)
        assert first is not None and first.status == 407  # a challenge is never refused
        assert second is None  # but the failure goes unanswered: still blocked
    listed = pbx_cli(pbx, "security", "blocks", "list")
    assert "127.0.0.1" in listed and "1002" in listed
    assert pbx_cli(pbx, "security", "blocks", "clear", "--source", "127.0.0.1").strip() == "lifted 1 block"
    # The running server takes the store's word within its sweep interval.
    deadline = time.monotonic() + 12
    with client(server) as guesser:
        while True:
            time.sleep(1.1)
            _, second = guesser.invite("1002", "guess-after-clear", "1001", DOMAIN)
            if second is not None:
                assert second.status == 407
                break
            assert time.monotonic() < deadline, "the cleared block still held"


def test_a_scanner_blocks_its_source_for_failures_only(server: RunningServer) -> None:
    with client(server) as scanner, client(server) as neighbour:
        answers = [scanner.register(user, "1234", DOMAIN) for user in ("2001", "2002", "2003", "2004", "2005")]
        # The fifth username failed sets the block on the whole source.
        assert [a.status if a else None for a in answers] == [401, 401, 401, 401, None]
        blocks = logged(server, "security_block", wait_for=1)
        assert [(b["username"], b["scope"]) for b in blocks] == [("", "source")]
        assert scanner.register("2006", "1234", DOMAIN) is None
        ok = neighbour.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200


def test_an_unauthenticated_invite_draws_one_response(server: RunningServer) -> None:
    """Before: 100 Trying and a 407 retransmitted by timer G for 32 s (12
    responses) towards whatever source the INVITE claimed."""
    with client(server) as reflector:
        reflector.send_raw(reflector.invite_request("1001", "0912345678", DOMAIN, call_id="reflect-1", cseq=1,
                                                    branch="z9hG4bK" + secrets.token_hex(8), from_tag="1"))
        responses = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            response = reflector.receive(timeout=0.5)
            if response is not None:
                responses.append(response.status)
    assert responses == [407]


def test_junk_is_logged_sampled(server: RunningServer) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(500):
            sock.sendto(b"x", ("127.0.0.1", server.udp_port))
    finally:
        sock.close()
    # A summary comes once the ten-second interval is over (the sweep looks
    # every five seconds); until then only the first drop was written.
    (summary,) = [json.loads(line) for line in server.wait_lines('"messages_dropped"', timeout=20)]
    assert len(logged(server, "message_dropped")) == 1
    assert summary["count"] == 499 and summary["sources"] == {"127.0.0.1": 499}


RATE_PLAN = DIALPLAN.replace("  scan_usernames: 5\n", "  scan_usernames: 5\n  unauthenticated_per_second: 2\n"
                             "  unauthenticated_burst: 10\n")


@pytest.mark.parametrize("dialplan", [RATE_PLAN])
def test_a_flooding_source_is_ignored_but_valid_credentials_are_served(server: RunningServer) -> None:
    with client(server) as phone, client(server) as flood:
        # The phone has its challenge before the flood starts ...
        phone.send_raw(phone.register_request("1001", DOMAIN, call_id="phone-1", cseq=1))
        challenge = phone.final_response()
        assert challenge is not None and challenge.status == 401
        for n in range(40):
            flood.send_raw(flood.register_request("1002", DOMAIN, call_id=f"flood-{n}", cseq=1))
        answered = 0
        while flood.final_response(timeout=0.5) is not None:
            answered += 1
        assert 9 <= answered <= 11  # the burst, give or take a refill
        # ... and its credentials are checked and served during the dry spell.
        value = digest.choose_challenge(challenge.get_all("www-authenticate"))
        assert value is not None
        answer = digest.answer_challenge(value, username="1001", password="an-secret-1001", method="REGISTER",
                                         uri=f"sip:{DOMAIN}", cnonce="c1", nc=1)
        phone.send_raw(phone.register_request("1001", DOMAIN, call_id="phone-1", cseq=2, authorization=answer))
        ok = phone.final_response()
        assert ok is not None and ok.status == 200
        # The flood goes on past the rate (2 a second) for three seconds:
        # the refills are served, but the dry spell is one log line, not
        # one per token refilled.
        for n in range(60):
            flood.send_raw(flood.register_request("1002", DOMAIN, call_id=f"flood-more-{n}", cseq=1))
            time.sleep(0.05)
    assert len(logged(server, "source_rate_limited", wait_for=1)) == 1


PACKET_PLAN = DIALPLAN.replace("  scan_usernames: 5\n", "  scan_usernames: 5\n  source_packets_per_second: 20\n"
                               "  unauthenticated_per_second: 100000\n  unauthenticated_burst: 100000\n")


@pytest.mark.parametrize("dialplan", [PACKET_PLAN])
def test_the_plans_packet_rate_holds_from_start_up(server: RunningServer) -> None:
    """``source_packets_per_second`` from the plan, not the built-in 2,000/s,
    is what a source gets from the first packet on. (The start-up limiter
    was once replaced by the default because an empty limiter is falsy, so
    a plan's higher limit only took effect after a reload: a 300 calls/s
    load from one address was cut off ten seconds in.)"""
    with client(server) as flood:
        for n in range(200):  # well inside the default's burst of 4,000
            flood.send_raw(flood.register_request("1002", DOMAIN, call_id=f"flood-{n}", cseq=1))
        answered = 0
        while flood.final_response(timeout=0.5) is not None:
            answered += 1
    assert 40 <= answered <= 45  # the plan's burst (2 x 20), give or take a refill
    assert logged(server, "message_dropped", wait_for=1)[0]["reason"] == "source_flooding"


EDGE_PLAN = PACKET_PLAN.replace("security:\n", "security:\n  trusted_proxies: [127.0.0.1]\n")


@pytest.mark.parametrize("dialplan", [EDGE_PLAN])
def test_a_trusted_edge_proxy_is_not_cut_off_by_the_packet_rate(server: RunningServer) -> None:
    """Behind Kamailio every phone's packets come from the edge's address:
    the per-source packet budget must not throttle the edge (the phones
    behind it are counted one by one once their requests are parsed)."""
    with client(server) as edge:
        for n in range(200):
            edge.send_raw(edge.register_request("1002", DOMAIN, call_id=f"edge-{n}", cseq=1))
        answered = 0
        while edge.final_response(timeout=0.5) is not None:
            answered += 1
    assert answered == 200
    assert not logged(server, "message_dropped")


def _md5_only_plan() -> str:
    lines = [
        "domain: pbx.example.com",
        "departments:",
        "  sales: {name: Sales}",
        "extensions:",
    ]
    for number, password in (("1001", "an-secret-1001"), ("1002", "binh-secret-1002")):
        ha1 = digest.ha1(digest.Algorithm.MD5, number, DOMAIN, password)
        lines.append(f'  {number}: {{name: E{number}, department: sales, ha1_md5: "{ha1}"}}')
    return "\n".join(lines) + "\n"


def offered(server: RunningServer, user: str) -> list[str]:
    """The digest algorithms a REGISTER for ``user`` is challenged with."""
    with client(server) as asker:
        asker.send_raw(asker.register_request(user, DOMAIN, call_id=f"ask-{secrets.token_hex(4)}", cseq=1))
        answer = asker.final_response()
    assert answer is not None and answer.status == 401
    return [digest.parse_challenge(value).algorithm.value for value in answer.get_all("www-authenticate")]


@pytest.mark.parametrize("dialplan", [_md5_only_plan()])
def test_unknown_users_are_challenged_as_the_real_ones(server: RunningServer) -> None:
    """Every real user stores only an MD5 hash, so each is offered MD5 alone;
    an unknown name used to get SHA-256 and MD5, which told a scanner that
    it did not exist. Now it gets exactly what a real user gets."""
    assert offered(server, "1001") == ["MD5"] == offered(server, "1002")
    assert {tuple(offered(server, f"{2000 + n}")) for n in range(12)} == {("MD5",)}
    # And a real user still logs in with the stored hash.
    with client(server) as phone:
        ok = phone.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200


TARGETED_PLAN = DIALPLAN.replace("  scan_usernames: 5\n", "  scan_usernames: 5\n  targeted_failures: 3\n"
                                 "  max_auth_failures: 10\n").replace("  max_auth_failures: 4\n", "")


@pytest.mark.parametrize("dialplan", [TARGETED_PLAN])
def test_failures_per_username_are_reported_and_block_nobody(server: RunningServer) -> None:
    """Failures are counted per username from any source too: crossing
    targeted_failures is logged once per window, and blocks nothing (the
    owner, from anywhere, still logs in)."""
    for n in range(4):  # each from its own port, as a botnet's would be
        with client(server) as guesser:
            answer = guesser.register("1001", f"guess-{n}", DOMAIN)
            assert answer is not None and answer.status == 401
    (line,) = logged(server, "auth_username_targeted", wait_for=1)
    assert (line["username"], line["failures"]) == ("1001", 3)
    assert logged(server, "security_block") == []
    with client(server) as owner:
        ok = owner.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200


def test_failures_forged_from_another_address_count_for_nobody(server: RunningServer) -> None:
    """Spoofed UDP: the attacker fetches a nonce at its own address
    (127.0.0.9) and sends wrong answers that seem to come from the office's
    (127.0.0.5; on loopback, a socket bound there stands in for a forged
    source). The nonce was bound to 127.0.0.9, so each is a foreign nonce:
    re-challenged, never counted, no block on the office's address. Before,
    four such packets blocked the office's 1001 and five usernames the whole
    office."""
    office = ("127.0.0.5", 0)
    with SipClient("udp", ("127.0.0.1", server.udp_port), timeout=1.5) as attacker, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forged:
        attacker.sock.close()
        attacker.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.sock.bind(("127.0.0.9", 0))
        attacker.sock.settimeout(1.5)
        forged.bind(office)
        for n, user in enumerate(["1001"] * 5 + ["2001", "2002", "2003", "2004", "2005"]):
            attacker.send_raw(attacker.register_request(user, DOMAIN, call_id=f"nonce-{n}", cseq=1))
            challenge = attacker.final_response()
            assert challenge is not None and challenge.status == 401
            value = digest.choose_challenge(challenge.get_all("www-authenticate"))
            assert value is not None
            wrong = digest.answer_challenge(value, username=user, password=f"guess-{n}", method="REGISTER",
                                            uri=f"sip:{DOMAIN}", cnonce="c", nc=1)
            host, port = forged.getsockname()[:2]
            forged.sendto(attacker.register_request(user, DOMAIN, call_id=f"forged-{n}", cseq=2,
                                                    authorization=wrong)
                          .replace(f"{attacker.local[0]}:{attacker.local[1]}".encode(), f"{host}:{port}".encode()),
                          ("127.0.0.1", server.udp_port))
    time.sleep(0.5)
    assert logged(server, "auth_failed") == [] and logged(server, "security_block") == []
    # The office's phones, from that address, log in at once.
    with SipClient("udp", ("127.0.0.1", server.udp_port), timeout=1.5) as phone:
        phone.sock.close()
        phone.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.sock.bind(office)
        phone.sock.settimeout(1.5)
        ok = phone.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200


def test_a_nonce_from_the_same_address_still_counts(server: RunningServer) -> None:
    """The control: the same wrong answers from the address the nonce was
    sent to are failures, and block as before."""
    with client(server) as guesser:
        answers = [guesser.register("1001", f"guess-{i}", DOMAIN) for i in range(4)]
    assert [a.status if a else None for a in answers] == [401, 401, 401, None]
    assert len(logged(server, "security_block", wait_for=1)) == 1


def test_a_guesser_on_the_owners_username_cannot_take_the_owners_turns(server: RunningServer) -> None:
    """A PC behind the office NAT guesses 1001's password without pause
    (every 20 ms) after the block: the block's one check per interval would
    nearly always be its. The owner's phone, registered from its own port
    of that address, is checked every time: its refresh and its call are
    served at once, while the guesser stays blocked and unanswered."""
    stop = threading.Event()
    unanswered = []

    def guess() -> None:
        with client(server) as guesser:
            while not stop.is_set():
                unanswered.append(guesser.register("1001", "guess-again", DOMAIN) is None)

    with client(server) as phone, client(server) as guesser:
        ok = phone.register("1001", "an-secret-1001", DOMAIN)
        assert ok is not None and ok.status == 200
        for i in range(4):
            guesser.register("1001", f"guess-{i}", DOMAIN)
        server.wait_lines('"event":"security_block"')
        threads = [threading.Thread(target=guess) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            for _ in range(3):
                again = phone.register("1001", "an-secret-1001", DOMAIN)
                assert again is not None and again.status == 200
            first, second = phone.invite("1001", "an-secret-1001", "1002", DOMAIN)
            assert first is not None and first.status == 407
            assert second is not None and second.status not in (401, 407)  # placed (1002 is not registered)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    assert unanswered and all(unanswered)
