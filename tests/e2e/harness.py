"""A real `pbx serve` for end-to-end tests, and its CDRs as `pbx cdr list`
prints them. The fixtures that use it are in conftest.py."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from pbx.cli.main import main as pbx_command
from tests.server import RunningServer, run_server

from .phone import Phone, PhoneFactory
from .sipua import SipUA

DOMAIN = "pbx.example.com"
LISTENS = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]


def cdr_rows(db_url: str) -> list[dict[str, str]]:
    """The CDRs as `pbx cdr list --csv` prints them. The command runs in the
    test's process (the same click command, the same code): a `python -m pbx`
    child per look cost about a second of CPU, and tests poll."""
    result = CliRunner().invoke(pbx_command, ["cdr", "list", "--db", db_url, "--csv"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout.lstrip("\ufeff"))))


@dataclass
class Pbx:
    """A running `pbx serve` and the database its CDRs go to."""

    server: RunningServer
    db_url: str

    def registrar(self, transport: str = "udp") -> str:
        """host:port of the PBX over ``transport``."""
        port = self.server.udp_port if transport == "udp" else self.server.tcp_port
        return f"127.0.0.1:{port}"

    @property
    def udp(self) -> tuple[str, int]:
        return "127.0.0.1", self.server.udp_port

    def cdrs(self) -> list[dict[str, str]]:
        return cdr_rows(self.db_url)

    def cdr_for(self, caller: str, dialled: str, *, timeout: float = 5.0) -> dict[str, str]:
        """The last ended CDR row of ``caller`` calling ``dialled``, waiting
        up to ``timeout`` seconds for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in self.cdrs() if r["caller_number"] == caller and r["dialed_number"] == dialled
                    and r["ended_at"]]
            if rows:
                return rows[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no ended CDR for {caller} -> {dialled}: {self.cdrs()}")
            time.sleep(0.2)


@contextmanager
def start_pbx(directory: Path, dialplan: str) -> Iterator[Pbx]:
    """`pbx serve` over UDP and TCP with this dialplan text, SQLite CDRs."""
    directory.mkdir(parents=True, exist_ok=True)
    plan = directory / "plan.yaml"
    plan.write_text(dialplan)
    db_url = f"sqlite:///{directory / 'pbx.sqlite3'}"
    with run_server(plan, db_url, LISTENS) as server:
        yield Pbx(server, db_url)


AGENT_EXTENSIONS = """\
departments:
  ops: {name: Operations, voicemail: {enabled: false}}
extensions:
  2001: {name: Alice, department: ops, password: alice-secret-2001}
  2002: {name: Bob, department: ops, password: bob-secret-2002}
"""
"""Dialplan lines for the two hand-driven agents of :func:`open_agents`
(without mailboxes: their tests watch busy and unanswered outcomes)."""


@dataclass
class Agents:
    """Alice (2001) and Bob (2002), registered hand-driven user agents."""

    alice: SipUA
    bob: SipUA


@contextmanager
def open_agents(pbx: Pbx) -> Iterator[Agents]:
    """Register 2001 and 2002 (see ``AGENT_EXTENSIONS``) as raw UAs."""
    with SipUA.start(pbx.udp, "2001", "alice-secret-2001", DOMAIN) as alice, \
            SipUA.start(pbx.udp, "2002", "bob-secret-2002", DOMAIN) as bob:
        alice.register()
        bob.register()
        yield Agents(alice, bob)


def register_phone(phones: PhoneFactory, pbx: Pbx, number: str, password: str, **options: object) -> Phone:
    """A pjsua2 phone registered as extension ``number`` (UDP unless
    ``options`` say otherwise); fails the test unless the PBX says 200."""
    phone = phones(f"ext{number}")
    state = phone.register(number, password, DOMAIN, pbx.registrar(), **options)  # type: ignore[arg-type]
    assert state["code"] == 200, state
    return phone


def dial(phone: Phone, number: str, pbx: Pbx) -> int:
    """``phone`` calls ``number`` at the PBX over UDP: the call's number."""
    return phone.call(f"sip:{number}@{pbx.registrar()};transport=udp", transport="udp")
