"""One side of one INVITE dialog (RFC 3261 §13-15, RFC 6026), sans-I/O.

An :class:`InviteSession` is the UAC of an INVITE we send (a B-side leg of
the B2BUA) or the UAS of one we received (the caller's A side). It keeps
the dialog (:class:`pbx.sip.dialog.Dialog`) and everything INVITE needs on
top of the transaction layer, so that nothing above it builds SIP text:

- UAC: provisional responses make an early dialog (§12.1.2); the 2xx makes
  it confirmed and is ACKed by us, at once or, for a delayed offer, when the
  caller says with what body (§13.2.2.4); a retransmitted 2xx gets the very
  same ACK again; a 2xx that comes after a CANCEL is still ACKed, and BYEd
  when told (§15: a 2xx cannot be refused);
- UAC: 401/407 are answered once through the ``credentials`` callback
  (§22.2: same Call-ID and From tag, next CSeq, new branch) and 422 once
  with the Min-SE asked for (RFC 4028 §7.4), in one place;
- UAS: provisional and final responses carry our tag and, when they create
  a dialog, our Contact; the transaction layer retransmits the 2xx until
  the ACK (§13.3.1.4, with RFC 6026's Accepted state) and reports a missing
  ACK, which becomes :class:`AckTimedOut`; a BYE we are told to send waits
  for that ACK (§15);
- in a dialog: requests are sent with the next CSeq and answered with our
  tag; a request with an old CSeq gets 500 (§12.2.2); an INVITE or UPDATE
  that arrives while one of ours is pending gets 491, and one arriving while
  we have not answered the previous one gets 500 with Retry-After (§14.2,
  RFC 3311 §5.2); our own re-INVITE that meets 491 is sent again after the
  random back-off of §14.1 when asked to;
- CANCEL is answered 200 (or 481) here; what it cancels is reported.

Inputs are messages, transaction outcomes and ``now``; output goes to a
:class:`Wire` (in the server, the pure transaction layer) and comes back
from each method as a list of events. Randomness (tags, branches, back-off)
is injected. No asyncio, no clock reads, no logging.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pbx.sip import session_timer
from pbx.sip.address import Peer
from pbx.sip.dialog import Dialog, contact_value, new_tag, via_value
from pbx.sip.events import TransactionKey
from pbx.sip.message import Header, Request, Response, make_request, make_response, remember_parsed
from pbx.sip.tokens import random_hex

LocalAddress = Callable[[str], tuple[str, int]]
"""transport name -> (host, port) the PBX is reached at, for Via and Contact."""

Credentials = Callable[[Response, Request], Header | None]
"""Given a 401/407 and the INVITE it answers: the (Proxy-)Authorization
header to send it again with, or None when it must not be answered."""

Random = Callable[[], float]
"""A uniform random number in [0, 1), for back-off times."""

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REGISTER"
OFFER_METHODS = frozenset({"INVITE", "UPDATE"})
# Headers of the INVITE a resend after 401/407/422 rebuilds itself.
_REBUILT = frozenset({"via", "cseq", "authorization", "proxy-authorization", "content-length"})
# What stays of the dialog-making INVITE once its 2xx is ACKed (see
# ``InviteSession.invite``): its CSeq and Max-Forwards, the session options
# (RFC 4028 timers and the option tags) and the description of its body,
# which legs placed later on the dialog's behalf (a transfer, a forward)
# copy. Via, From, To, Contact and credentials are in the dialog or spent.
KEPT_AFTER_SETUP = frozenset({
    "cseq", "max-forwards", "supported", "require", "session-expires", "min-se",
    "content-type", "content-disposition", "content-encoding", "content-language",
})


class Wire(Protocol):
    """Where a session's messages go: the transaction layer in the server."""

    def send_request(self, session: InviteSession, request: Request, dest: Peer) -> TransactionKey:
        """Start a client transaction; its outcome comes back to ``session``."""
        ...

    def send_response(self, key: TransactionKey, response: Response) -> None: ...

    def send_ack(self, data: bytes, dest: Peer) -> None:
        """An ACK to a 2xx: outside any transaction (§17.1.1.3)."""
        ...

    def cancel(self, key: TransactionKey, headers: tuple[Header, ...]) -> None:
        """CANCEL the INVITE of client transaction ``key`` (§9.1)."""
        ...


