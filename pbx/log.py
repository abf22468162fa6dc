"""structlog set-up: once per process, JSON or console, secrets redacted.

Event names are stable snake_case tags and values go in keys. Whatever a
caller passes, the ``redact`` processor blanks keys that can carry secrets
(passwords, HA1 hashes, Authorization headers, digest responses, account
codes, SRTP keys), so a careless log call cannot leak one. SRTP master keys
inside text (an SDP body's ``a=crypto:... inline:KEY``) and account codes
dialled before a number (``*11483948#0912...``) are blanked too.

A line costs the event loop a few microseconds (bench/log_cost.py): the
verdict on each key name is remembered (a process logs a few hundred
distinct keys), text is searched once for both kinds of secret, the
timestamp reuses the formatted second, and orjson renders straight to bytes
written to stderr's buffer, one write per line, so a line is out (and a
test or ``journalctl -f`` sees it) when the call returns.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import IO, Any, MutableMapping, Protocol

import orjson
import structlog

_SECRET_KEYS = re.compile(
    r"(pass(word)?|secret|ha1|authorization|proxy[-_]authorization|response|cnonce|account[-_]?code|pin"
    r"|crypto|inline|key_material|master_key|srtp_key)$",
    re.I,
)
_AUTH_IN_TEXT = re.compile(r"((?:Proxy-)?Authorization:\s*)[^\r\n]*", re.I)
_KEY_IN_TEXT = re.compile(r"(inline:)[^\s|;]+", re.I)
# Both kinds of secret in text follow a colon ("Authorization:", "inline:"),
# so a value without one (most: tags, numbers, Call-IDs) is not searched.
_SECRET_IN_TEXT = re.compile(r"uthorization|inline:", re.I)
# An account code dialled before a number (`*11` + code + `#` + number, `#`
# as %23 in a URI) wherever such a string turns up (a transfer target, a
# Refer-To): prefix and code go, the number stays. Looked for only in text
# with a `*` and a `#` or `%23`.
_DIALLED_CODE = re.compile(r"\*[0-9]+(?:#|%23)")

_secret_key: dict[str, bool] = {}
"""Key name -> whether its value is blanked; key names are code, not input."""


def _is_secret_key(key: str) -> bool:
    verdict = _secret_key.get(key)
    if verdict is None:
        verdict = key != "event" and _SECRET_KEYS.search(key) is not None
        if len(_secret_key) < 10_000:  # bounded should a caller ever use data as keys
            _secret_key[key] = verdict
    return verdict


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if _is_secret_key(key):
            event[key] = "[redacted]"
        elif isinstance(value, str):
            if ":" in value and _SECRET_IN_TEXT.search(value) is not None:
                if "uthorization" in value:
                    value = _AUTH_IN_TEXT.sub(r"\1[redacted]", value)
                value = event[key] = _KEY_IN_TEXT.sub(r"\1[redacted]", value)
            if "*" in value and ("#" in value or "%23" in value):
                event[key] = _DIALLED_CODE.sub("*(code)#", value)
    return event


class UtcStamper:
    """``timestamp``: ISO 8601 UTC to the microsecond, as structlog's
    ``TimeStamper(fmt="iso", utc=True)`` writes it; the date and time of day
    are formatted once a second."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._prefix = ""

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


def render_json(_: Any, __: str, event: MutableMapping[str, Any]) -> bytes:
    """One JSON line as bytes; a value orjson does not know is written as str()."""
    return orjson.dumps(event, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)


class _ByteSink(Protocol):
    def write(self, data: bytes, /) -> Any: ...
    def flush(self) -> Any: ...


class LineWriter:
    """Writes rendered lines to a binary stream, whole lines only."""

    def __init__(self, stream: _ByteSink) -> None:
        self._stream = stream
        self._lock = threading.Lock()  # the reload and CDR threads log too

    def msg(self, line: bytes) -> None:
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    log = debug = info = warn = warning = error = err = fatal = exception = critical = msg


def _writer_factory(*_: Any) -> LineWriter:
    stream = sys.stderr
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        stream.flush()  # text already written stays before our bytes
        return LineWriter(binary)
    return LineWriter(_TextAsBytes(stream))


class _TextAsBytes:
    """A text stream (a test's StringIO) taking the rendered bytes."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data.decode("utf-8"))

    def flush(self) -> None:
        self._stream.flush()


def configure(*, json: bool | None = None, level: str = "info") -> None:
    """Configure structlog and route stdlib logging through it."""
    if json is None:
        json = not sys.stderr.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        UtcStamper(),
        redact,
        structlog.processors.format_exc_info,
    ]
    if json:
        processors.append(render_json)
        factory: Any = _writer_factory
    else:
        processors.append(structlog.dev.ConsoleRenderer())
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
