"""The server secret account codes are hashed with, kept outside the
database: whoever reads the database (a backup, a replica, a report
tool) must not be able to turn the stored digests back into codes.

Where it comes from, first found wins:

1. ``PBX_ACCOUNT_CODE_KEY``: the secret itself, as 64 hex digits (for
   several nodes, or a secret manager that sets the environment);
2. the file ``PBX_ACCOUNT_CODE_KEY_FILE`` names, else ``var/account_codes.key``:
   64 hex digits. Made on first use with fresh random bytes, mode 0600; a
   file that others may read is refused (``chmod 600`` it).

Losing the secret makes every code unusable (re-issue them with ``pbx
codes rotate``); changing it does the same. Nodes sharing a database must
share the secret.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pbx.accountcodes.codes import KEY_BYTES

ENV_KEY: Final = "PBX_ACCOUNT_CODE_KEY"
ENV_FILE: Final = "PBX_ACCOUNT_CODE_KEY_FILE"
DEFAULT_FILE: Final = Path("var/account_codes.key")


class CodeKeyError(RuntimeError):
    """The secret cannot be had; the message says what to do (never the secret)."""


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise CodeKeyError(f"{where}: the account code secret must be {2 * KEY_BYTES} hex digits") from None
    if len(key) != KEY_BYTES:
        raise CodeKeyError(f"{where}: the account code secret must be {2 * KEY_BYTES} hex digits")
    return key


def key_file(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(ENV_FILE) or DEFAULT_FILE)


def key_source(environ: Mapping[str, str] = os.environ) -> str:
    """Where :func:`load_code_key` takes the secret from, for messages."""
    if environ.get(ENV_KEY):
        return ENV_KEY
    return str(key_file(environ).resolve())


def load_code_key(environ: Mapping[str, str] = os.environ, *, create: bool = True) -> bytes:
    """The secret, made (with ``create``) when there is none yet."""
    given = environ.get(ENV_KEY)
    if given:
        return _parse(given, ENV_KEY)
    path = key_file(environ)
    if not path.exists():
        if not create:
            raise CodeKeyError(f"{path}: no account code secret yet (pbx serve or pbx codes add makes one)")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(KEY_BYTES) + "\n")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CodeKeyError(f"{path}: the account code secret may be read by others; chmod 600 it")
    return _parse(path.read_text(), str(path))
