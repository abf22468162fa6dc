"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from pbx.sip.errors import SipError, UnsupportedUriScheme


@dataclass(frozen=True, slots=True)
class SipUri:
    """``sip:user:password@host:port;params?headers``; host lower-cased."""

    scheme: str  # "sip" or "sips"
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict, hash=False)
    headers: str = ""
    password: str | None = field(default=None, repr=False)

    @property
    def transport(self) -> str:
        value = self.params.get("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    def __str__(self) -> str:
        user = ""
        if self.user is not None:
            user = self.user + (f":{self.password}" if self.password else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{host}{port}{params}{headers}"


@dataclass(frozen=True, slots=True)
class TelUri:
    """``tel:+84912345678;phone-context=…`` (RFC 3966)."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"tel:{self.number}{params}"


Uri = SipUri | TelUri

# userinfo may hold escaped characters and the unreserved/user-unreserved set
# of §25.1; anything with whitespace, CR/LF, <, >, or quotes is refused.
_USER_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$")
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?\.?)$")
_PARAM_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]+$")
_TEL_RE = re.compile(r"^\+?[0-9A-Fa-f*#\-.()]+$")


# Characters never allowed anywhere in a sip/sips URI as it appears in a
# message: controls, space, DEL, and the <, >, " that delimit it (§25.1).
_BAD_CHAR_RE = re.compile(r'[\x00-\x20<>"\x7f]')

# Parsed URIs are kept for the texts seen last (the Request-URI, each
# phone's AOR and Contact recur on every REGISTER). Parsing is a pure
# function of the text, so the cached object is what parsing again would
# give; the objects are frozen and nothing may change their params. Errors
# are not cached. Bounded, least recently used out first, so made-up URIs
# cannot grow it nor push out the phones' own for long. A hit is answered
# in C, without a Python frame (functools' C implementation).
_CACHE_MAX = 4096


@functools.lru_cache(maxsize=_CACHE_MAX)
def parse_uri(text: str) -> Uri:
    """Parse a URI; raises SipError (400) or UnsupportedUriScheme (416)."""
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not rest:
        raise SipError("bad_uri", "Malformed URI")
    if scheme == "tel":
        return _parse_tel(rest)
    if scheme not in ("sip", "sips"):
        raise UnsupportedUriScheme("unsupported_uri_scheme", "Unsupported URI Scheme")
    if _BAD_CHAR_RE.search(rest) is not None:
        raise SipError("bad_uri", "Malformed URI")
    rest, _, headers = rest.partition("?")
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, _, pw = userinfo.partition(":")
        password = pw or None
        if not user or not _USER_RE.match(user):
            raise SipError("bad_uri", "Malformed URI user part")
        # Escaped control characters in the user part are a header-injection
        # attempt once the user part is copied into a header: refuse them.
        if "%" in user and _has_control(unquote(user)):
            raise SipError("bad_uri", "Control characters in URI")
    hostport, _, param_text = rest.partition(";")
    host, port = _split_hostport(hostport)
    params: dict[str, str | None] = {}
    if param_text:
        for part in param_text.split(";"):
            name, eq, value = part.partition("=")
            if not name or not _PARAM_RE.match(name) or (eq and value and not _PARAM_RE.match(value)):
                raise SipError("bad_uri", "Malformed URI parameter")
            params[name.lower()] = value if eq else None
    if headers and _has_control(unquote(headers), allow_del=True):
        raise SipError("bad_uri", "Control characters in URI")
    return SipUri(scheme, user, host, port, params, headers, password)


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_C0_RE = re.compile(r"[\x00-\x1f]")


def _has_control(text: str, *, allow_del: bool = False) -> bool:
    return (_C0_RE if allow_del else _CONTROL_RE).search(text) is not None


def _split_hostport(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipError("bad_uri", "Malformed URI host")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise SipError("bad_uri", "Malformed URI host")
    else:
        host, _, port_text = hostport.partition(":")
    if not host or not _HOST_RE.match(host):
        raise SipError("bad_uri", "Malformed URI host")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise SipError("bad_uri", "Malformed URI port")
        port = int(port_text)
    return host.strip("[]").lower(), port


def _parse_tel(rest: str) -> TelUri:
    number, _, param_text = rest.partition(";")
    if not _TEL_RE.match(number):
        raise SipError("bad_uri", "Malformed tel URI")
    params: dict[str, str | None] = {}
    for part in param_text.split(";") if param_text else []:
        name, eq, value = part.partition("=")
        if not name or not _PARAM_RE.match(name):
            raise SipError("bad_uri", "Malformed tel URI parameter")
        params[name.lower()] = value if eq else None
    return TelUri(number, params)
