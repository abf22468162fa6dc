"""REFER (RFC 3515) and Replaces (RFC 3891), the parts a B2BUA needs.

- ``Refer-To`` names where the transferee should go; for an attended
  transfer its URI carries an escaped ``Replaces`` header naming the
  transferor's dialog with the target (RFC 3891 §7: Call-ID, ``to-tag``
  the tag of the UA that receives the INVITE with Replaces, ``from-tag``
  the other one's);
- the REFER is answered 202 and its progress reported in NOTIFY requests
  of the implicit ``refer`` subscription (RFC 3515 §2.4.4), whose bodies
  are ``message/sipfrag`` status lines (RFC 3420): ``SIP/2.0 100 Trying``
  first, a final status last, with ``Subscription-State: terminated``.

Pure: parsing and building only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from pbx.sip.errors import SipError
from pbx.sip.message import Header, HeaderValueError, parse_name_addr
from pbx.sip.uri import SipUri, TelUri, parse_uri

SIPFRAG_TYPE: Final[Header] = ("content-type", "message/sipfrag;version=2.0")
REFER_EVENT: Final[Header] = ("event", "refer")
REASONS: Final = {100: "Trying", 180: "Ringing", 200: "OK", 403: "Forbidden", 404: "Not Found",
                  480: "Temporarily Unavailable", 486: "Busy Here", 487: "Request Terminated",
                  488: "Not Acceptable Here", 500: "Server Internal Error", 503: "Service Unavailable",
                  603: "Decline"}


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog a Replaces header names (RFC 3891 §6.1)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False


@dataclass(frozen=True, slots=True)
class ReferTarget:
    """Where a REFER sends the transferee: a number (the user part of a
    SIP URI, or a tel URI) and, for an attended transfer, the dialog the
    new call replaces."""

    number: str
    replaces: Replaces | None = None


class BadRefer(SipError):
    """A REFER whose Refer-To cannot be used: 400 (RFC 3515 §2.4.2)."""

    status = 400


def parse_replaces(value: str) -> Replaces:
    """``callid;to-tag=x;from-tag=y[;early-only]`` (RFC 3891 §6.1)."""
    call_id, _, rest = value.strip().partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";") if rest else []:
        name, _, param = part.strip().partition("=")
        params[name.lower()] = param.strip()
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not call_id.strip() or not to_tag or not from_tag:
        raise BadRefer("bad_replaces", "Bad Replaces")
    return Replaces(call_id.strip(), to_tag, from_tag, "early-only" in params)


def parse_refer_to(value: str | None) -> ReferTarget:
    """The target of a REFER's ``Refer-To`` header; :class:`BadRefer` if
    there is none, it is not a SIP or tel URI with a number, or its
    Replaces is malformed."""
    if not value:
        raise BadRefer("no_refer_to", "Missing Refer-To")
    try:
        uri = parse_uri(parse_name_addr(value).uri)
    except (HeaderValueError, SipError):
        raise BadRefer("bad_refer_to", "Bad Refer-To") from None
    if isinstance(uri, TelUri):
        return ReferTarget(uri.number)
    assert isinstance(uri, SipUri)
    if not uri.user:
        raise BadRefer("bad_refer_to", "Refer-To Without A Number")
    replaces: Replaces | None = None
    for header in uri.headers.split("&") if uri.headers else []:
        name, _, text = header.partition("=")
        if name.lower() == "replaces":
            replaces = parse_replaces(unquote(text))
    return ReferTarget(unquote(uri.user), replaces)


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """The body of a NOTIFY reporting ``status`` (RFC 3420, RFC 3515 §2.4.5)."""
    return f"SIP/2.0 {status} {reason or REASONS.get(status, 'Unknown')}\r\n".encode()


def notify_headers(status: int, *, expires: int = 60) -> list[Header]:
    """Headers of a refer NOTIFY: the subscription ends with a final status
    (RFC 3515 §2.4.7)."""
    state = f"active;expires={expires}" if status < 200 else "terminated;reason=noresource"
    return [REFER_EVENT, ("subscription-state", state), SIPFRAG_TYPE]
