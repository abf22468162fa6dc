"""REGISTER processing, RFC 3261 §10.3, as a pure function of the request.

The steps follow §10.3 in order: Require (step 2 here, 420), authentication
(steps 3-4, 401), authorisation of the AOR (step 6: an extension may only
register its own number, 403), then the contacts (steps 7-8): ``*`` removes
every binding (only with ``Expires: 0``), an ``expires`` below the minimum
fails the whole request with 423 and ``Min-Expires`` (§10.3 step 7), one
above the maximum is shortened, a binding with the same Call-ID is only
updated by a higher CSeq. The 200 lists every current binding with the time
it has left (step 8). Nothing changes unless the whole request succeeds.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pbx.registrar.auth import Authenticated, Authenticator, Challenge
from pbx.registrar.bindings import Binding, BindingChange, BindingTable
from pbx.routing.dialplan import Dialplan
from pbx.sip.address import Peer
from pbx.sip.errors import SipError
from pbx.sip.message import Header, HeaderValueError, Request, Response, make_response, parse_name_addr
from pbx.sip.uri import SipUri, parse_uri

# RFC 3327: a REGISTER through an edge proxy (Kamailio) carries Path; a
# phone or proxy may require us to honour it.
SUPPORTED_OPTIONS: frozenset[str] = frozenset({"path"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterOutcome:
    response: Response
    changes: tuple[BindingChange, ...] = ()
    event: str = "register_ok"
    """snake_case tag for the log line."""
    fields: dict[str, object] = field(default_factory=dict)
    challenge: Challenge | None = None


class Registrar:
    def __init__(self, plan: Dialplan, auth: Authenticator, table: BindingTable, *, to_tag: str) -> None:
        self.plan = plan
        self.auth = auth
        self.table = table
        self._to_tag = to_tag
        self._date_second = -1
        self._date_text = ""

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan
        self.auth.use_plan(plan)

    def _date(self, now: float) -> str:
        """The Date header value (§20.17, RFC 1123 form in GMT) for ``now``;
        formatted once per second."""
        second = int(now)
        if second != self._date_second:
            self._date_second = second
            self._date_text = email.utils.formatdate(second, usegmt=True)
        return self._date_text

    def _answer(self, request: Request, status: int, reason: str | None = None, headers: list[Header] | None = None) -> Response:
        return make_response(request, status, reason, to_tag=self._to_tag, headers=headers or ())

    def handle(self, request: Request, source: Peer, now: float, *, client: Peer | None = None) -> RegisterOutcome:
        """``source`` sent it; ``client`` is the phone behind a trusted edge
        proxy, whose address the lock-out counts (``pbx.security.origin``)."""
        try:
            to = parse_name_addr(request.get("to") or "")
            to_uri = parse_uri(to.uri)
        except (HeaderValueError, SipError):
            return RegisterOutcome(response=self._answer(request, 400, "Bad To Header"), event="register_bad_to")
        if not isinstance(to_uri, SipUri) or not to_uri.user:
            return RegisterOutcome(response=self._answer(request, 404, "Not Found"), event="register_no_user")
        aor = to_uri.user

        unsupported = [
            tag for value in request.get_all("require") for tag in [value.strip()] if tag not in SUPPORTED_OPTIONS
        ]
        if unsupported:
            return RegisterOutcome(
                response=self._answer(request, 420, None, [("unsupported", ", ".join(unsupported))]),
                event="register_bad_extension",
            )

        result = self.auth.authenticate(request, (client or source).host, now, user=aor,
                                        qop_optional="REGISTER" in self.plan.security.digest_without_qop,
                                        registered_phone=client is None and self.table.registered_from(aor, source, now))
        if isinstance(result, Challenge):
            headers = [("www-authenticate", value) for value in result.header_values]
            return RegisterOutcome(
                response=self._answer(request, 401, None, headers),
                event="register_challenged",
                fields={"aor": aor, "reason": result.reason},
                challenge=result,
            )
        assert isinstance(result, Authenticated)
        state = result.extension.state_at(datetime.fromtimestamp(now, timezone.utc))
        if state != "active":
            # Suspended, retired, not yet or no longer valid: the phone is
            # told, and what it had registered is already gone.
            return RegisterOutcome(
                response=self._answer(request, 403, "Extension Not Active",
                                      [("warning", f'399 {self.plan.domain} "extension {aor} is {state}"')]),
                event="register_inactive",
                fields={"aor": aor, "state": state},
            )
        if result.extension.number != aor:
            # §10.3 step 6: authenticated, but not allowed to bind this AOR.
            return RegisterOutcome(
                response=self._answer(request, 403, "Forbidden"),
                event="register_forbidden",
                fields={"aor": aor, "user": result.extension.number},
            )
        # RFC 3327: a Path is the edge's to add. Where edges are listed
        # (security.trusted_proxies), one from anyone else is ignored: a
        # phone must not steer requests for it through a host it names.
        trusted = self.plan.security.trusted_proxies
        path = tuple(request.get_all("path")) if not trusted or client is not None else ()
        return self._update(request, source, aor, result.extension.max_contacts, now, path)

    def _update(self, request: Request, source: Peer, aor: str, max_contacts: int, now: float,
                path: tuple[str, ...]) -> RegisterOutcome:
        settings = self.plan.registrar
        contact_values = request.get_all("contact")
        expires_header = request.get("expires")
        default_expires = settings.default_expires
        if expires_header is not None:
            if not expires_header.strip().isdigit():
                return RegisterOutcome(response=self._answer(request, 400, "Bad Expires"), event="register_bad_expires")
            default_expires = int(expires_header.strip())
        call_id = request.call_id
        cseq = request.cseq.number
        changes: list[BindingChange] = []

        if any(value.strip() == "*" for value in contact_values):
            # §10.3 step 6: "*" only alone and only with Expires: 0.
            if len(contact_values) != 1 or expires_header is None or default_expires != 0:
                return RegisterOutcome(response=self._answer(request, 400, "Invalid Wildcard"), event="register_bad_wildcard")
            for binding in self.table.current(aor, now):
                if binding.call_id == call_id and binding.cseq >= cseq:
                    continue
                self.table.remove(aor, binding.contact)
                changes.append(BindingChange(removed=(aor, binding.contact)))
            return self._ok(request, aor, changes, now, "register_removed_all")

        updates: list[tuple[str, int, float | None, str | None, int | None]] = []
        for value in contact_values:
            try:
                contact = parse_name_addr(value)
                parse_uri(contact.uri)
            except (HeaderValueError, SipError):
                return RegisterOutcome(response=self._answer(request, 400, "Bad Contact"), event="register_bad_contact")
            raw_expires = contact.params.get("expires")
            if raw_expires is not None:
                if not raw_expires.isdigit():
                    return RegisterOutcome(response=self._answer(request, 400, "Bad Expires"), event="register_bad_expires")
                expires = int(raw_expires)
            else:
                expires = default_expires
            if 0 < expires < settings.min_expires:
                return RegisterOutcome(
                    response=self._answer(request, 423, None, [("min-expires", str(settings.min_expires))]),
                    event="register_interval_too_brief",
                    fields={"aor": aor, "expires": expires},
                )
            expires = min(expires, settings.max_expires)
            q = _parse_q(contact.params.get("q"))
            instance = contact.params.get("+sip.instance")
            reg_id_text = contact.params.get("reg-id")
            reg_id = int(reg_id_text) if reg_id_text and reg_id_text.isdigit() else None
            updates.append((contact.uri, expires, q, instance, reg_id))

        for uri, _, _, _, _ in updates:
            existing = self.table.get(aor, uri)
            if existing is not None and existing.call_id == call_id and existing.cseq >= cseq:
                # §10.3 step 7: same Call-ID and not a higher CSeq: out of order.
                return RegisterOutcome(
                    response=self._answer(request, 500, "Out Of Order Request", [("retry-after", "1")]),
                    event="register_out_of_order",
                    fields={"aor": aor},
                )

        kept = {b.contact for b in self.table.current(aor, now)}
        for uri, expires, _, _, _ in updates:
            if expires == 0:
                kept.discard(uri)
            else:
                kept.add(uri)
        if len(kept) > max_contacts:
            return RegisterOutcome(
                response=self._answer(request, 403, "Too Many Contacts"),
                event="register_too_many_contacts",
                fields={"aor": aor, "limit": max_contacts},
            )

        user_agent = request.get("user-agent")
        # RFC 3327 §5.3: the Path is stored with each binding of this
        # REGISTER and used as the route set of requests to it.
        for uri, expires, q, instance, reg_id in updates:
            if expires == 0:
                if self.table.remove(aor, uri) is not None:
                    changes.append(BindingChange(removed=(aor, uri)))
                continue
            binding = Binding(
                aor=aor,
                contact=uri,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                source=source,
                q=q,
                user_agent=user_agent,
                instance_id=instance,
                reg_id=reg_id,
                path=path,
            )
            self.table.put(binding)
            changes.append(BindingChange(binding=binding))
        event = "register_query" if not updates else "register_ok"
        return self._ok(request, aor, changes, now, event, path if updates else ())

    def _ok(self, request: Request, aor: str, changes: list[BindingChange], now: float, event: str,
            path: tuple[str, ...] = ()) -> RegisterOutcome:
        """The 200 (§10.3 step 8); ``path``: what was stored, to echo (RFC 3327 §5.3)."""
        headers: list[Header] = []
        for binding in self.table.current(aor, now):
            q = f";q={binding.q:g}" if binding.q is not None else ""
            headers.append(("contact", f"<{binding.contact}>;expires={binding.remaining(now)}{q}"))
        headers.append(("date", self._date(now)))
        contacts = len(headers) - 1
        if "path" in (tag.strip().lower() for tag in request.get_all("supported")):
            # RFC 3327 §5.3: the Path stored is echoed, so the phone knows
            # its route; only to a phone that said it understands Path
            # (as Kamailio's registrar does with path_mode 1).
            headers.extend(("path", value) for value in path)
        return RegisterOutcome(
            response=self._answer(request, 200, "OK", headers),
            changes=tuple(changes),
            event=event,
            fields={"aor": aor, "contacts": contacts},
        )


def _parse_q(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        q = float(text)
    except ValueError:
        return None
    return q if 0.0 <= q <= 1.0 else None
