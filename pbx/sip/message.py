"""SIP messages (RFC 3261 §7) and the typed header values the core reads.

A message keeps its headers as an ordered tuple of ``(name, value)`` pairs with
lower-case long-form names, in the order they arrived: §7.3.1 lets a proxy or
UA rely on the relative order of same-named headers (Via, Route), never on the
order across names. Typed views (``Via``, ``CSeq``, ``NameAddr``) are parsed on
demand by the functions in this module; messages are frozen, so a changed copy
is made with ``dataclasses.replace`` or the helpers below.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import ClassVar, Final, Iterable

# §7.3.3 and the IANA registry: compact forms still sent by mobile clients.
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "call-id",
    "m": "contact",
    "v": "via",
    "f": "from",
    "t": "to",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "u": "allow-events",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

# Names whose usual spelling is not plain Title-Case of the hyphenated parts.
_SPECIAL_SPELLING: Final[dict[str, str]] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
}

# Headers whose grammar is a comma-separated list (§7.3.1): these may be
# split into one value per element. Authorization and friends are NOT lists
# even though their values contain commas.
LIST_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "in-reply-to",
        "path",
        "service-route",
    }
)

_canonical_cache: dict[str, str] = {}


def canonical_name(name: str) -> str:
    """The conventional spelling of a lower-case header name, for output."""
    spelled = _canonical_cache.get(name)
    if spelled is None:
        spelled = _SPECIAL_SPELLING.get(name) or "-".join(
            part[:1].upper() + part[1:] for part in name.split("-")
        )
        if len(_canonical_cache) < 512:
            _canonical_cache[name] = spelled
    return spelled


Header = tuple[str, str]


def split_list(value: str) -> list[str]:
    """Split a list-valued header on commas outside quotes and angle brackets."""
    if "," not in value:
        return [value.strip()]
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


@dataclass(frozen=True, slots=True)
class _Message:
    headers: tuple[Header, ...]
    body: bytes
    # Typed views parsed once and kept (see ``top_via``, ``cseq``): not part
    # of the value (compare=False) and not copied by ``replace`` (init=False),
    # so a copy with other headers parses its own.
    _top_via: Via | None = field(default=None, init=False, compare=False, repr=False)
    _cseq: CSeq | None = field(default=None, init=False, compare=False, repr=False)
    # The first value of each header name, made on the first lookup: a
    # REGISTER is asked for ten names or so, most of them absent (Require,
    # Supported, Path), and each was a scan of every header.
    _first: dict[str, str] | None = field(default=None, init=False, compare=False, repr=False)

    def _first_values(self) -> dict[str, str]:
        first = self._first
        if first is None:
            # Built backwards, so the first of several same-named values wins.
            first = dict(reversed(self.headers))
            object.__setattr__(self, "_first", first)
        return first

    def get(self, name: str) -> str | None:
        """First value of header ``name`` (lower-case long form), or None."""
        first = self._first
        if first is None:
            first = self._first_values()
        return first.get(name)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list-valued headers split per element."""
        first = self._first
        if first is None:
            first = self._first_values()
        if name not in first:
            return []
        found = [value for key, value in self.headers if key == name]
        if name in LIST_HEADERS:
            return [item for value in found for item in split_list(value)]
        return found

    def has(self, name: str) -> bool:
        first = self._first
        if first is None:
            first = self._first_values()
        return name in first

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> CSeq:
        """The CSeq header, parsed on first use; raises HeaderValueError."""
        cseq = self._cseq
        if cseq is None:
            cseq = parse_cseq(self.get("cseq") or "")
            object.__setattr__(self, "_cseq", cseq)
        return cseq

    @property
    def top_via(self) -> Via:
        """The first Via element, parsed on first use; raises HeaderValueError
        (IndexError without any Via)."""
        via = self._top_via
        if via is None:
            via = parse_via(top_via_text(self.headers))
            object.__setattr__(self, "_top_via", via)
        return via

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self.get("from") or "")

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self.get("to") or "")

    def _encode_headers(self, out: list[str]) -> None:
        spellings = _canonical_cache  # canonical_name's own cache, looked up inline
        for name, value in self.headers:
            if name != "content-length":
                out.append(f"{spellings.get(name) or canonical_name(name)}: {value}\r\n")
        out.append(f"Content-Length: {len(self.body)}\r\n\r\n")


