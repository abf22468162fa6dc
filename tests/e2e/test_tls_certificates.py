"""Certificates of a running `pbx serve`: a renewed certificate is used for
new connections without a restart (file change and SIGHUP), and a trunk
whose certificate is expired or for another host is refused with a log
line."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trustme

from pbx.transport.tls import ServerCertificates
from tests.server import free_port, run_server
from tests.tls_certs import leaf_pem, peer_certificate, same_certificate, write_ca, write_leaf

from .test_tls_phones import DIALPLAN, TlsPbx, start_tls_pbx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def tls_pbx(tmp_path: Path) -> Iterator[TlsPbx]:
    yield from start_tls_pbx(tmp_path / "pbx", DIALPLAN)


def shown_until(pbx: TlsPbx, wanted: bytes, timeout: float = 10.0) -> bytes:
    """The certificate a new connection is shown, once it is ``wanted`` (or
    the last one seen when time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = peer_certificate("127.0.0.1", pbx.server.tls_port)
        if same_certificate(shown, wanted) or time.monotonic() > deadline:
            return shown
        time.sleep(0.2)


@pytest.mark.parametrize("trigger", ["file_changed", "sighup"])
def test_a_certificate_renewed_on_disk_is_used_without_a_restart(tls_pbx: TlsPbx, trigger: str) -> None:
    first = leaf_pem(tls_pbx.cert)
    assert same_certificate(peer_certificate("127.0.0.1", tls_pbx.server.tls_port), first)
    pid = tls_pbx.server.process.pid
    write_leaf(tls_pbx.ca, tls_pbx.cert.parent, "127.0.0.1", "pbx.example.com")
    renewed = leaf_pem(tls_pbx.cert)
    if trigger == "sighup":
        tls_pbx.server.signal(signal.SIGHUP)
    lines = tls_pbx.server.wait_lines("tls_certificate_loaded", 2)  # at start, then the renewal
    assert json.loads(lines[-1][lines[-1].index("{"):])["trigger"] == trigger
    assert same_certificate(shown_until(tls_pbx, renewed), renewed)
    assert tls_pbx.server.process.pid == pid  # the same process: no restart


def tls_provider(folder: Path, ca: trustme.CA, *names: str, expired: bool = False) -> tuple[int, threading.Event]:
    """A TLS listener on 127.0.0.1 with a certificate for ``names`` that
    accepts connections and notes whether a handshake ever succeeded."""
    import socket
    import ssl

    now = datetime.now(timezone.utc)
    window = dict(not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)) if expired else {}
    cert, key = write_leaf(ca, folder, *names, stem="provider", **window)
    context = ServerCertificates(cert, key).current
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()
    handshaken = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                raw, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    handshaken.set()
                    tls.recv(100)
            except (ssl.SSLError, OSError):
                pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1]), handshaken


@pytest.mark.parametrize(("names", "expired", "reason"), [
    (("someone-else.test",), False, "Hostname mismatch"),
    (("sip.provider.test",), True, "certificate has expired"),
])
def test_a_trunk_with_a_bad_certificate_is_refused_with_a_log_line(
        tmp_path: Path, names: tuple[str, ...], expired: bool, reason: str) -> None:
    ca = trustme.CA()
    port, handshaken = tls_provider(tmp_path, ca, *names, expired=expired)
    ca_file = write_ca(ca, tmp_path / "provider-ca.pem")
    plan = tmp_path / "plan.yaml"
    plan.write_text(DIALPLAN + f"""\
trunks:
  provider:
    gateways:
      - {{host: 127.0.0.1, port: {port}, transport: tls, tls_ca_file: "{ca_file}",
         tls_server_name: sip.provider.test}}
    username: pbx
    password: trunk-secret-1
    register: true
""")
    with run_server(plan, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", [f"udp:127.0.0.1:{free_port()}"]) as server:
        [line] = server.wait_lines("tls_certificate_refused", 1)[:1]
        entry = json.loads(line[line.index("{"):])
        assert reason in entry["reason"]
        assert entry["server_name"] == "sip.provider.test" and entry["dest"] == f"tls:127.0.0.1:{port}"
        assert "trunk-secret-1" not in "\n".join(server.lines_with(""))
    assert not handshaken.is_set()  # no REGISTER went to the provider
