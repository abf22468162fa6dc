"""structlog set-up: once per process, JSON or console, secrets redacted.

Event names are stable snake_case tags and values go in keys. Whatever a
caller passes, the ``redact`` processor blanks keys that can carry secrets
(passwords, HA1 hashes, Authorization headers, digest responses, account
codes, SRTP keys), so a careless log call cannot leak one. SRTP master keys
inside text (an SDP body's ``a=crypto:... inline:KEY``) are blanked too.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, MutableMapping

import structlog

_SECRET_KEYS = re.compile(
    r"(pass(word)?|secret|ha1|authorization|proxy[-_]authorization|response|cnonce|account[-_]?code|pin"
    r"|crypto|inline|key_material|master_key|srtp_key)$",
    re.I,
)
_AUTH_IN_TEXT = re.compile(r"((?:Proxy-)?Authorization:\s*)[^\r\n]*", re.I)
_KEY_IN_TEXT = re.compile(r"(inline:)[^\s|;]+", re.I)


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key != "event" and _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        elif isinstance(event[key], str):
            if "uthorization" in event[key]:
                event[key] = _AUTH_IN_TEXT.sub(r"\1[redacted]", event[key])
            if "inline:" in event[key].lower():
                event[key] = _KEY_IN_TEXT.sub(r"\1[redacted]", event[key])
    return event


def configure(*, json: bool | None = None, level: str = "info") -> None:
    """Configure structlog and route stdlib logging through it."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
