"""Bytes to SIP messages (RFC 3261 §7, §18.3, §20), and stream framing.

Rules this parser enforces, with the answer each breach gets:
- a start line of ``METHOD uri SIP/2.0`` or ``SIP/2.0 code reason`` (400;
  another version: 505);
- header lines ``name: value`` with token names; folded lines joined (§7.3.1);
- requests carry Via, From, To, Call-ID, CSeq (§8.1.1); the CSeq method is
  the request's method; the Request-URI is a sip/sips/tel URI (416 for other
  schemes) without headers (§19.1.1 table 1);
- Content-Length, when present, is a number no larger than the body; on a
  datagram extra bytes after the body are ignored (§18.3);
- the whole message fits ``MAX_MESSAGE`` and its header part
  ``MAX_HEADER_BYTES`` (513 otherwise).

Everything wrong raises ``SipError``; when the request is still answerable its
``partial`` carries it. Nothing else may escape: the fuzz tests hold us to it.
"""

from __future__ import annotations

import re
from typing import Final

from pbx.sip.errors import MessageTooLarge, SipError, VersionNotSupported
from pbx.sip.message import (
    COMPACT_FORMS,
    CSeq,
    Header,
    HeaderValueError,
    Message,
    Request,
    Response,
    Via,
    is_token,
    method_name,
    parse_cseq,
    parse_via,
    parsed_request,
    parsed_response,
    remember_parsed,
    split_list,
)
from pbx.sip.uri import parse_uri

MAX_MESSAGE: Final = 65_535  # the largest UDP payload we take (§18.1.1 MTU aside)
MAX_HEADER_BYTES: Final = 16_384  # h11 caps its header block at the same size
MAX_HEADERS: Final = 200

_REQUIRED: Final = ("via", "from", "to", "call-id", "cseq")


def parse_message(data: bytes) -> Message:
    """Parse one whole message (a datagram, or a frame cut by StreamFramer)."""
    if len(data) > MAX_MESSAGE:
        raise MessageTooLarge("too_large", "Message Too Large", _salvage(data))
    head_end = data.find(b"\r\n\r\n")
    if head_end >= 0:
        body_start = head_end + 4
    else:
        # Tolerate bare LF line ends from sloppy senders (RFC 4475 §3.1.2.3
        # asks only that CRLF be understood; LF alone costs us nothing).
        head_end = data.find(b"\n\n")
        if head_end < 0:
            if data.endswith(b"\r\n") or data.endswith(b"\n"):
                head_end, body_start = len(data), len(data)
            else:
                raise SipError("truncated", "Truncated Message")
        else:
            body_start = head_end + 2
    try:
        head = data[:head_end].decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("not_utf8", "Header Is Not UTF-8") from None
    if head_end > MAX_HEADER_BYTES:
        raise MessageTooLarge("headers_too_large", "Headers Too Large", _salvage_text(head))
    text = head.replace("\r\n", "\n")
    lines = text.split("\n")
    start_line = lines[0]
    # Content-Length is framing, not content: it is set apart here (and
    # applied once the message is otherwise sound) and written afresh by
    # encode(), so a parsed message compares equal to its source.
    headers, lengths = _parse_header_lines(lines, controls="\r" in text or "\x00" in text)
    body = data[body_start:]
    if start_line.startswith("SIP/"):
        return _finish_response(start_line, headers, lengths, body)
    return _finish_request(start_line, headers, lengths, body)


# Header names as written -> lower-case long form, for names already checked
# to be tokens. Bounded: a flood of made-up names only stops it growing.
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX: Final = 512


def _header_name(raw: str) -> str | None:
    """The lower-case long form of a header name as written, None if it is
    not a token (trailing blanks before the colon are allowed)."""
    name = _NAME_CACHE.get(raw)
    if name is not None:
        return name
    lowered = raw.rstrip(" \t").lower()
    if not is_token(lowered):
        return None
    name = COMPACT_FORMS.get(lowered, lowered)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[raw] = name
    return name


