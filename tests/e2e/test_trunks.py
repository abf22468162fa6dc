"""SIP trunks end to end: `pbx serve`, SIPp as the provider, pjsua2 phones.

The provider (sipp-scenarios/provider_uas.xml) demands digest credentials
on REGISTER (401, checked by SIPp itself) and on INVITE (407; SIPp only
requires the header, this test checks the digest from SIPp's message log).
Inbound calls come from SIPp playing the provider's gateway
(sipp-scenarios/provider_inbound.xml) on the gateway's address and port.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.sip import digest
from pbx.sip.message import Response
from pbx.sip.parser import parse_message
from tests.server import RunningServer, run_server
from tests.server import free_port
from tests.trunks.provider import Logged, Sipp

from .phone import Phone, PhoneFactory, open_phones

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]

DOMAIN = "pbx.example.com"
TRUNK_USER, TRUNK_PASSWORD = "02873000000", "trunk-secret"
PROVIDER_DOMAIN = "sip.provider.example"


def dialplan(gateway_ports: tuple[int, int], *, register: bool) -> str:
    first, second = gateway_ports
    return f"""\
domain: {DOMAIN}
departments:
  sales: {{name: Sales, class_of_service: outside}}
extensions:
  1001: {{name: An Nguyen, department: sales, password: an-secret-1001}}
number_plans:
  vietnam:
    - {{pattern: "0ZXXXXXXX.", class: national}}
classes_of_service:
  outside: {{allow: [national]}}
trunks:
  viettel:
    gateways:
      - {{host: 127.0.0.1, port: {first}}}
      - {{host: 127.0.0.1, port: {second}}}
    username: "{TRUNK_USER}"
    password: "{TRUNK_PASSWORD}"
    domain: {PROVIDER_DOMAIN}
    register: {"true" if register else "false"}
    register_expires: 300
    invite_timeout: 2
    caller_id: "02873000000"
    rewrites:
      - {{match: "0", strip: 1, prepend: "+84"}}
routes:
  - {{name: vn-national, pattern: "0ZXXXXXXX.", trunk: viettel}}
inbound:
  "+842873000100": {{extension: "1001"}}
"""


class Pbx:
    def __init__(self, tmp_path: Path, plan: str) -> None:
        self.dialplan = tmp_path / "plan.yaml"
        self.dialplan.write_text(plan)
        self.db_url = f"sqlite:///{tmp_path / 'pbx.sqlite3'}"

    def start(self) -> RunningServer:
        self._context = run_server(self.dialplan, self.db_url, ["udp:127.0.0.1:0"])
        self.server = self._context.__enter__()
        return self.server

    def stop(self) -> None:
        self._context.__exit__(None, None, None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.udp_port}"

    def cdr_rows(self) -> list[dict[str, str]]:
        out = subprocess.run(
            [sys.executable, "-m", "pbx", "cdr", "list", "--db", self.db_url, "--csv"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        return list(csv.DictReader(io.StringIO(out.lstrip("\ufeff"))))

    def cdr(self, dialled: str, timeout: float = 5.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in self.cdr_rows() if r["dialed_number"] == dialled and r["ended_at"]]
            if rows:
                return rows[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no ended CDR for {dialled}: {self.cdr_rows()}")
            time.sleep(0.2)

    def logged(self, event: str) -> list[dict[str, object]]:
        """The server's JSON log lines with this event name."""
        found = []
        for line in self.server.output().splitlines():
            start = line.find("{")
            if start < 0 or f'"{event}"' not in line:
                continue
            try:
                entry = json.loads(line[start:])
            except ValueError:
                continue
            if entry.get("event") == event:
                found.append(entry)
        return found


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[PhoneFactory]:
    with open_phones(tmp_path / "phones") as factory:
        yield factory


@pytest.fixture
def sipp_dir(tmp_path: Path) -> Path:
    path = tmp_path / "sipp"
    path.mkdir()
    return path


def provider(sipp_dir: Path, *, calls: int, port: int | None = None) -> Sipp:
    return Sipp("provider_uas", sipp_dir, port=port, calls=calls,
                keys={"user": TRUNK_USER, "pass": TRUNK_PASSWORD, "grant": "300"})


