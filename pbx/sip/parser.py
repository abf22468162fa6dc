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

from typing import Final

from pbx.sip.errors import MessageTooLarge, SipError, VersionNotSupported
from pbx.sip.message import (
    COMPACT_FORMS,
    Header,
    HeaderValueError,
    Message,
    Request,
    Response,
    is_token,
    parse_cseq,
    parse_via,
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
    lines = head.replace("\r\n", "\n").split("\n")
    start_line = lines[0]
    headers = _parse_header_lines(lines)
    body = data[body_start:]
    # Content-Length is framing, not content: it is read here and written
    # afresh by encode(), so a parsed message compares equal to its source.
    if start_line.startswith("SIP/"):
        return _finish_response(start_line, headers, body)
    return _finish_request(start_line, headers, body)


def _parse_header_lines(lines: list[str]) -> tuple[Header, ...]:
    if len(lines) > MAX_HEADERS + 1:
        raise SipError("too_many_headers", "Too Many Headers")
    headers: list[Header] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            # §7.3.1: a line starting with white space continues the last one.
            if not headers:
                raise SipError("bad_folding", "Malformed Header Folding")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t").lower()
        if not colon or not is_token(name):
            raise SipError("bad_header", "Malformed Header Line")
        if "\x00" in value or "\r" in value:
            raise SipError("bad_header", "Control Character In Header")
        headers.append((COMPACT_FORMS.get(name, name), value.strip()))
    return tuple(headers)


def _content_length(headers: tuple[Header, ...], body: bytes) -> bytes:
    """Apply Content-Length to a datagram's body (§18.3, §20.14)."""
    declared: str | None = None
    for name, value in headers:
        if name == "content-length":
            if declared is not None and declared != value:
                raise SipError("bad_content_length", "Conflicting Content-Length")
            declared = value
    if declared is None:
        return body
    if not declared.isdigit() or len(declared) > 9:
        raise SipError("bad_content_length", "Bad Content-Length")
    length = int(declared)
    if length > len(body):
        raise SipError("bad_content_length", "Content-Length Larger Than Body")
    return body[:length]


def _finish_request(start_line: str, headers: tuple[Header, ...], body: bytes) -> Request:
    parts = start_line.split(" ")
    if len(parts) != 3 or not is_token(parts[0]) or not parts[1]:
        raise SipError("bad_start_line", "Malformed Request Line")
    method, uri, version = parts
    partial = _answerable(method, uri, headers)
    if version.upper() != "SIP/2.0":
        if version.upper().startswith("SIP/"):
            raise VersionNotSupported("bad_version", "Version Not Supported", partial)
        raise SipError("bad_start_line", "Malformed Request Line", partial)
    if partial is None:
        missing = _first_missing(headers)
        if missing:
            raise SipError(f"missing_{missing.replace('-', '_')}", f"Missing {missing} Header")
        raise SipError("bad_header_value", "Malformed Via Or CSeq")
    try:
        cseq = parse_cseq(partial.get("cseq") or "")
        parse_via(partial.get_all("via")[0])
    except HeaderValueError as err:
        raise SipError("bad_header_value", str(err).capitalize(), partial) from None
    if cseq.method != method:
        raise SipError("cseq_method_mismatch", "CSeq Method Does Not Match", partial)
    try:
        parsed_uri = parse_uri(uri)
    except SipError as err:
        err.partial = partial
        raise
    if getattr(parsed_uri, "headers", ""):
        raise SipError("uri_headers", "Headers Not Allowed In Request-URI", partial)
    max_forwards = partial.get("max-forwards")
    if max_forwards is not None and (not max_forwards.isdigit() or len(max_forwards) > 3):
        raise SipError("bad_max_forwards", "Bad Max-Forwards", partial)
    try:
        body = _content_length(headers, body)
    except SipError as err:
        err.partial = partial
        raise
    return Request(headers=_without_length(headers), body=body, method=method, uri=uri)


def _without_length(headers: tuple[Header, ...]) -> tuple[Header, ...]:
    return tuple(h for h in headers if h[0] != "content-length")


def _finish_response(start_line: str, headers: tuple[Header, ...], body: bytes) -> Response:
    version, _, rest = start_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != "SIP/2.0" or len(code) != 3 or not code.isdigit() or code[0] == "0":
        raise SipError("bad_status_line", "Malformed Status Line")
    missing = _first_missing(headers)
    if missing:
        raise SipError(f"missing_{missing.replace('-', '_')}", f"Missing {missing} Header")
    response = Response(headers=headers, body=b"", status=int(code), reason=reason)
    try:
        parse_cseq(response.get("cseq") or "")
        parse_via(response.get_all("via")[0])
    except HeaderValueError as err:
        raise SipError("bad_header_value", str(err)) from None
    body = _content_length(headers, body)
    return Response(headers=_without_length(headers), body=body, status=int(code), reason=reason)


def _first_missing(headers: tuple[Header, ...]) -> str:
    present = {name for name, value in headers if value}
    for name in _REQUIRED:
        if name not in present:
            return name
    return ""


def _answerable(method: str, uri: str, headers: tuple[Header, ...]) -> Request | None:
    """The request as far as it goes, if a response can be built for it."""
    if _first_missing(headers):
        return None
    request = Request(headers=headers, body=b"", method=method, uri=uri)
    try:
        vias = request.get_all("via")
        parse_via(vias[0])
        parse_cseq(request.get("cseq") or "")
    except (HeaderValueError, IndexError):
        return None  # no usable Via: nowhere to send an answer
    return request


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

    ``feed`` returns complete frames. CRLF keep-alives between messages
    (RFC 5626 §3.5.1: a double CRLF "ping") are reported as ``b"\\r\\n\\r\\n"``
    frames so the transport can answer the single-CRLF "pong". A header part
    that never ends within ``limit`` bytes, or a Content-Length that cannot
    be read, leaves the stream unframeable: ``broken`` is set and the
    connection must be closed.
    """

    def __init__(self, limit: int = MAX_MESSAGE * 2) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self.broken: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self.broken:
            return []
        self._buffer += data
        frames: list[bytes] = []
        buffer = self._buffer
        while buffer:
            if buffer[0] in (13, 10):  # CR or LF before a message
                stripped = len(buffer) - len(buffer.lstrip(b"\r\n"))
                if buffer.startswith(b"\r\n\r\n"):
                    frames.append(b"\r\n\r\n")
                    del buffer[:4]
                    continue
                if stripped == len(buffer):
                    break  # wait: may become a ping
                del buffer[:stripped]
                continue
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buffer) > self._limit:
                    self.broken = "headers_too_large"
                break
            length = _stream_content_length(bytes(buffer[:head_end]))
            if length is None:
                self.broken = "bad_content_length"
                break
            end = head_end + 4 + length
            if end > self._limit + MAX_MESSAGE:
                self.broken = "too_large"
                break
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[:end]))
            del buffer[:end]
        return frames


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
