"""Who is asked for an account code: the ``account_codes:`` section of a
dialplan and the ``account_codes:`` key of departments and extensions.

Modes (the extension's key overrides its department's, which overrides the
company default ``account_codes.mode``):

- ``none``: never asked (the default);
- ``all_outbound``: every call to a trunk asks for a code first, and then
  carries the code owner's class of service whatever phone it is made from;
- ``restricted``: the phone dials what its own class of service allows
  freely; a number its class of service does not allow asks for a code,
  and the call then has the code owner's class of service (a "walking"
  class of service).

Never asked, in any mode: internal calls, short numbers of a group,
emergency numbers, and numbers no code could open (a company-wide black
list, an in-group-only phone's outside numbers, unknown or malformed
numbers). A code may also be given in the dialled number: ``prefix`` +
code + ``#`` + number (``*11`` by default), for phones and automations
that cannot answer a prompt.

Pure data and two pure functions; the engine (:mod:`pbx.routing.engine`)
decides with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from pbx.accountcodes.codes import DEFAULT_LENGTH, MAX_LENGTH, MIN_LENGTH
from pbx.accountcodes.lockout import LockoutPolicy

Mode = Literal["none", "all_outbound", "restricted"]
MODES: Final[tuple[str, ...]] = get_args(Mode)
PREFIX: Final = re.compile(r"\*[0-9]{1,4}")
"""A dial prefix: ``*`` and one to four digits (a feature-code shape)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountCodeSettings:
    """The ``account_codes:`` section."""

    mode: Mode = "none"
    """The company default; departments and extensions may set their own."""
    length: int = DEFAULT_LENGTH
    """Digits of a generated code, and the fewest a chosen one may have."""
    prefix: str = "*11"
    """Dial ``<prefix><code>#<number>`` to give the code without a prompt."""
    attempts: int = 3
    """Entries a caller may get wrong in one call before "goodbye"."""
    first_digit_timeout: float = 8.0
    digit_timeout: float = 4.0
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"account_codes mode must be one of {', '.join(MODES)}")
        if not MIN_LENGTH <= self.length <= MAX_LENGTH:
            raise ValueError(f"account_codes length must be {MIN_LENGTH} to {MAX_LENGTH}")
        if PREFIX.fullmatch(self.prefix) is None:
            raise ValueError("account_codes prefix must be * and 1 to 4 digits")
        if self.attempts < 1 or min(self.first_digit_timeout, self.digit_timeout) <= 0:
            raise ValueError("account_codes attempts and timeouts must be positive")


@dataclass(frozen=True, slots=True)
class Prefixed:
    """A dialled string that gave a code: the code and the number after it."""

    code: str = field(repr=False)
    number: str


def split_prefixed(dialled: str, prefix: str) -> Prefixed | None:
    """``*11123456#0912345678`` -> code ``123456``, number ``0912345678``;
    None when ``dialled`` does not start with ``prefix`` or has no ``#``
    after a run of digits. A SIP URI carries ``#`` escaped (``%23``,
    RFC 3261 §25.1): both forms are understood."""
    if not dialled.startswith(prefix):
        return None
    code, end, number = dialled[len(prefix):].replace("%23", "#").partition("#")
    if not end or not code.isdigit() or not code.isascii() or not number or len(code) > MAX_LENGTH:
        return None
    return Prefixed(code=code, number=number)


def masked(dialled: str, prefix: str) -> str:
    """``dialled`` with a code given in it hidden, not even its length
    shown (for log lines made before the dialled number is split):
    ``*11(code)#0912345678``."""
    found = split_prefixed(dialled, prefix)
    if found is None:
        return dialled
    return f"{prefix}(code)#{found.number}"