def register_phone(phones: PhoneFactory, pbx: Pbx, **options: object) -> Phone:
    phone = phones("ext1001")
    state = phone.register("1001", "an-secret-1001", DOMAIN, pbx.address, **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def check_invites(invites: list[Logged]) -> None:
    """The provider got the normalised number and the caller ID, first
    without credentials, then with a Proxy-Authorization that is right."""
    assert len(invites) >= 2, invites
    first, second = invites[0], invites[-1]
    for invite in (first, second):
        assert invite.start_line == f"INVITE sip:+84912345678@{PROVIDER_DOMAIN} SIP/2.0"
        assert re.match(rf"<sip:02873000000@{PROVIDER_DOMAIN}>;tag=", invite.header("From") or "")
        assert invite.header("To") == f"<sip:+84912345678@{PROVIDER_DOMAIN}>"
    assert first.header("Proxy-Authorization") is None
    assert second.header("Call-ID") == first.header("Call-ID")
    credentials = digest.parse_credentials(second.header("Proxy-Authorization") or "")
    assert (credentials.username, credentials.realm) == (TRUNK_USER, PROVIDER_DOMAIN)
    assert credentials.uri == f"sip:+84912345678@{PROVIDER_DOMAIN}"
    ha1 = digest.ha1(credentials.algorithm, TRUNK_USER, PROVIDER_DOMAIN, TRUNK_PASSWORD)
    assert digest.verify(credentials, ha1, "INVITE")


def test_registers_and_calls_out_through_the_provider(tmp_path: Path, sipp_dir: Path,
                                                      phones: PhoneFactory) -> None:
    # Two SIPp calls: the PBX's registration (it ends with the un-REGISTER
    # at shutdown) and the outbound call.
    sipp = provider(sipp_dir, calls=2)
    try:
        pbx = Pbx(tmp_path, dialplan((sipp.port, free_port()), register=True))
        pbx.start()
        try:
            deadline = time.monotonic() + 10
            while not pbx.logged("trunk_registered") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert pbx.logged("trunk_registered"), pbx.server.output()
            alice = register_phone(phones, pbx)
            call = alice.call(f"sip:0912345678@{pbx.address}", transport="udp")
            alice.wait_call_state("CONFIRMED", call, timeout=10.0)
            time.sleep(0.5)
            alice.hangup(call)
            row = pbx.cdr("0912345678")
        finally:
            pbx.stop()   # un-REGISTERs at the provider
        assert sipp.wait() == 0, sipp.describe()
    finally:
        sipp.stop()

    registers = sipp.requests("REGISTER")
    assert registers[0].header("Authorization") is None
    assert all(r.header("Authorization") for r in registers[1:])
    assert registers[-1].header("Expires") == "0"
    assert len(registers) == 3, [r.text for r in registers]   # challenge, credentials, removal
    check_invites(sipp.requests("INVITE"))
    assert sipp.requests("BYE")

    assert (row["caller_number"], row["disposition"], row["trunk"]) == ("1001", "ANSWERED", "viettel")
    assert row["destination"] == "+84912345678"
    assert row["call_class"] == "national"


def test_fails_over_when_the_first_gateway_does_not_answer(tmp_path: Path, sipp_dir: Path,
                                                           phones: PhoneFactory) -> None:
    # The first gateway is a socket that takes INVITEs and never answers.
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead.settimeout(0.2)
    sipp = provider(sipp_dir, calls=1)
    try:
        pbx = Pbx(tmp_path, dialplan((dead.getsockname()[1], sipp.port), register=False))
        pbx.start()
        try:
            alice = register_phone(phones, pbx)
            started = time.monotonic()
            call = alice.call(f"sip:0912345678@{pbx.address}", transport="udp")
            alice.wait_call_state("CONFIRMED", call, timeout=15.0)
            assert time.monotonic() - started >= 1.5   # invite_timeout (2 s) passed first
            alice.hangup(call)
            row = pbx.cdr("0912345678")
            failed = pbx.logged("trunk_gateway_failed")
        finally:
            pbx.stop()
        assert sipp.wait() == 0, sipp.describe()
    finally:
        sipp.stop()
        received = []
        try:
            while True:
                received.append(dead.recv(65535))
        except (TimeoutError, socket.timeout):
            pass
        dead.close()

    to_dead = [m for m in (parse_message(data) for data in received) if not isinstance(m, Response)]
    assert to_dead and to_dead[0].method == "INVITE"
    assert to_dead[0].uri == f"sip:+84912345678@{PROVIDER_DOMAIN}"
    check_invites(sipp.requests("INVITE"))
    assert [(e["reason"], e["next"]) for e in failed] == [("timeout", f"udp:127.0.0.1:{sipp.port}")]
    assert (row["disposition"], row["trunk"], row["destination"]) == ("ANSWERED", "viettel", "+84912345678")


def test_inbound_did_reaches_the_phone(tmp_path: Path, sipp_dir: Path, phones: PhoneFactory) -> None:
    gateway = free_port()
    pbx = Pbx(tmp_path, dialplan((gateway, free_port()), register=False))
    pbx.start()
    try:
        alice = register_phone(phones, pbx, auto_answer=200)
        sipp = Sipp("provider_inbound", sipp_dir, port=gateway, remote=pbx.address, calls=1,
                    keys={"caller": "0912345678"}, extra=("-s", "+842873000100"))
        try:
            incoming = alice.wait_for("incoming_call", 10.0)
            alice.wait_call_state("CONFIRMED", int(incoming["call"]), timeout=10.0)
            assert sipp.wait() == 0, sipp.describe()
        finally:
            sipp.stop()
        alice.wait_call_state("DISCONNECTED", int(incoming["call"]), timeout=10.0)
        row = pbx.cdr("+842873000100")
    finally:
        pbx.stop()
    assert "sip:0912345678@" in str(incoming["from"])
    assert (row["caller_number"], row["trunk"], row["destination"]) == ("0912345678", "viettel", "1001")
    assert (row["disposition"], row["hangup_side"], row["call_class"]) == ("ANSWERED", "caller", "inbound")


def raw_invite(sock: socket.socket, pbx: Pbx, number: str) -> bytes:
    host, port = sock.getsockname()
    branch = "z9hG4bK" + secrets.token_hex(6)
    return (
        f"INVITE sip:{number}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:0912345678@{PROVIDER_DOMAIN}>;tag=r{branch[-4:]}\r\n"
        f"To: <sip:{number}@{DOMAIN}>\r\nCall-ID: raw-{branch}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:raw@{host}:{port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def final(sock: socket.socket) -> Response:
    while True:
        message = parse_message(sock.recv(65535))
        assert isinstance(message, Response)
        if message.status >= 200:
            return message


def test_unknown_did_and_unknown_source(tmp_path: Path) -> None:
    gateway = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gateway.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    for sock in (gateway, stranger):
        sock.settimeout(5.0)
    pbx = Pbx(tmp_path, dialplan((gateway.getsockname()[1], free_port()), register=False))
    pbx.start()
    try:
        target = ("127.0.0.1", pbx.server.udp_port)
        # From the trunk's gateway, to a DID that is not ours: 404 and a CDR.
        gateway.sendto(raw_invite(gateway, pbx, "+842873000999"), target)
        assert final(gateway).status == 404
        row = pbx.cdr("+842873000999")
        # From anywhere else, to an outside number: challenged, never placed.
        stranger.sendto(raw_invite(stranger, pbx, "0912345678"), target)
        assert final(stranger).status == 407
        time.sleep(0.3)
        challenged = pbx.logged("call_challenged")
    finally:
        pbx.stop()
        gateway.close()
        stranger.close()
    assert (row["disposition"], row["hangup_status"], row["trunk"]) == ("REJECTED", "404", "viettel")
    assert row["caller_number"] == "0912345678"
    assert [(e["dialled"], e["external"]) for e in challenged] == [("0912345678", True)]
    assert str(challenged[0]["source"]).startswith("udp:127.0.0.1:")