@dataclass(frozen=True, slots=True)
class Request(_Message):
    method: str
    uri: str

    is_request: ClassVar[bool] = True

    def encode(self) -> bytes:
        out = [f"{self.method} {self.uri} SIP/2.0\r\n"]
        self._encode_headers(out)
        return "".join(out).encode() + self.body


@dataclass(frozen=True, slots=True)
class Response(_Message):
    status: int
    reason: str

    is_request: ClassVar[bool] = False

    def encode(self) -> bytes:
        out = [f"SIP/2.0 {self.status} {self.reason}\r\n"]
        self._encode_headers(out)
        return "".join(out).encode() + self.body


Message = Request | Response


# Building a frozen dataclass sets each field with object.__setattr__; the
# slots' own setters do the same for less, and a message the parser builds
# has its typed views set once instead of first to None. Only for these two
# classes, whose every field is set below (tests/sip/test_hot_path.py holds
# them to what the constructors and `remember_parsed` give).
_new_object = object.__new__
_SET_HEADERS = _Message.__dict__["headers"].__set__
_SET_BODY = _Message.__dict__["body"].__set__
_SET_TOP_VIA = _Message.__dict__["_top_via"].__set__
_SET_CSEQ = _Message.__dict__["_cseq"].__set__
_SET_FIRST = _Message.__dict__["_first"].__set__
_SET_METHOD = Request.__dict__["method"].__set__
_SET_URI = Request.__dict__["uri"].__set__
_SET_STATUS = Response.__dict__["status"].__set__
_SET_REASON = Response.__dict__["reason"].__set__


def parsed_request(
    headers: tuple[Header, ...], body: bytes, method: str, uri: str,
    top_via: Via | None = None, cseq: CSeq | None = None, first: dict[str, str] | None = None,
) -> Request:
    """``Request(headers=..., body=..., method=..., uri=...)`` followed by
    `remember_parsed` with the rest, in one step (the same object)."""
    request: Request = _new_object(Request)
    _SET_HEADERS(request, headers)
    _SET_BODY(request, body)
    _SET_METHOD(request, method)
    _SET_URI(request, uri)
    _SET_TOP_VIA(request, top_via)
    _SET_CSEQ(request, cseq)
    _SET_FIRST(request, first)
    return request


def parsed_response(
    headers: tuple[Header, ...], body: bytes, status: int, reason: str,
    top_via: Via | None = None, cseq: CSeq | None = None, first: dict[str, str] | None = None,
) -> Response:
    """``Response(...)`` and `remember_parsed` in one step, as `parsed_request`."""
    response: Response = _new_object(Response)
    _SET_HEADERS(response, headers)
    _SET_BODY(response, body)
    _SET_STATUS(response, status)
    _SET_REASON(response, reason)
    _SET_TOP_VIA(response, top_via)
    _SET_CSEQ(response, cseq)
    _SET_FIRST(response, first)
    return response


def top_via_text(headers: tuple[Header, ...]) -> str:
    """The first Via element as written, without splitting the others off;
    raises IndexError when there is no Via."""
    for name, value in headers:
        if name == "via":
            if "," in value:
                return split_list(value)[0]
            return value
    raise IndexError("no Via header")


