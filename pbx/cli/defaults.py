"""Defaults the commands share, so ``pbx serve`` and the commands that talk
to it or read what it wrote agree on where things are."""

from __future__ import annotations

from pathlib import Path
from typing import Final

DEFAULT_DB: Final = "sqlite:///var/pbx.sqlite3"
DEFAULT_LISTEN: Final = ("udp:0.0.0.0:5060", "tcp:0.0.0.0:5060")
DEFAULT_PID_FILE: Final = Path("var/pbx.pid")
