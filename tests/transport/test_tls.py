"""SIP over TLS on real sockets (127.0.0.1): the listening side (versions,
handshake deadline, limits, certificates swapped on disk) and connections
the PBX opens (verification by CA and name, expiry, pins)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import MutableMapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import structlog
import trustme

from pbx.sip.address import Peer
from pbx.transport.tcp import TcpLimits, TcpTransport
from pbx.transport.tls import ClientTls, ServerCertificates, client_context, public_key_pin
from tests.tls_certs import leaf_pem, peer_certificate, same_certificate, write_ca, write_leaf
from tests.transport.test_tcp_limits import OPTIONS, closed_by_server

Logs = list[MutableMapping[str, Any]]


def client(ca: trustme.CA, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = maximum
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


async def wait_for(check: Any, within: float = 3.0) -> None:
    for _ in range(int(within / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)


def test_a_phone_sends_sip_over_tls_and_the_answer_comes_back_on_its_connection(tmp_path: Path) -> None:
    ca = trustme.CA()
    certificates = ServerCertificates(*write_leaf(ca, tmp_path, "pbx.test"))

    async def scenario() -> tuple[list[tuple[bytes, Peer]], bytes, str | None]:
        received: list[tuple[bytes, Peer]] = []
        tls = TcpTransport(lambda data, peer: received.append((data, peer)), name="tls",
                           ssl_context=certificates.context)
        await tls.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*tls.local, ssl=client(ca), server_hostname="pbx.test")
        version = writer.get_extra_info("ssl_object").version()
        writer.write(OPTIONS)
        await writer.drain()
        await wait_for(lambda: received)
        tls.send(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", received[0][1])
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        writer.close()
        tls.close()
        return received, answer, version

    received, answer, version = asyncio.run(scenario())
    assert [data for data, _ in received] == [OPTIONS]
    peer = received[0][1]
    assert peer.transport == "tls" and peer.connection is not None and peer.reliable
    assert answer.startswith(b"SIP/2.0 200 OK")
    assert version in ("TLSv1.2", "TLSv1.3")


def test_tls_1_1_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    certificates = ServerCertificates(*write_leaf(ca, tmp_path, "pbx.test"))

    async def scenario() -> str:
        tls = TcpTransport(lambda data, peer: None, name="tls", ssl_context=certificates.context)
        await tls.listen("127.0.0.1", 0)
        try:
            old = client(ca, maximum=ssl.TLSVersion.TLSv1_1)
        except ssl.SSLError:
            tls.close()
            return "client cannot even offer TLS 1.1"
        try:
            _, writer = await asyncio.open_connection(*tls.local, ssl=old, server_hostname="pbx.test")
        except (ssl.SSLError, ConnectionError) as err:
            return type(err).__name__
        finally:
            tls.close()
        writer.close()
        return "connected"

    assert asyncio.run(scenario()) != "connected"


def test_a_connection_that_never_finishes_its_handshake_is_closed(tmp_path: Path) -> None:
    ca = trustme.CA()
    certificates = ServerCertificates(*write_leaf(ca, tmp_path, "pbx.test"))

    async def scenario() -> tuple[bool, bool]:
        tls = TcpTransport(lambda data, peer: None, name="tls", ssl_context=certificates.context,
                           limits=TcpLimits(handshake_seconds=1))
        await tls.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*tls.local)  # plain TCP: no ClientHello
        early = await closed_by_server(reader, 0.5)
        late = await closed_by_server(reader, 2.0)
        writer.close()
        tls.close()
        return early, late

    assert asyncio.run(scenario()) == (False, True)


def test_the_per_source_limit_counts_tls_connections(tmp_path: Path) -> None:
    ca = trustme.CA()
    certificates = ServerCertificates(*write_leaf(ca, tmp_path, "pbx.test"))

    async def scenario() -> tuple[list[bool], Logs]:
        tls = TcpTransport(lambda data, peer: None, name="tls", ssl_context=certificates.context,
                           limits=TcpLimits(max_per_source=2))
        await tls.listen("127.0.0.1", 0)
        with structlog.testing.capture_logs() as logs:
            streams = [await asyncio.open_connection(*tls.local, ssl=client(ca), server_hostname="pbx.test")
                       for _ in range(3)]
            closed = [await closed_by_server(reader, 0.3) for reader, _ in streams]
        for _, writer in streams:
            writer.close()
        tls.close()
        return closed, logs

    closed, logs = asyncio.run(scenario())
    assert closed == [False, False, True]
    assert [e["limit"] for e in logs if e["event"] == "tcp_connection_refused"] == ["max_per_source"]


def test_a_certificate_swapped_on_disk_is_used_for_new_connections_and_old_ones_go_on(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = write_leaf(ca, tmp_path, "pbx.test")
    first = leaf_pem(cert)
    certificates = ServerCertificates(cert, key)

    async def scenario() -> tuple[bytes, bytes, list[bytes], bool, Logs]:
        received: list[bytes] = []
        tls = TcpTransport(lambda data, peer: received.append(data), name="tls", ssl_context=certificates.context)
        await tls.listen("127.0.0.1", 0)
        before = await asyncio.to_thread(peer_certificate, *tls.local)
        _, old = await asyncio.open_connection(*tls.local, ssl=client(ca), server_hostname="pbx.test")
        assert not certificates.changed()
        write_leaf(ca, tmp_path, "pbx.test")  # renewed: same names, new key and serial
        changed = certificates.changed()
        with structlog.testing.capture_logs() as logs:
            assert certificates.reload("test")
        after = await asyncio.to_thread(peer_certificate, *tls.local)
        old.write(OPTIONS)  # the connection made before the swap still carries messages
        await old.drain()
        await wait_for(lambda: received)
        old.close()
        tls.close()
        return before, after, received, changed, logs

    before, after, received, changed, logs = asyncio.run(scenario())
    assert changed
    assert same_certificate(before, first)
    assert not same_certificate(after, first)
    assert same_certificate(after, leaf_pem(cert))
    assert received == [OPTIONS]
    assert [e["generation"] for e in logs if e["event"] == "tls_certificate_loaded"] == [1]


def test_a_broken_certificate_on_disk_is_logged_and_the_running_one_stays(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = write_leaf(ca, tmp_path, "pbx.test")
    first = leaf_pem(cert)
    certificates = ServerCertificates(cert, key)
    _, other_key = write_leaf(ca, tmp_path, "pbx.test", stem="other")
    key.write_bytes(other_key.read_bytes())  # a key that does not match the certificate

    async def scenario() -> tuple[bool, bytes, Logs]:
        tls = TcpTransport(lambda data, peer: None, name="tls", ssl_context=certificates.context)
        await tls.listen("127.0.0.1", 0)
        with structlog.testing.capture_logs() as logs:
            applied = certificates.reload("sighup")
        shown = await asyncio.to_thread(peer_certificate, *tls.local)
        tls.close()
        return applied, shown, logs

    applied, shown, logs = asyncio.run(scenario())
    assert not applied
    assert same_certificate(shown, first)
    failed = [e for e in logs if e["event"] == "tls_certificate_reload_failed"]
    assert len(failed) == 1 and failed[0]["trigger"] == "sighup" and failed[0]["kept_generation"] == 0


def test_an_expired_certificate_is_logged_as_an_error_when_loaded(tmp_path: Path) -> None:
    ca = trustme.CA()
    now = datetime.now(timezone.utc)
    cert, key = write_leaf(ca, tmp_path, "pbx.test", not_before=now - timedelta(days=30),
                           not_after=now - timedelta(days=1))
    with structlog.testing.capture_logs() as logs:
        ServerCertificates(cert, key)
    assert [e["event"] for e in logs] == ["tls_certificate_expired"]


# ------------------------------------------------------------ the PBX as client


def open_to(server_cert: tuple[Path, Path], tls_for: ClientTls) -> tuple[list[bytes], Logs]:
    """Start a TLS 'provider' with ``server_cert``, have a client transport
    send OPTIONS to it checked by ``tls_for``; what the provider got, and the
    client's log."""

    async def scenario() -> tuple[list[bytes], Logs]:
        received: list[bytes] = []
        provider = TcpTransport(lambda data, peer: received.append(data), name="tls",
                                ssl_context=ServerCertificates(*server_cert).context)
        await provider.listen("127.0.0.1", 0)
        closed: list[str] = []
        pbx = TcpTransport(lambda data, peer: None, lambda peer, why: closed.append(why), name="tls",
                           client_tls=lambda dest: tls_for)
        with structlog.testing.capture_logs() as logs:
            pbx.send(OPTIONS, Peer("tls", "127.0.0.1", provider.local[1]))
            await wait_for(lambda: received or closed)
        pbx.close()
        provider.close()
        return received, logs

    return asyncio.run(scenario())