def remember_parsed(
    message: _Message, *, top_via: Via | None = None, cseq: CSeq | None = None, first: dict[str, str] | None = None
) -> None:
    """Keep typed values the caller parsed from ``message``'s own headers, so
    ``top_via`` and ``cseq`` do not parse them again. Only for values equal to
    what parsing those headers gives (the parser, ``stamp_via``); ``first``
    maps each header name to its first value, as ``dict(reversed(headers))``
    would, and is the message's own from then on."""
    if top_via is not None:
        object.__setattr__(message, "_top_via", top_via)
    if cseq is not None:
        object.__setattr__(message, "_cseq", cseq)
    if first is not None:
        object.__setattr__(message, "_first", first)


def make_request(
    method: str, uri: str, headers: Iterable[Header], body: bytes = b""
) -> Request:
    """Build a request; header names are given in any case, long or compact."""
    return Request(
        headers=tuple((normalise_name(k), v) for k, v in headers),
        body=body,
        method=method,
        uri=uri,
    )


_normalised_cache: dict[str, str] = {}


def normalise_name(name: str) -> str:
    """The lower-case long form of a header name; one string per name, so a
    message kept for a call's life does not hold copies of "max-forwards"."""
    normal = _normalised_cache.get(name)
    if normal is None:
        lowered = name.lower()
        normal = COMPACT_FORMS.get(lowered, lowered)
        if len(_normalised_cache) < 512:  # bounded, as canonical_name's
            _normalised_cache[name] = normal
    return normal


# The methods in use, each one string: a parsed request's method and CSeq
# method share it instead of holding a copy each (kept with every dialog).
_METHOD_NAMES: Final[dict[str, str]] = {name: name for name in (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "INFO", "PRACK", "SUBSCRIBE", "NOTIFY",
    "REFER", "MESSAGE", "PUBLISH",
)}


def method_name(text: str) -> str:
    """``text``, or the one shared string of a method we know spelt so."""
    return _METHOD_NAMES.get(text, text)


def with_header(message: Message, name: str, value: str) -> Message:
    """A copy with ``name`` appended after any existing headers."""
    return replace(message, headers=message.headers + ((name, value),))


def with_headers_replaced(message: Message, name: str, values: Iterable[str]) -> Message:
    """A copy where every ``name`` header is replaced by ``values``."""
    kept = tuple(h for h in message.headers if h[0] != name)
    return replace(message, headers=kept + tuple((name, v) for v in values))


# Reason phrases of RFC 3261 §21 and the extensions we answer with.
REASONS: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    603: "Decline",
}

# Headers a response copies from its request (§8.2.6.2).
_COPIED: Final[frozenset[str]] = frozenset({"via", "from", "call-id", "cseq"})


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[Header] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` per §8.2.6: Via, From, Call-ID, CSeq copied,
    To copied with ``to_tag`` added when it has none (never on 100)."""
    copied: list[Header] = []
    for name, value in request.headers:
        if name in _COPIED:
            copied.append((name, value))
        elif name == "to":
            if to_tag and status != 100 and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            copied.append((name, value))
        elif name == "timestamp" and status == 100:
            copied.append((name, value))  # §8.2.6.1
    copied.extend((normalise_name(k), v) for k, v in headers)
    return parsed_response(tuple(copied), body, status, reason or REASONS.get(status, "Unknown"))


# ---------------------------------------------------------------- typed values

MAGIC_COOKIE: Final = "z9hG4bK"  # §8.1.1.7: branch prefix of RFC 3261 agents


class HeaderValueError(ValueError):
    """A header's value does not follow its grammar."""


# token (§25.1): one or more of alphanum and -.!%*_+`'~
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _parse_params(text: str) -> dict[str, str | None]:
    """``;a=b;c`` → {"a": "b", "c": None}; names lower-cased, quotes kept off."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in _split_semicolons(text):
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            raise HeaderValueError("empty parameter name")
        if eq:
            value = value.strip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            params[name] = value
        else:
            params[name] = None
    return params


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return [p.strip() for p in text.split(";")]
    parts: list[str] = []
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    if quoted:
        raise HeaderValueError("unterminated quoted string")
    parts.append(text[start:].strip())
    return parts


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(frozen=True, slots=True)
class Via:
    """One Via element (§20.42): ``SIP/2.0/UDP host:port;branch=…``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict, hash=False, compare=True)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {host}{port}{_format_params(self.params)}"