def _parse_header_lines(lines: list[str], *, controls: bool = True) -> tuple[tuple[Header, ...], list[str]]:
    """The header lines as (name, value), less Content-Length, and every
    Content-Length value apart (one pass, no second copy of the headers).
    ``controls``: whether the lines may hold a NUL or a lone CR (False lets
    the search for them in each value be skipped)."""
    if len(lines) > MAX_HEADERS + 1:
        raise SipError("too_many_headers", "Too Many Headers")
    headers: list[Header] = []
    lengths: list[str] = []
    last_was_length = False
    known_name = _NAME_CACHE.get  # `_header_name`'s cache, looked up inline
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            # §7.3.1: a line starting with white space continues the last one.
            if last_was_length:
                lengths[-1] = f"{lengths[-1]} {line.strip()}"
                continue
            if not headers:
                raise SipError("bad_folding", "Malformed Header Folding")
            last_name, last_value = headers[-1]
            headers[-1] = (last_name, f"{last_value} {line.strip()}")
            continue
        raw, colon, value = line.partition(":")
        if not colon:
            raise SipError("bad_header", "Malformed Header Line")
        name = known_name(raw)
        if name is None:
            name = _header_name(raw)
            if name is None:
                raise SipError("bad_header", "Malformed Header Line")
        if controls and ("\x00" in value or "\r" in value):
            raise SipError("bad_header", "Control Character In Header")
        last_was_length = name == "content-length"
        if last_was_length:
            lengths.append(value.strip())
        else:
            headers.append((name, value.strip()))
    return tuple(headers), lengths


def _content_length(lengths: list[str], body: bytes) -> bytes:
    """Apply Content-Length to a datagram's body (§18.3, §20.14)."""
    if not lengths:
        return body
    declared = lengths[0]
    if any(value != declared for value in lengths):
        raise SipError("bad_content_length", "Conflicting Content-Length")
    if not declared.isdigit() or len(declared) > 9:
        raise SipError("bad_content_length", "Bad Content-Length")
    length = int(declared)
    if length > len(body):
        raise SipError("bad_content_length", "Content-Length Larger Than Body")
    return body[:length]


def _finish_request(start_line: str, headers: tuple[Header, ...], lengths: list[str], body: bytes) -> Request:
    parts = start_line.split(" ")
    if len(parts) != 3 or not is_token(parts[0]) or not parts[1]:
        raise SipError("bad_start_line", "Malformed Request Line")
    method, uri, version = parts
    method = method_name(method)
    first = dict(reversed(headers))
    missing = _first_missing(headers, first)
    parsed = None if missing else _via_and_cseq(first)
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        partial = _partial(method, uri, headers, parsed)
        if version.upper().startswith("SIP/"):
            raise VersionNotSupported("bad_version", "Version Not Supported", partial)
        raise SipError("bad_start_line", "Malformed Request Line", partial)
    if parsed is None:
        if missing:
            raise SipError(f"missing_{missing.replace('-', '_')}", f"Missing {missing} Header")
        raise SipError("bad_header_value", "Malformed Via Or CSeq")
    via, cseq = parsed
    if cseq.method != method:
        raise SipError("cseq_method_mismatch", "CSeq Method Does Not Match", _partial(method, uri, headers, parsed))
    try:
        parsed_uri = parse_uri(uri)
    except SipError as err:
        err.partial = _partial(method, uri, headers, parsed)
        raise
    if getattr(parsed_uri, "headers", ""):
        raise SipError("uri_headers", "Headers Not Allowed In Request-URI", _partial(method, uri, headers, parsed))
    max_forwards = first.get("max-forwards")
    if max_forwards is not None and (not max_forwards.isdigit() or len(max_forwards) > 3):
        raise SipError("bad_max_forwards", "Bad Max-Forwards", _partial(method, uri, headers, parsed))
    try:
        body = _content_length(lengths, body)
    except SipError as err:
        err.partial = _partial(method, uri, headers, parsed)
        raise
    return parsed_request(headers, body, method, uri, via, cseq, first)


def _finish_response(start_line: str, headers: tuple[Header, ...], lengths: list[str], body: bytes) -> Response:
    version, _, rest = start_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != "SIP/2.0" or len(code) != 3 or not code.isdigit() or code[0] == "0":
        raise SipError("bad_status_line", "Malformed Status Line")
    first = dict(reversed(headers))
    missing = _first_missing(headers, first)
    if missing:
        raise SipError(f"missing_{missing.replace('-', '_')}", f"Missing {missing} Header")
    try:
        via = parse_via(_top_via_of(first))
        cseq = parse_cseq(first.get("cseq") or "")
    except HeaderValueError as err:
        raise SipError("bad_header_value", str(err)) from None
    except IndexError:
        raise SipError("bad_header_value", "Malformed Via") from None
    body = _content_length(lengths, body)
    return parsed_response(headers, body, int(code), reason, via, cseq, first)


def _first_missing(headers: tuple[Header, ...], first: dict[str, str]) -> str:
    """The first of the required headers that no line gives a value, or ""."""
    if all(first.get(name) for name in _REQUIRED):
        return ""  # the usual case: each one's first value is not empty
    present = {name for name, value in headers if value}
    for name in _REQUIRED:
        if name not in present:
            return name
    return ""


def _top_via_of(first: dict[str, str]) -> str:
    """`top_via_text` from the first value of each header (IndexError: no Via)."""
    value = first.get("via")
    if value is None:
        raise IndexError("no Via header")
    return split_list(value)[0] if "," in value else value