def refusals(logs: Logs) -> list[str]:
    return [str(e["reason"]) for e in logs if e["event"] == "tls_certificate_refused"]


def test_a_trunk_with_a_valid_certificate_for_its_name_is_reached(tmp_path: Path) -> None:
    ca = trustme.CA()
    good = write_leaf(ca, tmp_path, "sip.provider.test")
    received, logs = open_to(good, ClientTls(client_context(str(write_ca(ca, tmp_path / "ca.pem"))),
                                             "sip.provider.test"))
    assert received == [OPTIONS]
    assert refusals(logs) == []


def test_a_trunk_certificate_for_another_host_is_refused_with_a_log_line(tmp_path: Path) -> None:
    ca = trustme.CA()
    wrong = write_leaf(ca, tmp_path, "someone-else.test")
    received, logs = open_to(wrong, ClientTls(client_context(str(write_ca(ca, tmp_path / "ca.pem"))),
                                              "sip.provider.test"))
    assert received == []
    [reason] = refusals(logs)
    assert "Hostname mismatch" in reason


def test_an_expired_trunk_certificate_is_refused_with_a_log_line(tmp_path: Path) -> None:
    ca = trustme.CA()
    now = datetime.now(timezone.utc)
    expired = write_leaf(ca, tmp_path, "sip.provider.test", not_before=now - timedelta(days=30),
                         not_after=now - timedelta(days=1))
    with structlog.testing.capture_logs():
        received, logs = open_to(expired, ClientTls(client_context(str(write_ca(ca, tmp_path / "ca.pem"))),
                                                    "sip.provider.test"))
    assert received == []
    [reason] = refusals(logs)
    assert "expired" in reason