_SET_VIA_TRANSPORT = Via.__dict__["transport"].__set__
_SET_VIA_HOST = Via.__dict__["host"].__set__
_SET_VIA_PORT = Via.__dict__["port"].__set__
_SET_VIA_PARAMS = Via.__dict__["params"].__set__


def new_via(transport: str, host: str, port: int | None, params: dict[str, str | None]) -> Via:
    """``Via(transport, host, port, params)`` with the slots' own setters
    (see `parsed_request`): two are built for every request received."""
    via: Via = object.__new__(Via)
    _SET_VIA_TRANSPORT(via, transport)
    _SET_VIA_HOST(via, host)
    _SET_VIA_PORT(via, port)
    _SET_VIA_PARAMS(via, params)
    return via


_VIA_RE = re.compile(
    r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(?:\s*:\s*(\d{1,5}))?\s*(;.*)?$",
    re.S,
)


def parse_via(value: str) -> Via:
    match = _VIA_RE.match(value)
    if match is None:
        raise HeaderValueError("malformed Via")
    transport, host, port, params = match.groups()
    if host.startswith("["):
        host = host[1:-1]
    port_number = int(port) if port else None
    if port_number is not None and not 0 < port_number < 65536:
        raise HeaderValueError("Via port out of range")
    return new_via(transport.upper(), host, port_number, _parse_params(params[1:] if params else ""))


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    number, _, method = value.strip().partition(" ")
    method = method.strip()
    known = _METHOD_NAMES.get(method)  # a method we know is a token
    if not number.isdigit() or (known is None and not is_token(method)) or len(number) > 10:
        raise HeaderValueError("malformed CSeq")
    as_int = int(number)
    if as_int >= 2**31:  # §8.1.1.5: the sequence number is below 2**31
        raise HeaderValueError("CSeq number too large")
    return CSeq(as_int, known or method)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To, Contact, Route values: optional display name, URI, params."""

    display: str | None
    uri: str
    params: dict[str, str | None] = field(default_factory=dict, hash=False)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


# Parsed addresses are kept for the values seen last (a phone's To and
# Contact recur on every REGISTER; the service and the registrar both read
# the To), as parsed URIs are (pbx.sip.uri.parse_uri: pure, frozen objects,
# errors not cached, least recently used out first).
@functools.lru_cache(maxsize=4096)
def parse_name_addr(value: str) -> NameAddr:
    """Parse name-addr or addr-spec (§20.10, §25.1).

    Without angle brackets, everything after the first ``;`` is a header
    parameter, not a URI parameter (§20.10).
    """
    text = value.strip()
    if not text:
        raise HeaderValueError("empty address")
    display: str | None = None
    if text.startswith('"'):
        end = 1
        while end < len(text):
            if text[end] == "\\":
                end += 2
                continue
            if text[end] == '"':
                break
            end += 1
        else:
            raise HeaderValueError("unterminated display name")
        display = text[1:end].replace('\\"', '"').replace("\\\\", "\\")
        text = text[end + 1 :].lstrip()
        if not text.startswith("<"):
            raise HeaderValueError("display name without <uri>")
    lt = text.find("<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise HeaderValueError("missing '>'")
        if display is None and lt > 0:
            display = text[:lt].strip() or None
        uri = text[lt + 1 : gt].strip()
        rest = text[gt + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise HeaderValueError("junk after '>'")
        params = _parse_params(rest[1:] if rest else "")
    else:
        uri, _, rest = text.partition(";")
        uri = uri.strip()
        if " " in uri:
            raise HeaderValueError("space in address")
        params = _parse_params(rest)
    if not uri or ":" not in uri:
        raise HeaderValueError("address without a URI scheme")
    return NameAddr(display, uri, params)