class Role(enum.Enum):
    UAC = "uac"
    UAS = "uas"


class SessionState(enum.Enum):
    INITIAL = "initial"        # INVITE sent (UAC) or received (UAS), nothing more
    EARLY = "early"            # a 1xx with a tag went either way (§12.1)
    CONFIRMED = "confirmed"    # a 2xx went either way
    TERMINATED = "terminated"  # failed, cancelled, or BYE sent or received


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Provisional:
    """UAC: a 101-199 to our INVITE (``response.body`` may be early SDP)."""

    response: Response


@dataclass(frozen=True, slots=True)
class Answered:
    """UAC: the first 2xx to our INVITE. The dialog is confirmed; it is ACKed
    already unless the session was made with ``ack_at_once=False``."""

    response: Response


@dataclass(frozen=True, slots=True)
class Failed:
    """UAC: our INVITE ended without a 2xx. ``status`` is what came back, or
    408 for no answer at all and 503 for a transport failure (§8.1.3.1).
    ``reason``: ``rejected``, ``timeout``, ``transport``, ``auth_refused``
    (a challenge we could not or would not answer)."""

    status: int
    reason: str
    response: Response | None = None


@dataclass(frozen=True, slots=True)
class IntervalRaised:
    """UAC: the callee's 422 asked for ``min_se``; the INVITE went again."""

    min_se: int


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """UAS: the caller cancelled the INVITE before our final response; the
    CANCEL is answered, the INVITE waits for its 487 (``reject``)."""


@dataclass(frozen=True, slots=True)
class Confirmed:
    """UAS: the ACK to our 2xx (its body answers a 2xx offer, §13.2.1)."""

    ack: Request


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """UAS: our 2xx was never ACKed (§13.3.1.4): the session should end."""


@dataclass(frozen=True, slots=True)
class RequestIn:
    """A request inside the dialog (early or confirmed), BYE aside, for the
    coordinator to act on; answer it with :meth:`InviteSession.answer`."""

    key: TransactionKey
    request: Request


@dataclass(frozen=True, slots=True)
class ByeIn:
    """The peer ended the dialog. Answer ``key`` with :meth:`answer`."""

    key: TransactionKey
    request: Request


@dataclass(frozen=True, slots=True)
class CancelIn:
    """A CANCEL of the in-dialog INVITE ``key`` we have not answered yet
    (answered 200 here; ``key`` still needs its final response)."""

    key: TransactionKey


@dataclass(frozen=True, slots=True)
class AckIn:
    """The ACK to our 2xx for an in-dialog INVITE."""

    request: Request


@dataclass(frozen=True, slots=True)
class ResponseIn:
    """A response to the request we sent with ``send(..., ref=ref)``; None
    as ``response`` when there was none (timeout or transport failure)."""

    ref: object
    response: Response | None
    status: int


SessionEvent = (
    Provisional | Answered | Failed | IntervalRaised | CancelReceived | Confirmed | AckTimedOut | RequestIn
    | ByeIn | CancelIn | AckIn | ResponseIn
)


@dataclass(slots=True)
class _Outgoing:
    """An in-dialog request of ours awaiting (or past) its final response."""

    ref: object
    request: Request
    retry_glare: bool
    final: int | None = None


@dataclass(slots=True)
class _Incoming:
    request: Request
    answered: bool = False


@dataclass(slots=True)
class _GlareRetry:
    """§14.1: our re-INVITE got 491; send it again at ``due``."""

    due: float
    outgoing: _Outgoing
    headers: list[Header] = field(default_factory=list)


# Shared empty tables, replaced by a session's own on its first write (never
# written to themselves: every write above checks for them first).
_EMPTY_ACKS: dict[int, bytes] = {}
_EMPTY_OUTGOING: dict[TransactionKey, _Outgoing] = {}
_EMPTY_INCOMING: dict[TransactionKey, _Incoming] = {}