def test_a_certificate_from_an_unknown_ca_is_refused(tmp_path: Path) -> None:
    ours, theirs = trustme.CA(), trustme.CA()
    received, logs = open_to(write_leaf(theirs, tmp_path, "sip.provider.test"),
                             ClientTls(client_context(str(write_ca(ours, tmp_path / "ca.pem"))), "sip.provider.test"))
    assert received == []
    [reason] = refusals(logs)
    assert "unable to get local issuer certificate" in reason


@pytest.mark.parametrize("pinned", [True, False])
def test_a_pinned_trunk_must_show_the_pinned_key(tmp_path: Path, pinned: bool) -> None:
    ca = trustme.CA()
    cert, key = write_leaf(ca, tmp_path, "sip.provider.test")
    import ssl as _ssl

    pin = public_key_pin(_ssl.PEM_cert_to_DER_cert(leaf_pem(cert).decode()))
    other = public_key_pin(_ssl.PEM_cert_to_DER_cert(
        leaf_pem(write_leaf(ca, tmp_path, "sip.provider.test", stem="other")[0]).decode()))
    context = client_context(str(write_ca(ca, tmp_path / "ca.pem")))
    received, logs = open_to((cert, key), ClientTls(context, "sip.provider.test", (pin if pinned else other,)))
    if pinned:
        assert received == [OPTIONS] and refusals(logs) == []
    else:
        assert received == [] and refusals(logs) == ["public key not pinned"]
