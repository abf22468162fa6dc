"""Making and checking the console's secrets.

Console passwords are hashed with argon2id (argon2-cffi's defaults, RFC
9106's second recommended setting); tokens are random and stored as their
SHA-256. SIP passwords for new extensions are random too, shown once, and
only their digest HA1 values are written to the dialplan.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import string
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER: Final = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to check against when the username does not exist, so a wrong
    name takes as long as a wrong password (no user enumeration by timing).
    Made on first use, not at import: an argon2 hash costs a tenth of a
    second or more, and most processes that import this never check one."""
    return _HASHER.hash(secrets.token_hex(16))


# Letters and digits people can read off a screen: no 0/O, 1/l/I.
_READABLE: Final = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")

MIN_PASSWORD_LENGTH: Final = 10


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (None: no such user, still
    costs one verification)."""
    try:
        return _HASHER.verify(stored if stored is not None else _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_password(length: int = 16) -> str:
    """A random password from readable characters (about 5.8 bits each)."""
    return "".join(secrets.choice(_READABLE) for _ in range(length))


def new_token(prefix: str = "") -> str:
    """256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ha1_values(number: str, realm: str, password: str) -> tuple[str, str]:
    """(ha1_md5, ha1_sha256) of a SIP password, as the dialplan stores them."""
    text = f"{number}:{realm}:{password}".encode()
    return hashlib.md5(text).hexdigest(), hashlib.sha256(text).hexdigest()
