"""A real `pbx serve` for end-to-end tests, and its CDRs as `pbx cdr list`
prints them. The fixtures that use it are in conftest.py."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
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


Row = dict[str, str]


def rows_once(read: Callable[[], list[Row]], keep: Callable[[Row], bool], count: int,
              timeout: float = 10.0) -> list[Row]:
    """The rows ``read`` gives that ``keep`` selects, once there are at least
    ``count`` of them (or the timeout passed: then what there is). A CDR is
    written just after the signalling that ends or answers its call, so a
    test that has seen the phone's side must wait for the row, not race it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [row for row in read() if keep(row)]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


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

    def cdr_for(self, caller: str, dialled: str, *, nth: int = 1, timeout: float = 5.0) -> dict[str, str]:
        """The row of the ``nth`` ended call of ``caller`` to ``dialled`` in
        this test (the latest when more have ended), waiting up to
        ``timeout`` seconds for it to be written. A test that calls the same
        number again passes ``nth=2``: else the first call's row, already
        there, would answer for the second."""
        rows = rows_once(self.cdrs, lambda r: r["caller_number"] == caller and r["dialed_number"] == dialled
                         and bool(r["ended_at"]), nth, timeout)
        if len(rows) < nth:
            raise AssertionError(f"{len(rows)} ended CDRs for {caller} -> {dialled}, not {nth}: {self.cdrs()}")
        return rows[-1]


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
