"""Dialogs (RFC 3261 §12): identity, route set, CSeq, and in-dialog requests.

A dialog is identified by Call-ID, local tag and remote tag (§12). The UAC
side learns the remote tag, remote target (Contact) and route set (the
Record-Route of the 2xx, reversed, §12.1.2) from the response; the UAS side
from the request (§12.1.1, Record-Route in order). Requests inside a dialog
take the remote target as Request-URI and the route set as Route headers,
and a CSeq one above the last we sent (§12.2.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.sip.message import Header, Request, Response, make_request, parse_name_addr
from pbx.sip.tokens import random_hex


def new_tag() -> str:
    return random_hex(5)


def new_branch() -> str:
    return "z9hG4bK" + random_hex(8)


def via_value(transport: str, host: str, port: int, branch: str) -> str:
    """Our Via for a request over ``transport`` (with rport, RFC 3581)."""
    return f"SIP/2.0/{transport.upper()} {host}:{port};branch={branch};rport"


def contact_value(transport: str, host: str, port: int) -> str:
    """Our Contact over ``transport`` (UDP is the default, §19.1.2)."""
    suffix = "" if transport == "udp" else f";transport={transport}"
    return f"<sip:{host}:{port}{suffix}>"


@dataclass(slots=True, kw_only=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    """Our From (UAC) or To (UAS) header value without the tag."""
    remote_uri: str
    remote_target: str
    """Where in-dialog requests go: the peer's Contact URI (§12.1)."""
    route_set: tuple[str, ...] = ()
    local_cseq: int = 0
    remote_cseq: int | None = None
    secure: bool = False
    """§12.1.1: the dialog-making request had a SIPS Request-URI (and came or
    went over TLS: the session checks the transport). Our Contact in it is
    then a SIPS URI too (§8.1.1.8, RFC 5630 §3.1.3)."""

    @classmethod
    def as_uas(cls, request: Request, local_tag: str) -> Dialog:
        """The dialog a UAS makes by answering ``request`` (§12.1.1)."""
        from_ = parse_name_addr(request.get("from") or "")
        contact = request.get_all("contact")
        target = parse_name_addr(contact[0]).uri if contact else from_.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=from_.tag,
            local_uri=_strip_tag(request.get("to") or ""),
            remote_uri=_strip_tag(request.get("from") or ""),
            remote_target=target,
            route_set=tuple(request.get_all("record-route")),
            local_cseq=0,
            remote_cseq=request.cseq.number,
            secure=request.uri.lower().startswith("sips:"),
        )

    def confirm_as_uac(self, response: Response) -> None:
        """Fill in what a UAC learns from a 1xx/2xx with a To tag (§12.1.2)."""
        self.remote_tag = response.to.tag
        contact = response.get_all("contact")
        if contact:
            self.remote_target = parse_name_addr(contact[0]).uri
        self.route_set = tuple(reversed(response.get_all("record-route")))

    def request(
        self, method: str, *, via: str, contact: str | None, headers: list[Header] | None = None,
        body: bytes = b"", cseq: int | None = None, max_forwards: int = 70,
    ) -> Request:
        """A request inside this dialog (§12.2.1.1). ``cseq`` reuses a number
        (ACK to a 2xx carries the INVITE's, §13.2.2.4); otherwise the next."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        remote = self.remote_uri + (f";tag={self.remote_tag}" if self.remote_tag else "")
        built: list[Header] = [
            ("via", via),
            ("max-forwards", str(max_forwards)),
            ("from", f"{self.local_uri};tag={self.local_tag}"),
            ("to", remote),
            ("call-id", self.call_id),
            ("cseq", f"{cseq} {method}"),
        ]
        built.extend(("route", route) for route in self.route_set)
        if contact is not None:
            built.append(("contact", contact))
        built.extend(headers or [])
        return make_request(method, self.remote_target, built, body)


def _strip_tag(value: str) -> str:
    """A From/To value without its tag parameter."""
    addr = parse_name_addr(value)
    params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in addr.params.items() if k != "tag")
    display = f'"{addr.display}" ' if addr.display else ""
    return f"{display}<{addr.uri}>{params}"