def _via_and_cseq(first: dict[str, str]) -> tuple[Via, CSeq] | None:
    """Top Via and CSeq when both parse (a response can then be sent, §8.2.6)."""
    try:
        return parse_via(_top_via_of(first)), parse_cseq(first.get("cseq") or "")
    except (HeaderValueError, IndexError):
        return None  # no usable Via: nowhere to send an answer


def _partial(method: str, uri: str, headers: tuple[Header, ...], parsed: tuple[Via, CSeq] | None) -> Request | None:
    """The request as far as it goes (for ``SipError.partial``), if answerable."""
    if parsed is None:
        return None
    request = Request(headers=headers, body=b"", method=method, uri=uri)
    remember_parsed(request, top_via=parsed[0], cseq=parsed[1])
    return request


def _answerable(method: str, uri: str, headers: tuple[Header, ...]) -> Request | None:
    """The request as far as it goes, if a response can be built for it."""
    first = dict(reversed(headers))
    if _first_missing(headers, first):
        return None
    return _partial(method, uri, headers, _via_and_cseq(first))


def _salvage(data: bytes) -> Request | None:
    head_end = data.find(b"\r\n\r\n", 0, MAX_MESSAGE)
    head = data[: head_end if head_end >= 0 else MAX_MESSAGE]
    try:
        return _salvage_text(head.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def _salvage_text(head: str) -> Request | None:
    """Read start line and headers of an oversized request to answer it."""
    lines = head.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not is_token(parts[0]) or parts[0] == "SIP/2.0":
        return None
    wanted = set(_REQUIRED) | {"to"}
    kept: list[Header] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        key = COMPACT_FORMS.get(key, key)
        if colon and key in wanted and len(value) < 2048:
            kept.append((key, value.strip()))
    return _answerable(parts[0], parts[1], tuple(kept))


# ---------------------------------------------------------------- streams


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (§18.3).

    ``feed`` returns complete frames. Line breaks between messages are
    keep-alives: a run of them holding a double CRLF (RFC 5626 §3.5.1 "ping")
    is reported once as ``b"\\r\\n\\r\\n"`` so the transport can answer the
    single-CRLF "pong", and is consumed, never stored: at most the last three
    bytes of a run wait for the rest of a ping. A header part that never ends
    within ``limit`` bytes, a Content-Length that would make the message
    longer than ``limit``, or one that cannot be read, leaves the stream
    unframeable: ``broken`` is set and the connection must be closed. The
    default limit is what `parse_message` takes at most, so a connection
    holds no more than one message the parser could use (a 190 KB partial
    message per connection was once kept for nothing).

    Linear in the bytes received: the search for the end of the header part
    resumes where the last one stopped, and a frame's length is read once.
    """

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self._scanned = 0                 # bytes searched for the header end so far
        self._frame_end: int | None = None  # length of the frame being received, once known
        self.broken: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a message (or ping) not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self.broken:
            return []
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        while buffer:
            end = self._frame_end
            if end is None:
                if buffer[0] in (13, 10):  # CR or LF before a message: keep-alive
                    match = _LINE_BREAKS.match(buffer)
                    run = match.end() if match is not None else 0
                    ping = buffer.find(b"\r\n\r\n", 0, run) >= 0
                    if run == len(buffer) and not ping:
                        if run > 3:
                            del buffer[: run - 3]  # keep only what may still become a ping
                        break
                    if ping:
                        frames.append(b"\r\n\r\n")
                    del buffer[:run]
                    continue
                head_end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if head_end < 0:
                    self._scanned = len(buffer)
                    if len(buffer) > self._limit:
                        self.broken = "headers_too_large"
                    break
                length = _stream_content_length(bytes(buffer[:head_end]))
                if length is None:
                    self.broken = "bad_content_length"
                    break
                end = head_end + 4 + length
                if end > self._limit:
                    self.broken = "too_large"  # refused before its body is held
                    break
                self._frame_end = end
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[:end]))
            del buffer[:end]
            self._frame_end = None
            self._scanned = 0
        return frames


_LINE_BREAKS = re.compile(rb"[\r\n]+")


def _stream_content_length(head: bytes) -> int | None:
    """Content-Length of a streamed message; mandatory on streams (§20.14)."""
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        key = name.strip().lower()
        if colon and key in (b"content-length", b"l"):
            text = value.strip()
            if not text.isdigit() or len(text) > 9:
                return None
            return int(text)
    return 0  # absent: treat as no body rather than drop the connection


__all__ = ["parse_message", "StreamFramer", "MAX_MESSAGE", "MAX_HEADER_BYTES", "split_list"]
