"""`pbx tls self-signed` (what `make run` uses on first start) and the
serve command's TLS options."""

from __future__ import annotations

import socket
import ssl
import stat
from pathlib import Path

from click.testing import CliRunner

from pbx.cli.main import main
from pbx.transport.tls import ServerCertificates, certificate_info
from tests.server import run_server

OPTIONS = ("OPTIONS sip:pbx@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKselfsigned\r\n"
           "From: <sip:a@b>;tag=1\r\nTo: <sip:pbx@127.0.0.1>\r\nCall-ID: self-signed\r\nCSeq: 1 OPTIONS\r\n"
           "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def make(tmp_path: Path, *extra: str) -> tuple[Path, Path, str]:
    cert, key = tmp_path / "tls" / "pbx.crt", tmp_path / "tls" / "pbx.key"
    result = CliRunner().invoke(main, ["tls", "self-signed", "--cert", str(cert), "--key", str(key), *extra])
    assert result.exit_code == 0, result.output
    return cert, key, result.output


def test_a_self_signed_certificate_is_written_once_and_says_how_to_replace_it(tmp_path: Path) -> None:
    cert, key, said = make(tmp_path, "--name", "pbx.example.com", "--name", "127.0.0.1", "--if-missing")
    assert str(cert) in said and "replace" in said
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    info = certificate_info(cert)
    assert info.subject == "CN=pbx.example.com"
    ServerCertificates(cert, key)  # a usable pair
    _, _, again = make(tmp_path, "--if-missing")
    assert certificate_info(cert) == info and "wrote" not in again


def test_serve_refuses_a_tls_listener_without_a_certificate(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("domain: pbx.example.com\nextensions: {}\n")
    result = CliRunner().invoke(main, ["serve", "--dialplan", str(plan), "--listen", "tls:127.0.0.1:0"])
    assert result.exit_code == 2
    assert "needs --tls-cert and --tls-key" in result.output


def test_a_server_with_the_self_signed_certificate_answers_over_tls(tmp_path: Path) -> None:
    cert, key, _ = make(tmp_path, "--name", "127.0.0.1")
    plan = tmp_path / "plan.yaml"
    plan.write_text("domain: pbx.example.com\nextensions: {}\n")
    with run_server(plan, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", ["tls:127.0.0.1:0"],
                    ("--tls-cert", str(cert), "--tls-key", str(key))) as server:
        context = ssl.create_default_context(cafile=str(cert))  # the phone told to trust it
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(OPTIONS)
                answer = tls.recv(4096)
    assert answer.startswith(b"SIP/2.0 200 OK"), answer