class InviteSession:
    """One dialog side. Make it with :meth:`uac` or :meth:`uas`."""

    __slots__ = (
        "role", "dialog", "dest", "state", "invite", "invite_key", "answered", "acked", "cancelled", "bye_received",
        "_wire", "_local", "_tokens", "_random", "_credentials", "_retried_422", "_ack_at_once", "_ack_cseq", "_ack",
        "_acks", "_outgoing", "_incoming", "_bye_held", "_glare", "keys", "sdp_sent",
    )  # fmt: skip

    def __init__(self, *, role: Role, dialog: Dialog, dest: Peer, wire: Wire, local: LocalAddress,
                 tokens: Callable[[int], str], random: Random) -> None:
        self.role = role
        self.dialog = dialog
        self.dest = dest
        """Where our requests go (UAC: the callee's address; UAS: the
        caller's source address, as symmetric signalling needs behind NAT)."""
        self.state = SessionState.INITIAL
        self.invite: Request
        """The dialog-making INVITE (received, or sent last). Once its 2xx
        is ACKed only the headers of ``KEPT_AFTER_SETUP`` remain, with the
        Request-URI and body: ten thousand calls need not keep two whole
        INVITEs each."""
        self.invite_key: TransactionKey
        self.answered = False
        """A 2xx to the dialog-making INVITE went (UAS) or came (UAC)."""
        self.acked = False
        """UAC: we ACKed the 2xx. UAS: the ACK to our 2xx arrived."""
        self.cancelled = False
        self.bye_received = False
        self._wire = wire
        self._local = local
        self._tokens = tokens
        self._random = random
        self._credentials: Credentials | None = None
        self._retried_422 = False
        self._ack_at_once = True
        # Made on first use: most sessions never relay a request, and ten
        # thousand concurrent calls make every empty dict count.
        # Our ACKs to 2xx, by CSeq, for resending: the first one (the
        # dialog-making INVITE's, for a UAC) in two fields, the others
        # (re-INVITEs) in a table made when needed.
        self._ack_cseq = -1
        self._ack = b""
        self._acks: dict[int, bytes] = _EMPTY_ACKS
        self._outgoing: dict[TransactionKey, _Outgoing] = _EMPTY_OUTGOING
        self._incoming: dict[TransactionKey, _Incoming] = _EMPTY_INCOMING
        self._bye_held: list[Header] | None = None    # a BYE waiting for the ACK (§15)
        self._glare: _GlareRetry | None = None
        self.keys: tuple[TransactionKey, ...] = ()
        """Every transaction key this session used: the owner's index entries."""
        self.sdp_sent = b""
        """The last session description we sent in this dialog (offer or
        answer): a new one we make must keep its o= line and raise its
        version (RFC 3264 §8), whoever's media it now describes."""

    # ------------------------------------------------------------ making one

    @classmethod
    def uac(cls, *, dialog: Dialog, dest: Peer, wire: Wire, local: LocalAddress, headers: Sequence[Header],
            body: bytes = b"", max_forwards: int = 70, credentials: Credentials | None = None,
            ack_at_once: bool = True, tokens: Callable[[int], str] = random_hex,
            random: Random | None = None) -> InviteSession:
        """Send an INVITE in a new dialog (``dialog`` has no remote tag yet)."""
        session = cls(role=Role.UAC, dialog=dialog, dest=dest, wire=wire, local=local, tokens=tokens,
                      random=random or _no_random)
        session._credentials = credentials
        session._ack_at_once = ack_at_once
        dialog.secure = dialog.remote_target.lower().startswith("sips:")
        transport = dest.transport
        invite = dialog.request("INVITE", via=session._via(transport), contact=session._contact(transport),
                                headers=[("allow", ALLOW), *headers], body=body, max_forwards=max_forwards)
        session._send_invite(invite)
        return session

    @classmethod
    def uas(cls, *, request: Request, key: TransactionKey, source: Peer, local_tag: str, wire: Wire,
            local: LocalAddress, tokens: Callable[[int], str] = random_hex,
            random: Random | None = None, dest: Peer | None = None) -> InviteSession:
        """The session a received dialog-creating INVITE starts (§12.1.1).
        Our requests in the dialog go to ``dest`` (the remote target, as
        the owner resolved it), or back to ``source``."""
        session = cls(role=Role.UAS, dialog=Dialog.as_uas(request, local_tag), dest=dest or source, wire=wire,
                      local=local, tokens=tokens, random=random or _no_random)
        session.invite, session.invite_key = request, key
        session.keys += (key,)
        return session

    @property
    def dialog_id(self) -> tuple[str, str]:
        """(Call-ID, our tag): how the owner finds this session again."""
        return self.dialog.call_id, self.dialog.local_tag

    @property
    def live(self) -> bool:
        """UAC: the INVITE still waits for its final response."""
        return self.state in (SessionState.INITIAL, SessionState.EARLY) and not self.cancelled

    # ------------------------------------------------------------ building

    def _via(self, transport: str) -> str:
        return via_value(transport, *self._local(transport), f"z9hG4bK{self._tokens(8)}")

    def _contact(self, transport: str) -> str:
        host, port = self._local(transport)
        if transport == "tls" and self.dialog.secure:
            # RFC 5630 §3.1.3: a SIPS dialog's Contact is SIPS; "transport=tls"
            # is deprecated (§3.1.1) and would be wrong here.
            return f"<sips:{host}:{port}>"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{host}:{port}{suffix}>"

    def _send_invite(self, invite: Request) -> None:
        self.invite = invite
        if invite.body:
            self.sdp_sent = invite.body
        self.invite_key = self._wire.send_request(self, invite, self.dest)
        self.keys += (self.invite_key,)

    def _resend_invite(self, extra: Iterable[Header], dropped: frozenset[str] = _REBUILT) -> None:
        """The INVITE again after a 401/407/422: same Call-ID, From tag and
        body, the next CSeq, a new branch (§8.1.3.5, §22.2)."""
        previous = self.invite
        self.dialog.local_cseq += 1
        self.dialog.remote_tag = None  # an early dialog, if any, ended with that final response
        kept = [(name, value) for name, value in previous.headers if name not in dropped]
        self._send_invite(make_request("INVITE", previous.uri, [
            ("via", self._via(self.dest.transport)), ("cseq", f"{self.dialog.local_cseq} INVITE"), *kept, *extra,
        ], previous.body))

    def _send_ack(self, cseq: int, body: bytes = b"", headers: Sequence[Header] = ()) -> None:
        ack = self.dialog.request("ACK", via=self._via(self.dest.transport), contact=None, cseq=cseq,
                                  headers=list(headers), body=body)
        data = ack.encode()
        if body:
            self.sdp_sent = body
        if self._ack_cseq < 0:
            self._ack_cseq, self._ack = cseq, data
        else:
            if self._acks is _EMPTY_ACKS:
                self._acks = {}
            self._acks[cseq] = data
        self._wire.send_ack(data, self.dest)

    def _ack_sent(self, cseq: int) -> bytes | None:
        """The ACK we sent for the 2xx to our INVITE with CSeq ``cseq``, if any."""
        if cseq == self._ack_cseq:
            return self._ack
        return self._acks.get(cseq)

    def _keep_setup_only(self) -> None:
        """The INVITE's 2xx is ACKed: nothing will answer, resend or
        authenticate it again (see ``invite``)."""
        invite = self.invite
        slim = Request(headers=tuple(h for h in invite.headers if h[0] in KEPT_AFTER_SETUP), body=invite.body,
                       method=invite.method, uri=invite.uri)
        remember_parsed(slim, cseq=invite.cseq)
        self.invite = slim

    def _response(self, request: Request, status: int, reason: str | None, headers: Sequence[Header],
                  body: bytes) -> Response:
        extra = list(headers)
        if body and 100 < status < 300 and request.method in OFFER_METHODS:
            self.sdp_sent = body
        if 100 < status < 300 and request.method in OFFER_METHODS and not any(n == "contact" for n, _ in extra):
            extra.insert(0, ("contact", self._contact(self.dest.transport)))  # §12.1.1: a target for the peer
        if 100 < status < 300 and request.method == "INVITE" and request.to.tag is None:
            # §12.1.1: a response that sets up the dialog copies every
            # Record-Route of the request, in order. Without them the caller
            # sends its ACK and BYE straight to our Contact, round the proxy
            # that asked to stay in the dialog (the cluster's edge, which
            # holds a phone's NAT mapping or TCP connection).
            extra[:0] = [("record-route", value) for value in request.get_all("record-route")]
        return make_response(request, status, reason, to_tag=self.dialog.local_tag, headers=extra, body=body)

    # ------------------------------------------------------------ UAC commands

    def ack(self, body: bytes = b"", headers: Sequence[Header] = ()) -> None:
        """ACK the 2xx to our INVITE with ``body`` (the answer to an offer
        the 2xx carried, §13.2.1). Nothing when it was ACKed already."""
        if self.role is Role.UAC and self.answered and not self.acked:
            self.acked = True
            self._send_ack(self.invite.cseq.number, body, headers)
            self._keep_setup_only()

    def cancel(self, headers: Sequence[Header] = ()) -> None:
        """Stop our INVITE (§9.1); the layer holds the CANCEL until a 1xx
        came. Its 487 then comes back as :class:`Failed`. ``headers``: a
        Reason (RFC 3326), e.g. for a fork answered elsewhere."""
        if self.role is Role.UAC and self.live:
            self.cancelled = True
            self._wire.cancel(self.invite_key, tuple(headers))

    # ------------------------------------------------------------ UAS commands

    def respond(self, status: int, reason: str | None = None, headers: Sequence[Header] = (),
                body: bytes = b"") -> None:
        """Answer the INVITE that made this UAS session."""
        if self.role is not Role.UAS or self.state in (SessionState.CONFIRMED, SessionState.TERMINATED):
            return
        extra = list(headers)
        if 200 <= status < 300:
            extra.append(("allow", ALLOW))
        self._wire.send_response(self.invite_key, self._response(self.invite, status, reason, extra, body))
        if status >= 300:
            self.state = SessionState.TERMINATED
        elif status >= 200:
            self.state = SessionState.CONFIRMED
            self.answered = True
        elif status > 100:
            self.state = SessionState.EARLY

    # ------------------------------------------------------------ both sides

    def hangup(self, headers: Sequence[Header] = (), *, wait_for_ack: bool = True) -> None:
        """End the dialog from our side: BYE when confirmed (a UAC ACKs a
        2xx first; a UAS waits for the ACK of its 2xx, §15, unless told it
        will never come), CANCEL while our INVITE is pending. Nothing when
        the peer sent its own BYE or the session has ended."""
        if self.bye_received or self._bye_held is not None:
            return
        if self.role is Role.UAC and not self.answered:
            self.cancel(headers)
            return
        if not self.answered or self.state is SessionState.TERMINATED:
            return
        if self.role is Role.UAC:
            self.ack()  # a delayed-offer 2xx is still ACKed before the BYE (§13.2.2.4)
        elif not self.acked and wait_for_ack:
            self._bye_held = list(headers)
            self.state = SessionState.TERMINATED
            return
        self._bye(headers)

    def _end_pending(self) -> None:
        """§15.1.2: requests still unanswered when the dialog ends get 487."""
        for key, incoming in list(self._incoming.items()):
            if not incoming.answered:
                self.answer(key, incoming.request, 487)

    def _bye(self, headers: Sequence[Header]) -> None:
        self.state = SessionState.TERMINATED
        self._bye_held = None
        self._end_pending()
        bye = self.dialog.request("BYE", via=self._via(self.dest.transport), contact=None, headers=list(headers))
        key = self._wire.send_request(self, bye, self.dest)
        self.keys += (key,)

    def send(self, method: str, *, headers: Sequence[Header] = (), body: bytes = b"", ref: object = None,
             retry_glare: bool = False) -> Request:
        """A request inside the dialog (re-INVITE, UPDATE, INFO ...); its
        final response (or timeout) comes back as ``ResponseIn(ref, ...)``.
        ``retry_glare``: on 491 send it again after the §14.1 back-off
        instead of reporting it (for re-INVITEs the PBX makes itself)."""
        transport = self.dest.transport
        contact = self._contact(transport) if method in ("INVITE", "UPDATE", "NOTIFY") else None
        request = self.dialog.request(method, via=self._via(transport), contact=contact, headers=list(headers),
                                      body=body)
        if body and method in OFFER_METHODS:
            self.sdp_sent = body
        key = self._wire.send_request(self, request, self.dest)
        self.keys += (key,)
        if self._outgoing is _EMPTY_OUTGOING:
            self._outgoing = {}
        self._outgoing[key] = _Outgoing(ref, request, retry_glare)
        return request

    def cancel_sent(self, match: Callable[[object], bool]) -> bool:
        """CANCEL our pending in-dialog INVITE whose ``ref`` matches (§9.1);
        its 487 comes back as :class:`ResponseIn`. False if there is none."""
        for key, outgoing in self._outgoing.items():
            if outgoing.final is None and outgoing.request.method == "INVITE" and match(outgoing.ref):
                self._wire.cancel(key, ())
                return True
        return False

    @property
    def settled(self) -> bool:
        """Nothing left that needs this session's dialog: no INVITE of ours
        waiting for its final response (a 2xx may still come and must be
        ACKed and BYEd) and no BYE held for an ACK."""
        if self._bye_held is not None:
            return False
        return not (self.role is Role.UAC and not self.answered and self.state is not SessionState.TERMINATED)

    def ack_reinvite(self, request: Request, body: bytes = b"", headers: Sequence[Header] = ()) -> None:
        """ACK the 2xx to our in-dialog INVITE ``request`` (once)."""
        cseq = request.cseq.number
        if self._ack_sent(cseq) is None:
            self._send_ack(cseq, body, headers)

    def answer(self, key: TransactionKey, request: Request, status: int, reason: str | None = None,
               headers: Sequence[Header] = (), body: bytes = b"") -> None:
        """Answer an in-dialog request reported by :class:`RequestIn` or
        :class:`ByeIn` (a 2xx to INVITE then waits for :class:`AckIn`)."""
        incoming = self._incoming.get(key)
        if incoming is not None and status >= 200:
            incoming.answered = True
            if not (request.method == "INVITE" and status < 300):
                del self._incoming[key]
        self._wire.send_response(key, self._response(request, status, reason, headers, body))

    def deadline(self) -> float | None:
        return self._glare.due if self._glare is not None else None

    def on_timer(self, now: float) -> list[SessionEvent]:
        glare = self._glare
        if glare is None or now < glare.due:
            return []
        self._glare = None
        if self.state is not SessionState.CONFIRMED:
            return [ResponseIn(glare.outgoing.ref, None, 491)]
        old = glare.outgoing.request
        kept = [(n, v) for n, v in old.headers
                if n not in ("via", "max-forwards", "from", "to", "call-id", "cseq", "route", "contact",
                             "content-length")]
        self.send(old.method, headers=kept, body=old.body, ref=glare.outgoing.ref, retry_glare=False)
        return []

    # ------------------------------------------------------------ input

    def on_response(self, key: TransactionKey, response: Response, now: float) -> list[SessionEvent]:
        outgoing = self._outgoing.get(key)
        if outgoing is not None:
            return self._on_in_dialog_response(key, outgoing, response, now)
        if self.role is Role.UAC and key == self.invite_key:
            return self._on_invite_response(response)
        return []  # to a BYE or CANCEL of ours: nothing to do

    def _on_invite_response(self, response: Response) -> list[SessionEvent]:
        status = response.status
        if status < 200:
            if status == 100 or self.state is not SessionState.INITIAL and self.state is not SessionState.EARLY:
                return []
            if response.to.tag is not None:
                self.dialog.confirm_as_uac(response)  # an early dialog (§12.1.2)
                self.state = SessionState.EARLY
            return [Provisional(response)]
        if status < 300:
            if self.answered:
                if response.to.tag == self.dialog.remote_tag:
                    sent = self._ack_sent(response.cseq.number)
                    if sent is not None:
                        self._wire.send_ack(sent, self.dest)  # our ACK was lost (§13.2.2.4)
                else:
                    self._release_extra_dialog(response)
                return []
            self.dialog.confirm_as_uac(response)
            self.answered = True
            self.state = SessionState.CONFIRMED
            if self._ack_at_once:
                self.ack()
            return [Answered(response)]
        if self.state is SessionState.TERMINATED:
            return []
        if status in (401, 407) and self._credentials is not None and not self.cancelled:
            header = self._credentials(response, self.invite)
            if header is not None:
                self._resend_invite([header])
                return []
            self.state = SessionState.TERMINATED
            return [Failed(status, "auth_refused", response)]
        if status == 422 and not self._retried_422 and not self.cancelled:
            min_se = session_timer.parse_min_se(response.get("min-se"))
            if min_se is not None:
                self._retried_422 = True
                self._resend_invite(session_timer.retry_headers(self.invite, min_se),
                                    _REBUILT | session_timer.SESSION_HEADERS)
                return [IntervalRaised(min_se)]
        self.state = SessionState.TERMINATED
        return [Failed(status, "rejected", response)]

    def _release_extra_dialog(self, response: Response) -> None:
        """A 2xx from a second callee behind a forking proxy: a dialog of its
        own, which must be ACKed and then ended (§13.2.2.4)."""
        other = replace(self.dialog, route_set=())
        other.confirm_as_uac(response)
        transport = self.dest.transport
        ack = other.request("ACK", via=self._via(transport), contact=None, cseq=self.invite.cseq.number)
        self._wire.send_ack(ack.encode(), self.dest)
        bye = other.request("BYE", via=self._via(transport), contact=None)
        key = self._wire.send_request(self, bye, self.dest)
        self.keys += (key,)

    def _on_in_dialog_response(self, key: TransactionKey, outgoing: _Outgoing, response: Response,
                               now: float) -> list[SessionEvent]:
        status = response.status
        if status == 100:
            return []  # hop by hop
        if outgoing.final is not None:
            if outgoing.request.method == "INVITE" and 200 <= status < 300:
                sent = self._ack_sent(outgoing.request.cseq.number)
                if sent is not None:
                    self._wire.send_ack(sent, self.dest)  # the 2xx again: our ACK was lost
            return []
        if status >= 200:
            outgoing.final = status
            if not (outgoing.request.method == "INVITE" and status < 300):
                del self._outgoing[key]
            if status == 491 and outgoing.retry_glare and self.state is SessionState.CONFIRMED:
                self._glare = _GlareRetry(due=now + self._glare_backoff(), outgoing=outgoing)
                return []
        return [ResponseIn(outgoing.ref, response, status)]

    def _glare_backoff(self) -> float:
        """§14.1: the owner of the Call-ID (the UAC of the dialog) waits
        2.1-4 s, the other side 0-2 s, in steps of 10 ms."""
        draw = self._random()
        if self.role is Role.UAC:
            return 2.1 + round(draw * 190) / 100
        return round(draw * 200) / 100

    def on_timeout(self, key: TransactionKey) -> list[SessionEvent]:
        """The transaction ``key`` ended without what it waited for
        (``TimedOut`` or ``TransportFailed``; ``transport`` for the latter)."""
        return self._lost(key, "timeout")

    def on_transport_failed(self, key: TransactionKey) -> list[SessionEvent]:
        return self._lost(key, "transport")

    def _lost(self, key: TransactionKey, why: str) -> list[SessionEvent]:
        outgoing = self._outgoing.pop(key, None)
        if outgoing is not None:
            if outgoing.final is not None:
                return []
            return [ResponseIn(outgoing.ref, None, 408 if why == "timeout" else 503)]
        if key != self.invite_key:
            return []
        if self.role is Role.UAS:
            if self.state is SessionState.CONFIRMED and not self.acked or \
                    self.state is SessionState.TERMINATED and self._bye_held is not None:
                held = self._bye_held
                if held is not None:
                    self._bye(held)  # §15: the ACK will not come; the BYE goes now
                return [AckTimedOut()]
            return []
        if self.state in (SessionState.INITIAL, SessionState.EARLY):
            self.state = SessionState.TERMINATED
            return [Failed(408 if why == "timeout" else 503, why)]
        return []

    def on_request(self, key: TransactionKey, request: Request) -> list[SessionEvent]:
        """A request with our tag in To (CANCEL and ACK aside)."""
        method = request.method
        cseq = request.cseq.number
        remote = self.dialog.remote_cseq
        if remote is not None and cseq <= remote:
            # §12.2.2: out of order (a retransmission would have matched its
            # transaction and never got here).
            self._wire.send_response(key, self._response(request, 500, "Server Internal Error", (), b""))
            return []
        self.dialog.remote_cseq = cseq
        if method == "BYE":
            self.bye_received = True
            self._end_pending()
            if self.answered:
                self.state = SessionState.TERMINATED  # in an early dialog the INVITE still needs its final
            return [ByeIn(key, request)]
        if method in OFFER_METHODS:
            if any(not o.final and o.request.method in OFFER_METHODS for o in self._outgoing.values()) \
                    or self._glare is not None:
                # §14.2 / RFC 3311 §5.2: ours is pending, both ends see glare.
                self._wire.send_response(key, self._response(request, 491, None, (), b""))
                return []
            if any(not i.answered and i.request.method in OFFER_METHODS for i in self._incoming.values()):
                retry = [("retry-after", str(int(self._random() * 10)))]
                self._wire.send_response(key, self._response(request, 500, "Server Internal Error", retry, b""))
                return []
            if self._incoming is _EMPTY_INCOMING:
                self._incoming = {}
            self._incoming[key] = _Incoming(request)
            self.keys += (key,)
        return [RequestIn(key, request)]

    def on_cancel(self, invite_key: TransactionKey, cancel_key: TransactionKey,
                  cancel: Request) -> list[SessionEvent]:
        """A CANCEL whose INVITE is ``invite_key`` (§9.2)."""
        if self.role is Role.UAS and invite_key == self.invite_key:
            self._wire.send_response(cancel_key, make_response(cancel, 200, to_tag=self.dialog.local_tag))
            if self.state in (SessionState.INITIAL, SessionState.EARLY):
                self.cancelled = True
                return [CancelReceived()]
            return []  # answered already: CANCEL has no effect
        incoming = self._incoming.get(invite_key)
        if incoming is not None and not incoming.answered:
            self._wire.send_response(cancel_key, make_response(cancel, 200, to_tag=self.dialog.local_tag))
            return [CancelIn(invite_key)]
        self._wire.send_response(cancel_key, make_response(cancel, 481, to_tag=self.dialog.local_tag))
        return []

    def on_ack(self, request: Request) -> list[SessionEvent]:
        """An ACK to a 2xx of ours (§13.3.1.4)."""
        cseq = request.cseq.number
        if self.role is Role.UAS and cseq == self.invite.cseq.number:
            if self.acked:
                return []
            self.acked = True
            self._keep_setup_only()
            held = self._bye_held
            if held is not None:
                self._bye(held)  # §15: the BYE that waited for this ACK
                return []
            return [Confirmed(request)]
        for key, incoming in list(self._incoming.items()):
            if incoming.request.method == "INVITE" and incoming.answered and incoming.request.cseq.number == cseq:
                del self._incoming[key]
                return [AckIn(request)]
        return []  # a repeated ACK: the first was reported

    def on_stray(self, response: Response) -> list[SessionEvent]:
        """A 2xx to an INVITE of ours whose transaction has ended came again:
        our ACK was lost; send the same ACK (§13.2.2.4)."""
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            sent = self._ack_sent(response.cseq.number)
            if sent is not None:
                self._wire.send_ack(sent, self.dest)
        return []


def refusal(request: Request, status: int, *, reason: str | None = None, to_tag: str | None = None,
            headers: Sequence[Header] = ()) -> Response:
    """The answer to a request refused before any session exists (400, 407,
    422, 481 ...), with a fresh To tag unless given one."""
    return make_response(request, status, reason, to_tag=to_tag or new_tag(), headers=headers)


def _no_random() -> float:
    return 0.5
