"""Generate N extensions as a dialplan YAML and the matching SIPp CSV.

The dialplan holds the fields `pbx serve --dialplan` reads (domain, registrar,
security, departments, extensions); the CSV is a SIPp injection file for
sipp-scenarios/register_auth.xml: a `SEQUENTIAL` line, then
`user;password;domain` per extension, in the order SIPp will use them.

Passwords are random (`secrets`) unless one is given; they go only into the
two files, never to stdout.  By default the dialplan stores no password but
`ha1_md5`, MD5(user:realm:password) (RFC 7616 §3.4.2): an extension with only
an MD5 HA1 is challenged with MD5 alone, which SIPp 3.6 needs: it answers the
topmost WWW-Authenticate and stops with a fatal error when that one is
SHA-256 (RFC 8760 §2.4 has the server list SHA-256 first).  `--credentials
password` writes the plain password instead, for clients that do SHA-256.

    python bench/make_users.py --count 20000 --dialplan plan.yaml --csv users.csv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

Credentials = Literal["ha1_md5", "password"]

DEFAULT_DOMAIN = "pbx.example.com"
DEFAULT_FIRST = 20000
DEPARTMENT_KEY = "bench"
DEPARTMENT_NAME = "Benchmark"


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """One generated extension and its digest password."""

    extension: str
    password: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Registrar:
    """The registrar section: Expires bounds in seconds (RFC 3261 §10.3 step 7)."""

    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    """The lock-out section.

    The defaults are lenient: a load test sends every user from 127.0.0.1,
    and the ordinary first 401 of each registration must never add up to a
    block of the load generator.
    """

    max_auth_failures: int = 100_000
    failure_window: int = 60
    block_seconds: int = 1
    # One SIPp process is one source address, and every registration starts
    # with an unauthenticated REGISTER: the per-source limit must not be
    # what the benchmark measures.
    unauthenticated_per_second: int = 1_000_000
    unauthenticated_burst: int = 1_000_000
    source_packets_per_second: int = 10_000_000


def make_users(count: int, *, first: int = DEFAULT_FIRST, password: str | None = None) -> list[User]:
    """Return `count` users with extensions first, first+1, ...

    Each gets a fresh random password unless `password` is given (then all
    share it).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if first < 0:
        raise ValueError(f"first extension must not be negative, got {first}")
    if password is not None and (password == "" or any(c in password for c in ';\r\n')):
        raise ValueError("password must be non-empty and hold no ';' or line break")
    return [
        User(extension=str(first + i), password=password if password is not None else secrets.token_hex(8))
        for i in range(count)
    ]


def _quote(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar (YAML 1.2 §7.3.1),
    # so this quotes any text without a YAML library.
    return json.dumps(value, ensure_ascii=True)


def ha1_md5(user: str, realm: str, password: str) -> str:
    """MD5(username ":" realm ":" password), RFC 7616 §3.4.2."""
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def dialplan_yaml(
    users: Sequence[User],
    *,
    domain: str = DEFAULT_DOMAIN,
    credentials: Credentials = "ha1_md5",
    registrar: Registrar = Registrar(),
    security: Security = Security(),
) -> str:
    """The dialplan text: all users in one department."""
    lines = [
        f"domain: {_quote(domain)}",
        "registrar:",
        f"  min_expires: {registrar.min_expires}",
        f"  max_expires: {registrar.max_expires}",
        f"  default_expires: {registrar.default_expires}",
        "security:",
        f"  max_auth_failures: {security.max_auth_failures}",
        f"  failure_window: {security.failure_window}",
        f"  block_seconds: {security.block_seconds}",
        f"  unauthenticated_per_second: {security.unauthenticated_per_second}",
        f"  unauthenticated_burst: {security.unauthenticated_burst}",
        f"  source_packets_per_second: {security.source_packets_per_second}",
        "departments:",
        f"  {DEPARTMENT_KEY}:",
        f"    name: {_quote(DEPARTMENT_NAME)}",
        "extensions:",
    ]
    for user in users:
        lines.append(f"  {_quote(user.extension)}:")
        lines.append(f"    name: {_quote('User ' + user.extension)}")
        lines.append(f"    department: {DEPARTMENT_KEY}")
        # A SIPp UAS stands for one extension taking every call of a load
        # run: no call-waiting limit (max_calls, default 2).
        lines.append("    max_calls: 100000")
        if credentials == "password":
            lines.append(f"    password: {_quote(user.password)}")
        else:
            lines.append(f"    ha1_md5: {_quote(ha1_md5(user.extension, domain, user.password))}")
    return "\n".join(lines) + "\n"


def sipp_csv(users: Sequence[User], *, domain: str = DEFAULT_DOMAIN) -> str:
    """The SIPp injection file: SEQUENTIAL, then user;password;domain."""
    rows = ["SEQUENTIAL"] + [f"{u.extension};{u.password};{domain}" for u in users]
    return "\n".join(rows) + "\n"


def write_users(
    count: int,
    dialplan: Path,
    csv: Path,
    *,
    first: int = DEFAULT_FIRST,
    domain: str = DEFAULT_DOMAIN,
    password: str | None = None,
    credentials: Credentials = "ha1_md5",
) -> list[User]:
    """Generate `count` users and write both files; return the users."""
    if not domain or any(c in domain for c in ';\r\n '):
        raise ValueError(f"domain must be a host name, got {domain!r}")
    users = make_users(count, first=first, password=password)
    dialplan.write_text(dialplan_yaml(users, domain=domain, credentials=credentials), encoding="utf-8")
    csv.write_text(sipp_csv(users, domain=domain), encoding="utf-8")
    return users


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, required=True, help="number of extensions")
    parser.add_argument("--first", type=int, default=DEFAULT_FIRST, help="first extension number")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN, help="domain and digest realm")
    parser.add_argument("--password", default=None, help="one password for all (default: random each)")
    parser.add_argument(
        "--credentials",
        choices=get_args(Credentials),
        default="ha1_md5",
        help="what the dialplan stores (default ha1_md5: MD5-only challenges, as SIPp 3.6 needs)",
    )
    parser.add_argument("--dialplan", type=Path, required=True, help="dialplan YAML to write")
    parser.add_argument("--csv", type=Path, required=True, help="SIPp injection CSV to write")
    args = parser.parse_args(argv)
    try:
        users = write_users(
            args.count,
            args.dialplan,
            args.csv,
            first=args.first,
            domain=args.domain,
            password=args.password,
            credentials=args.credentials,
        )
    except (ValueError, OSError) as error:
        print(f"make_users: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(users)} users to {args.dialplan} and {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
