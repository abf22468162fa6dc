"""What the dialplan says about SIP trunks: the provider's gateways, the
credentials the PBX uses towards it, and how numbers are rewritten for it.

Pure data (frozen dataclasses that check themselves). The runtime side —
registering to the provider, placing INVITEs through it, failing over — is
in :mod:`pbx.trunks`; routing decides *which* trunk and *what number*.

Secrets rule as for extensions: the trunk password never appears in a repr.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

Transport = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Gateway:
    """One address of the provider; a trunk tries its gateways in order."""

    host: str
    """IP address or host name."""
    port: int = 5060
    transport: Transport = "udp"
    tls_ca_file: str | None = None
    """TLS: the CA certificates (PEM) the gateway's certificate must chain
    to; None: the system's trusted CAs."""
    tls_server_name: str | None = None
    """TLS: the name the certificate must carry (and SNI); None: ``host``."""
    tls_pins: tuple[str, ...] = ()
    """TLS: SHA-256 of acceptable public keys (SubjectPublicKeyInfo), lower
    -case hex; empty: any key the CA vouches for."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("gateway needs a host")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"gateway port {self.port} out of range")
        if self.transport != "tls" and (self.tls_ca_file or self.tls_server_name or self.tls_pins):
            raise ValueError("tls_* settings need transport: tls")


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberRewrite:
    """Turn a dialed number into what the provider expects (often E.164).

    Applies when the dialed digits start with ``prefix_match``: the first
    ``strip`` digits are removed, then ``prepend`` is put in front.
    ``0912345678`` with ``prefix_match="0", strip=1, prepend="+84"`` becomes
    ``+84912345678``.
    """

    prefix_match: str = ""
    strip: int = 0
    prepend: str = ""

    def __post_init__(self) -> None:
        if self.strip < 0:
            raise ValueError("strip must not be negative")

    def applies(self, number: str) -> bool:
        return number.startswith(self.prefix_match) and len(number) >= self.strip

    def apply(self, number: str) -> str:
        return self.prepend + number[self.strip:]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trunk:
    """A SIP trunk to a provider."""

    key: str
    """Identifier in the dialplan (``viettel``), written to the CDR."""
    gateways: tuple[Gateway, ...]
    """Tried in order: the next one when the previous fails or times out."""
    username: str | None = None
    """Digest username towards the provider (also the From user when
    registering); None when the provider authenticates by IP address."""
    password: str | None = field(default=None, repr=False)
    domain: str | None = None
    """Domain for From/To/Request-URI at the provider; default: the first
    gateway's host."""
    register: bool = False
    """Whether the PBX registers to the provider (as a UAC, RFC 3261 §10)."""
    register_expires: int = 3600
    invite_timeout: float = 8.0
    """Seconds a gateway may take to send any response to an INVITE before
    the next gateway is tried."""
    rewrites: tuple[NumberRewrite, ...] = ()
    """First rewrite that applies wins; none: the number is sent as dialed."""
    caller_id: str | None = None
    """Number presented to the provider when the extension or department
    names none (usually the company's main DID)."""
    inbound_sources: tuple[Network, ...] = ()
    """Networks besides the gateways the provider sends calls from (any
    port): many providers deliver calls from other machines than the one
    that takes registrations."""

    def __post_init__(self) -> None:
        if not self.gateways:
            raise ValueError(f"trunk {self.key!r} needs at least one gateway")
        if (self.username is None) != (self.password is None):
            raise ValueError(f"trunk {self.key!r} needs both username and password, or neither")
        if self.register and self.username is None:
            raise ValueError(f"trunk {self.key!r} registers, so it needs a username and password")
        if self.register_expires < 60:
            raise ValueError(f"trunk {self.key!r}: register_expires must be at least 60")
        if self.invite_timeout <= 0:
            raise ValueError(f"trunk {self.key!r}: invite_timeout must be positive")

    @property
    def sip_domain(self) -> str:
        return self.domain or self.gateways[0].host

    def rewrite_for(self, dialled: str) -> tuple[int, NumberRewrite] | None:
        """The first rewrite that applies to ``dialled``, with its index."""
        for index, rewrite in enumerate(self.rewrites):
            if rewrite.applies(dialled):
                return index, rewrite
        return None

    def outbound_number(self, dialled: str) -> str:
        """The number as sent to this provider."""
        found = self.rewrite_for(dialled)
        return found[1].apply(dialled) if found is not None else dialled
