"""TLS for SIP (RFC 3261 §26.2, RFC 5630): contexts, certificates, pins.

The connections themselves are :class:`pbx.transport.tcp.TcpTransport`'s,
with an SSL context; this module makes the contexts and keeps them right.

Server side. ``ServerCertificates`` reads a certificate (with its chain) and
a key from PEM files and hands out one listening context. That context's
``sni_callback`` runs during every handshake and switches the connection to
the newest context, so a certificate renewed on disk (an ACME client's
``certbot renew``) is used for new connections as soon as it has been read
again (SIGHUP or a change to either file), while established connections,
and the calls on them, keep the session they have. A pair of files that
cannot be read or do not belong together is logged and the running
certificate stays.

Client side (trunks that need TLS). The server's certificate is verified
against a CA file (or the system's store) and the name the gateway is
configured with; optionally its public key must also be one of a list of
SHA-256 pins, for a provider with a private CA or a self-signed
certificate. A refusal is logged with OpenSSL's reason ("certificate has
expired", "Hostname mismatch, certificate is not valid for ...").

TLS 1.2 is the oldest version spoken; TLS 1.2 suites are limited to ECDHE
key exchange with AES-GCM or ChaCha20-Poly1305 (forward secret, AEAD), and
TLS 1.3 brings its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pbx.server.reload import Signature, files_signature

log = structlog.get_logger("pbx.tls")

CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"
"""TLS 1.2 suites (OpenSSL syntax); TLS 1.3 suites are OpenSSL's defaults."""

POLL_INTERVAL = 2.0


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        context.options |= ssl.OP_NO_RENEGOTIATION
    return context


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A listening context with the certificate chain in ``cert`` (leaf
    first, then intermediates) and its private key in ``key``. Raises
    ``OSError`` or ``ssl.SSLError`` for files that cannot be used."""
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(cert, key)
    return context


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    subject: str
    not_after: datetime
    fingerprint: str
    """SHA-256 of the leaf certificate, hex."""


def certificate_info(cert: Path) -> CertificateInfo:
    """What the log says about the leaf certificate in ``cert``."""
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    return CertificateInfo(subject=leaf.subject.rfc4514_string(), not_after=leaf.not_valid_after_utc,
                           fingerprint=leaf.fingerprint(hashes.SHA256()).hex())


class ServerCertificates:
    """The listening context, and the certificate behind it kept fresh."""

    def __init__(self, cert: Path, key: Path, *, clock: type[datetime] = datetime) -> None:
        self.cert, self.key = cert, key
        self._clock = clock
        self.current = server_context(cert, key)
        """The newest good context; every new handshake switches to it."""
        self.context = server_context(cert, key)
        """What the listening socket is given."""
        self.context.sni_callback = self._pick
        self.generation = 0
        self._seen = self._signature()
        self.info = self._describe("start")

    def _pick(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
              listening: ssl.SSLContext) -> None:
        # Called by OpenSSL with the ClientHello, SNI or not: the connection
        # is switched to the newest certificate before any is sent.
        if self.current is not listening:
            connection.context = self.current
        return None

    def _signature(self) -> Signature:
        return files_signature([self.cert, self.key])

    def _describe(self, trigger: str) -> CertificateInfo | None:
        try:
            info = certificate_info(self.cert)
        except (OSError, ValueError):
            return None
        now = self._clock.now(timezone.utc)
        fields = dict(path=str(self.cert), subject=info.subject, not_after=info.not_after.isoformat(),
                      sha256=info.fingerprint, trigger=trigger, generation=self.generation)
        if info.not_after <= now:
            log.error("tls_certificate_expired", **fields)
        else:
            log.info("tls_certificate_loaded", **fields)
        return info

    def reload(self, trigger: str) -> bool:
        """Read the files again; True if the new certificate is now used
        for new connections."""
        self._seen = self._signature()
        try:
            fresh = server_context(self.cert, self.key)
        except (OSError, ssl.SSLError) as err:
            log.error("tls_certificate_reload_failed", cert=str(self.cert), key=str(self.key), trigger=trigger,
                      error=str(err), kept_generation=self.generation)
            return False
        self.current = fresh
        self.generation += 1
        self.info = self._describe(trigger)
        return True

    def changed(self) -> bool:
        return self._signature() != self._seen

    async def watch(self, interval: float = POLL_INTERVAL) -> None:
        """Poll the two files for ever; reload after a change. (An ACME
        client writes the certificate and the key one after the other: a
        look between the two fails and is logged, the next one succeeds.)"""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.changed():
                    self.reload("file_changed")
            except Exception:  # our bug: keep the certificate and keep watching
                log.exception("tls_certificate_watch_failed")


# ------------------------------------------------------------ client side


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How to check the server at the far end of a connection we open."""

    context: ssl.SSLContext
    server_name: str | None
    """Checked against the certificate's names (SNI too); None: the
    destination's address is checked (an IP address SAN)."""
    pins: tuple[str, ...] = ()
    """SHA-256 of acceptable SubjectPublicKeyInfo, lower-case hex; empty:
    any key the CA vouches for."""


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context: CA file, else the system's CAs."""
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # CERT_REQUIRED and check_hostname
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    else:
        context.load_default_certs()
    return context


def public_key_pin(der_certificate: bytes) -> str:
    """SHA-256 of a certificate's SubjectPublicKeyInfo, hex: the pin form
    (a renewed certificate with the same key keeps its pin). Equal to
    ``openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum``."""
    certificate = x509.load_der_x509_certificate(der_certificate)
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def normalise_pin(text: str) -> str:
    """``AB:CD:...`` or ``abcd...`` -> ``abcd...``."""
    return text.replace(":", "").strip().lower()


def verify_failure(err: BaseException) -> str:
    """A refused handshake's reason in words, for the log."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return str(err.verify_message or err.reason or err)
    if isinstance(err, ssl.SSLError):
        return str(err.reason or err)
    return str(err) or type(err).__name__
