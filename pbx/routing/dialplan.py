"""The dialplan model: what the PBX knows about its domain, users and policy.

Pure data, built by :mod:`pbx.routing.loader` from YAML (or directly, in
tests). Every class is a frozen dataclass; constructors check their own
invariants and raise ``ValueError``, so a model that exists is a valid one.
The loader checks the same rules first, to report them with file positions.

Secrets rule: an extension's password and HA1 values never appear in a
``repr`` (and therefore never in a log line or a test failure message).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeVar

from pbx.routing.trunk_config import Trunk

EXTENSION_NUMBER: Final = re.compile(r"[0-9]{2,8}")
"""An extension number: 2 to 8 decimal digits (also the digest username)."""

_HA1_MD5: Final = re.compile(r"[0-9a-f]{32}")
_HA1_SHA256: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Department:
    """A group of extensions, such as ``sales``; later issues route by it."""

    key: str
    """Short identifier used in the dialplan file (``sales``)."""
    name: str
    """Human name (``Sales / Kinh doanh``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """A user of the PBX, registered and authenticated by its number.

    Digest credentials (RFC 7616 §3.4.2): the username is ``number`` and the
    realm is :attr:`Dialplan.domain`. Either the plain ``password`` is
    known, or one or both precomputed HA1 values are: ``ha1_md5`` is
    ``MD5(number:realm:password)`` and ``ha1_sha256`` the SHA-256 of the
    same string, as lowercase hex.
    """

    number: str
    name: str
    """Display name, used in From/P-Asserted-Identity of outgoing calls."""
    department: str
    """Key of the :class:`Department` this extension belongs to."""
    password: str | None = field(default=None, repr=False)
    ha1_md5: str | None = field(default=None, repr=False)
    ha1_sha256: str | None = field(default=None, repr=False)
    ring_timeout: int = 30
    """Seconds to ring before the call counts as unanswered."""
    max_contacts: int = 5
    """How many devices may register for this extension at once."""

    def __post_init__(self) -> None:
        if EXTENSION_NUMBER.fullmatch(self.number) is None:
            raise ValueError(f"extension number {self.number!r} must be 2 to 8 digits")
        has_ha1 = self.ha1_md5 is not None or self.ha1_sha256 is not None
        if (self.password is not None) == has_ha1:
            raise ValueError(
                f"extension {self.number!r} needs exactly one of password or ha1_md5/ha1_sha256"
            )
        if self.password is not None and not self.password:
            raise ValueError(f"extension {self.number!r} has an empty password")
        if self.ha1_md5 is not None and _HA1_MD5.fullmatch(self.ha1_md5) is None:
            raise ValueError(f"extension {self.number!r}: ha1_md5 must be 32 lowercase hex digits")
        if self.ha1_sha256 is not None and _HA1_SHA256.fullmatch(self.ha1_sha256) is None:
            raise ValueError(
                f"extension {self.number!r}: ha1_sha256 must be 64 lowercase hex digits"
            )
        if self.ring_timeout < 1:
            raise ValueError(f"extension {self.number!r}: ring_timeout must be at least 1")
        if self.max_contacts < 1:
            raise ValueError(f"extension {self.number!r}: max_contacts must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrarSettings:
    """Binding lifetimes for REGISTER (RFC 3261 §10.2.1.1, §10.3 step 7).

    A REGISTER asking for less than ``min_expires`` seconds is refused with
    423 Interval Too Brief and a Min-Expires header (§10.3 step 7); more than
    ``max_expires`` is shortened; no Expires at all gets ``default_expires``.
    ``nonce_lifetime`` bounds how long a digest nonce is accepted before the
    challenge is repeated with ``stale=true`` (RFC 7616 §3.3).
    """

    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    nonce_lifetime: int = 300
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    """Digest algorithms offered, most preferred first (RFC 8760 §2.4)."""

    def __post_init__(self) -> None:
        if min(self.min_expires, self.nonce_lifetime) < 1:
            raise ValueError("registrar times must be at least 1 second")
        if not self.auth_algorithms or not set(self.auth_algorithms) <= {"SHA-256", "MD5"}:
            raise ValueError("auth_algorithms must list SHA-256 and/or MD5")
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("registrar needs min_expires <= default_expires <= max_expires")


@dataclass(frozen=True, slots=True, kw_only=True)
class SecuritySettings:
    """Lockout of guessing sources.

    A source IP address that fails digest authentication
    ``max_auth_failures`` times within ``failure_window`` seconds is blocked
    (its requests are dropped) for ``block_seconds`` seconds.
    """

    max_auth_failures: int = 10
    failure_window: int = 60
    block_seconds: int = 300

    def __post_init__(self) -> None:
        if min(self.max_auth_failures, self.failure_window, self.block_seconds) < 1:
            raise ValueError("security settings must all be at least 1")


_V = TypeVar("_V")


def _frozen_mapping(items: Mapping[str, _V]) -> Mapping[str, _V]:
    return items if isinstance(items, MappingProxyType) else MappingProxyType(dict(items))


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialplan:
    """Everything loaded from a dialplan file and its includes."""

    domain: str
    """SIP domain of this PBX and the digest realm (``pbx.example.com``)."""
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    departments: Mapping[str, Department] = field(default_factory=dict)
    """Departments by key; read-only after construction."""
    extensions: Mapping[str, Extension] = field(default_factory=dict)
    """Extensions by number; read-only after construction."""
    trunks: Mapping[str, Trunk] = field(default_factory=dict)
    """SIP trunks to providers by key; read-only after construction."""
    sources: tuple[str, ...] = ()
    """Files the plan was read from, root file first, in load order."""

    def __post_init__(self) -> None:
        if not self.domain:
            raise ValueError("dialplan needs a domain")
        # Store read-only views so a shared plan cannot be changed under a caller.
        object.__setattr__(self, "departments", _frozen_mapping(self.departments))
        object.__setattr__(self, "extensions", _frozen_mapping(self.extensions))
        object.__setattr__(self, "trunks", _frozen_mapping(self.trunks))
        for key, department in self.departments.items():
            if key != department.key:
                raise ValueError(f"department stored under {key!r} has key {department.key!r}")
        for number, extension in self.extensions.items():
            if number != extension.number:
                raise ValueError(f"extension stored under {number!r} has number {extension.number!r}")
            if extension.department not in self.departments:
                raise ValueError(
                    f"extension {number!r} has unknown department {extension.department!r}"
                )

    def extension(self, number: str) -> Extension | None:
        """The extension with this number, or None."""
        return self.extensions.get(number)
