"""Test certificates (trustme): a CA, leaves written as PEM files, peers'
certificates read back."""

from __future__ import annotations

import socket
import ssl
from datetime import datetime
from pathlib import Path

import trustme


def write_leaf(ca: trustme.CA, folder: Path, *names: str, stem: str = "server",
               not_before: datetime | None = None, not_after: datetime | None = None) -> tuple[Path, Path]:
    """A certificate for ``names`` signed by ``ca``, as ``stem.crt`` (leaf
    then chain) and ``stem.key`` in ``folder``; their paths."""
    leaf = ca.issue_cert(*names, not_before=not_before, not_after=not_after)
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


def write_ca(ca: trustme.CA, path: Path) -> Path:
    path.write_bytes(ca.cert_pem.bytes())
    return path


def leaf_pem(cert: Path) -> bytes:
    """The first certificate in a chain file."""
    text = cert.read_bytes()
    end = b"-----END CERTIFICATE-----"
    return text[: text.index(end) + len(end)] + b"\n"


def peer_certificate(host: str, port: int, *, timeout: float = 5.0) -> bytes:
    """Connect without verifying and return the server's certificate as PEM
    (what a phone connecting now would be shown)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der).encode()


def same_certificate(a: bytes, b: bytes) -> bool:
    return ssl.PEM_cert_to_DER_cert(a.decode()) == ssl.PEM_cert_to_DER_cert(b.decode())
