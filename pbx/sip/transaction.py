"""The four transaction state machines of RFC 3261 §17, and their matching.

Sans-I/O: time is the ``now`` argument, output is the returned list of
``Send`` and events (``pbx.sip.events``). A driver calls ``on_timer(now)``
at ``next_deadline()``.

Rules this module follows, beyond RFC 3261 §17:

- RFC 6026: an INVITE server transaction that sent a 2xx goes to Accepted and
  absorbs INVITE retransmissions until timer L (64*T1), so a retransmitted
  INVITE after the call was answered never creates a second transaction;
  an INVITE client transaction that got a 2xx goes to Accepted and passes
  further 2xx to the TU until timer M (64*T1). Neither ACKs a 2xx: that is
  the dialog's job (§13.2.2.4).
- Optionally (``retransmit_2xx``) the layer does the UAS core's 2xx
  retransmission of §13.3.1.4 (T1 doubling to T2, on every transport) until
  an ACK with the same Call-ID, CSeq number and To tag arrives.
- Responses go where §18.2.2 and RFC 3581 say: the arrival connection on
  reliable transports, else ``received``:``rport`` of the top Via, which
  ``stamp_via`` writes on every incoming request.
- Matching is by dict lookup on ``TransactionKey`` (§17.1.3, §17.2.3); the
  pre-RFC 3261 fallback leaves the To tag out of its identity (a simplification:
  two requests differing only in To tag but equal in Request-URI, From tag,
  Call-ID, CSeq and top Via are taken for one).
- All timers of all transactions share one heap of ``(deadline, seq,
  transaction)``; entries superseded by a reschedule are skipped when popped
  (lazy deletion) and the heap is rebuilt when stale entries dominate.
  Timer J, the commonest by far (every non-INVITE request answered over UDP
  waits 64*T1 in Completed, §17.2.2), is the same duration for every
  transaction, so those deadlines come in time order: they wait in a FIFO
  queue instead, which costs no heap entry and no heap reordering.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import deque
from enum import Enum
from itertools import count
from typing import Final

from pbx.sip.address import Peer
from pbx.sip.errors import SipError
from pbx.sip.events import (
    AckReceived,
    Output,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayResponse,
    TimedOut,
    TransactionKey,
    TransportFailed,
)
from pbx.sip.message import (
    MAGIC_COOKIE,
    Header,
    HeaderValueError,
    Message,
    Request,
    Response,
    Via,
    make_response,
    new_via,
    parse_cseq,
    parse_name_addr,
    parsed_request,
    split_list,
    top_via_text,
)
from pbx.sip.timers import T1, T2, T4, TimerValues

DEFAULT_PORT: Final = 5060  # §18.2.2 / §19.1.2 for sip: over UDP and TCP
_QUEUED: Final = -2  # ``seq`` of a transaction waiting in the timer J queue


class IctState(Enum):
    """INVITE client transaction, §17.1.1.2 Figure 5 as amended by RFC 6026."""

    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class NictState(Enum):
    """Non-INVITE client transaction, §17.1.2.2 Figure 6."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class IstState(Enum):
    """INVITE server transaction, §17.2.1 Figure 7 as amended by RFC 6026."""

    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class NistState(Enum):
    """Non-INVITE server transaction, §17.2.2 Figure 8."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


TransactionState = IctState | NictState | IstState | NistState


# ---------------------------------------------------------------- matching


def _top_via_text(message: Message) -> str:
    """The first Via element as written, without parsing the rest."""
    try:
        return top_via_text(message.headers)
    except IndexError:
        raise SipError("missing_via", "Missing Via Header") from None


def _parse_top_via(message: Message) -> Via:
    """The parsed top Via; the parser has usually parsed it already."""
    try:
        return message.top_via
    except HeaderValueError:
        raise SipError("bad_header_value", "Malformed Via") from None
    except IndexError:
        raise SipError("missing_via", "Missing Via Header") from None


def _server_key(request: Request, via: Via) -> TransactionKey:
    method = request.method
    if method == "ACK":
        method = "INVITE"  # §17.2.3: an ACK matches the INVITE it acknowledges
    branch = via.params.get("branch")
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        host = via.host.lower()
        sent_by = host if via.port is None else f"{host}:{via.port}"
        return TransactionKey(True, branch, sent_by, method)
    # §17.2.3, RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq number and
    # the top Via identify the transaction (To tag left out, see module doc).
    try:
        from_tag = parse_name_addr(request.get("from") or "").tag or ""
        number = request.cseq.number
    except HeaderValueError:
        raise SipError("bad_header_value", "Malformed From Or CSeq") from None
    identity = "\n".join((request.uri, from_tag, request.call_id, str(number), _top_via_text(request)))
    return TransactionKey(True, identity, "", method)


def server_key(request: Request) -> TransactionKey:
    """The server transaction ``request`` belongs to (§17.2.3)."""
    return _server_key(request, _parse_top_via(request))


def client_key(message: Message) -> TransactionKey:
    """The client transaction a request starts or a response matches (§17.1.3):
    branch of the top Via and CSeq method."""
    via = _parse_top_via(message)
    try:
        method = message.cseq.method
    except HeaderValueError:
        raise SipError("bad_header_value", "Malformed CSeq") from None
    return TransactionKey(False, via.params.get("branch") or "", "", method)


def _same_address(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False  # a domain name never equals the packet's source address


def _stamp(request: Request, via: Via, source: Peer) -> tuple[Request, Via]:
    params = via.params
    fill_rport = "rport" in params and params["rport"] is None
    if not fill_rport:
        received = params.get("received")
        if received is None and _same_address(via.host, source.host):
            return request, via
        if received == source.host:
            return request, via
    new_params = dict(params)
    if fill_rport:
        new_params["rport"] = str(source.port)  # RFC 3581 §4
    new_params["received"] = source.host  # §18.2.1; RFC 3581 §4 makes it unconditional
    stamped = new_via(via.transport, via.host, via.port, new_params)
    headers = request.headers
    first = None
    for index, (name, value) in enumerate(headers):
        if name == "via":
            rest = split_list(value)[1:] if "," in value else []
            value = ", ".join([str(stamped), *rest])
            headers = (*headers[:index], ("via", value), *headers[index + 1:])
            if request._first is not None:
                # The first value of each header is the request's, the Via's aside.
                first = dict(request._first)
                first["via"] = value
            break
    stamped_request = parsed_request(headers, request.body, request.method, request.uri, stamped, request._cseq, first)
    return stamped_request, stamped


def stamp_via(request: Request, source: Peer) -> Request:
    """Write where ``request`` came from into its top Via.

    §18.2.1: add ``received`` when the sent-by host is not the source address;
    RFC 3581 §4: when the Via has an empty ``rport``, fill it with the source
    port and add ``received`` even if it equals sent-by. Unchanged requests
    are returned as they are.
    """
    return _stamp(request, _parse_top_via(request), source)[0]


def response_destination(via: Via, source: Peer) -> Peer:
    """Where a response to a request with top Via ``via`` from ``source`` goes.

    §18.2.2: on a reliable transport, back on the connection the request came
    in on. Otherwise to ``maddr`` if present; else to ``received`` at the
    ``rport`` port (RFC 3581 §4) or the sent-by port or 5060; else to sent-by.
    """
    if source.reliable:
        return source
    params = via.params
    maddr = params.get("maddr")
    if maddr:
        return Peer(source.transport, maddr, via.port or DEFAULT_PORT)
    received = params.get("received")
    if received:
        rport = params.get("rport")
        if rport and rport.isdigit() and 0 < int(rport) < 65536:
            port = int(rport)
            if received == source.host and port == source.port and source.connection is None:
                return source  # the usual case; one object fewer per transaction kept
            return Peer(source.transport, received, port)
        return Peer(source.transport, received, via.port or DEFAULT_PORT)
    return Peer(source.transport, via.host, via.port or DEFAULT_PORT)


def _derived_request(original: Request, method: str, to: str | None) -> Request:
    """CANCEL (§9.1) or non-2xx ACK (§17.1.1.3) built from ``original``: its
    Request-URI, Call-ID, From, Route set, top Via only; CSeq number with
    ``method``; To as in the original unless ``to`` replaces it."""
    number = original.cseq.number
    headers: list[Header] = []
    via_done = False
    has_max_forwards = False
    for name, value in original.headers:
        if name == "via":
            if not via_done:
                headers.append(("via", _top_via_text(original)))
                via_done = True
        elif name == "to":
            headers.append(("to", value if to is None else to))
        elif name == "cseq":
            headers.append(("cseq", f"{number} {method}"))
        elif name == "max-forwards":
            headers.append((name, value))
            has_max_forwards = True
        elif name in ("from", "call-id", "route"):
            headers.append((name, value))
    if not has_max_forwards:
        headers.append(("max-forwards", "70"))  # §8.1.1.6
    return Request(headers=tuple(headers), body=b"", method=method, uri=original.uri)


def build_cancel(invite: Request, headers: tuple[Header, ...] = ()) -> Request:
    """The CANCEL for ``invite`` (§9.1), with ``headers`` added (a Reason,
    RFC 3326, saying why)."""
    cancel = _derived_request(invite, "CANCEL", None)
    if not headers:
        return cancel
    return Request(headers=cancel.headers + headers, body=b"", method="CANCEL", uri=cancel.uri)


def build_non_2xx_ack(invite: Request, response: Response) -> Request:
    """The ACK an INVITE client transaction sends for a 3xx-6xx (§17.1.1.3)."""
    return _derived_request(invite, "ACK", response.get("to"))


# ---------------------------------------------------------------- machines


class _Config:
    """Timer durations shared by every transaction of one layer."""

    __slots__ = ("t1", "t2", "t4", "timer_d", "timer_i", "timer_j", "timer_k", "long", "retransmit_2xx")

    def __init__(self, timers: TimerValues, retransmit_2xx: bool) -> None:
        self.t1 = timers.t1
        self.t2 = timers.t2
        self.t4 = timers.t4
        self.timer_d = timers.d(False)
        self.timer_i = timers.i(False)
        self.timer_j = timers.j(False)
        self.timer_k = timers.k(False)
        self.long = 64 * timers.t1  # B, F, H, L, M
        self.retransmit_2xx = retransmit_2xx


class _Transaction:
    """Fields the layer's timer heap needs: ``due`` is the deadline of the
    heap entry numbered ``seq`` that is still valid (None: none is)."""

    __slots__ = ("key", "config", "ended", "due", "seq")

    def __init__(self, key: TransactionKey, config: _Config) -> None:
        self.key = key
        self.config = config
        self.ended = False
        self.due: float | None = None
        self.seq = -1

    def deadline(self) -> float | None:
        raise NotImplementedError

    def on_timer(self, now: float, out: list[Output]) -> None:
        raise NotImplementedError


def _earliest(*timers: float | None) -> float | None:
    best: float | None = None
    for timer in timers:
        if timer is not None and (best is None or timer < best):
            best = timer
    return best


class InviteClientTransaction(_Transaction):
    """§17.1.1 with RFC 6026's Accepted state."""

    __slots__ = (
        "state", "request", "data", "dest", "interval", "timer_a", "timer_b", "timer_d", "timer_m",
        "ack", "cancel_wanted", "cancel_headers",
    )  # fmt: skip

    def __init__(self, key: TransactionKey, request: Request, dest: Peer, now: float, config: _Config) -> None:
        super().__init__(key, config)
        self.state = IctState.CALLING
        # Both only serve Calling and Proceeding (timer A, the CANCEL, the ACK
        # for a 3xx-6xx): dropped at the final response, so the thousands of
        # transactions waiting out timers D and M hold bytes, not messages.
        self.request: Request | None = request
        self.data = request.encode()
        self.dest = dest
        self.interval = config.t1
        # §17.1.1.2: timer A only on unreliable transports; B always.
        self.timer_a: float | None = None if dest.reliable else now + config.t1
        self.timer_b: float | None = now + config.long
        self.timer_d: float | None = None
        self.timer_m: float | None = None
        self.ack: bytes | None = None
        self.cancel_wanted = False  # §9.1: CANCEL asked for before any 1xx
        self.cancel_headers: tuple[Header, ...] = ()

    def on_response(self, response: Response, now: float, out: list[Output]) -> None:
        status = response.status
        state = self.state
        if state is IctState.CALLING or state is IctState.PROCEEDING:
            self.timer_a = self.timer_b = None  # no retransmits once anything came back
            if status < 200:
                self.state = IctState.PROCEEDING
            elif status < 300:
                # RFC 6026 §8.4: Accepted, timer M; the TU ACKs the 2xx.
                self.state = IctState.ACCEPTED
                self.cancel_wanted = False
                self.timer_m = now + self.config.long
                self.request, self.data = None, b""
            elif self.request is not None:
                # §17.1.1.3: ACK it ourselves, wait timer D for retransmits.
                self.state = IctState.COMPLETED
                self.cancel_wanted = False
                self.ack = build_non_2xx_ack(self.request, response).encode()
                self.request, self.data = None, b""
                out.append(Send(data=self.ack, dest=self.dest))
                if self.dest.reliable:
                    self.state = IctState.TERMINATED
                    self.ended = True
                else:
                    self.timer_d = now + self.config.timer_d
            out.append(ResponseReceived(response=response, key=self.key))
        elif state is IctState.COMPLETED:
            if status >= 300 and self.ack is not None:
                out.append(Send(data=self.ack, dest=self.dest))  # the final was retransmitted
        elif state is IctState.ACCEPTED and 200 <= status < 300:
            out.append(ResponseReceived(response=response, key=self.key))

    def on_timer(self, now: float, out: list[Output]) -> None:
        if self.timer_b is not None and now >= self.timer_b:
            self.state = IctState.TERMINATED
            self.ended = True
            out.append(TimedOut(key=self.key))
        elif self.timer_a is not None and now >= self.timer_a:
            # §17.1.1.2: A doubles each time, without a cap.
            out.append(Send(data=self.data, dest=self.dest))
            self.interval *= 2
            self.timer_a = now + self.interval
        elif (self.timer_d is not None and now >= self.timer_d) or (
            self.timer_m is not None and now >= self.timer_m
        ):
            self.state = IctState.TERMINATED
            self.ended = True

    def deadline(self) -> float | None:
        return _earliest(self.timer_a, self.timer_b, self.timer_d, self.timer_m)


class NonInviteClientTransaction(_Transaction):
    """§17.1.2."""

    __slots__ = ("state", "data", "dest", "interval", "timer_e", "timer_f", "timer_k")

    def __init__(self, key: TransactionKey, request: Request, dest: Peer, now: float, config: _Config) -> None:
        super().__init__(key, config)
        self.state = NictState.TRYING
        self.data = request.encode()
        self.dest = dest
        self.interval = config.t1
        self.timer_e: float | None = None if dest.reliable else now + config.t1
        self.timer_f: float | None = now + config.long
        self.timer_k: float | None = None

    def on_response(self, response: Response, now: float, out: list[Output]) -> None:
        state = self.state
        if state is not NictState.TRYING and state is not NictState.PROCEEDING:
            return  # §17.1.2.2: retransmitted finals are absorbed in Completed
        if response.status < 200:
            self.state = NictState.PROCEEDING
        else:
            self.timer_e = self.timer_f = None
            self.data = b""  # no retransmissions once answered (§17.1.2.2)
            if self.dest.reliable:
                self.state = NictState.TERMINATED  # timer K is 0
                self.ended = True
            else:
                self.state = NictState.COMPLETED
                self.timer_k = now + self.config.timer_k
        out.append(ResponseReceived(response=response, key=self.key))

    def on_timer(self, now: float, out: list[Output]) -> None:
        if self.timer_f is not None and now >= self.timer_f:
            self.state = NictState.TERMINATED
            self.ended = True
            out.append(TimedOut(key=self.key))
        elif self.timer_e is not None and now >= self.timer_e:
            out.append(Send(data=self.data, dest=self.dest))
            # §17.1.2.2: E doubles up to T2 in Trying; in Proceeding it is T2.
            if self.state is NictState.PROCEEDING:
                self.interval = self.config.t2
            else:
                self.interval = min(self.interval * 2, self.config.t2)
            self.timer_e = now + self.interval
        elif self.timer_k is not None and now >= self.timer_k:
            self.state = NictState.TERMINATED
            self.ended = True

    def deadline(self) -> float | None:
        return _earliest(self.timer_e, self.timer_f, self.timer_k)


class InviteServerTransaction(_Transaction):
    """§17.2.1 with RFC 6026's Accepted state and, optionally, the UAS core's
    2xx retransmission of §13.3.1.4 (which reuses the ``timer_g`` slot: same
    schedule, T1 doubling to T2)."""

    __slots__ = (
        "state", "dest", "last", "interval", "timer_g", "timer_h", "timer_i", "timer_l", "ack_id",
        "awaiting_ack",
    )  # fmt: skip

    def __init__(self, key: TransactionKey, dest: Peer, config: _Config) -> None:
        super().__init__(key, config)
        self.state = IstState.PROCEEDING
        self.dest = dest
        self.last: bytes | None = None
        self.interval = config.t1
        self.timer_g: float | None = None
        self.timer_h: float | None = None
        self.timer_i: float | None = None
        self.timer_l: float | None = None
        self.ack_id: tuple[str, int, str] | None = None  # Call-ID, CSeq number, To tag of our 2xx
        self.awaiting_ack = False  # retransmitting a 2xx until its ACK

    def on_request(self, is_ack: bool, now: float, out: list[Output]) -> bool:
        """A retransmitted INVITE or an ACK matched this transaction. Returns
        True for an ACK that acknowledges our 2xx (the TU must see it)."""
        state = self.state
        if is_ack:
            if state is IstState.COMPLETED:
                self.timer_g = self.timer_h = None
                if self.dest.reliable:
                    self.state = IstState.TERMINATED  # timer I is 0
                    self.ended = True
                else:
                    self.state = IstState.CONFIRMED
                    self.timer_i = now + self.config.timer_i
                return False
            return state is IstState.ACCEPTED  # a 2xx ACK reusing the branch
        if (state is IstState.PROCEEDING or state is IstState.COMPLETED) and self.last is not None:
            out.append(Send(data=self.last, dest=self.dest))  # §17.2.1
        return False  # Confirmed, Accepted (RFC 6026 §7.1): absorbed

    def on_ack_for_2xx(self) -> None:
        self.awaiting_ack = False
        self.timer_g = None
        # In Accepted the 2xx is only ever sent again by timer G: once ACKed,
        # its bytes need not wait out timer L (32 s) with the transaction.
        self.last = None

    def on_response(self, status: int, data: bytes, now: float, out: list[Send]) -> None:
        state = self.state
        if state is IstState.PROCEEDING:
            out.append(Send(data=data, dest=self.dest))
            self.last = data
            if status < 200:
                return
            config = self.config
            if status < 300:
                # RFC 6026 §7.1: Accepted, timer L.
                self.state = IstState.ACCEPTED
                self.timer_l = now + config.long
                if config.retransmit_2xx:  # §13.3.1.4, even on reliable transports
                    self.awaiting_ack = True
                    self.timer_g = now + config.t1
                else:
                    self.last = None  # never sent again (see on_ack_for_2xx)
            else:
                self.state = IstState.COMPLETED
                if not self.dest.reliable:
                    self.timer_g = now + config.t1
                self.timer_h = now + config.long
        elif state is IstState.ACCEPTED and 200 <= status < 300:
            out.append(Send(data=data, dest=self.dest))  # RFC 6026 §8.7: more 2xx pass
            if self.awaiting_ack:
                self.last = data
        # §17.2.1: anything else from the TU after a final is discarded.

    def on_timer(self, now: float, out: list[Output]) -> None:
        state = self.state
        if state is IstState.COMPLETED and self.timer_h is not None and now >= self.timer_h:
            self.state = IstState.TERMINATED
            self.ended = True
            out.append(TimedOut(key=self.key))  # §17.2.1: the ACK never came
        elif state is IstState.ACCEPTED and self.timer_l is not None and now >= self.timer_l:
            self.state = IstState.TERMINATED
            self.ended = True
            if self.awaiting_ack:
                out.append(TimedOut(key=self.key))  # §13.3.1.4: end the session
        elif self.timer_g is not None and now >= self.timer_g and self.last is not None:
            out.append(Send(data=self.last, dest=self.dest))
            self.interval = min(self.interval * 2, self.config.t2)
            self.timer_g = now + self.interval
        elif state is IstState.CONFIRMED and self.timer_i is not None and now >= self.timer_i:
            self.state = IstState.TERMINATED
            self.ended = True

    def deadline(self) -> float | None:
        return _earliest(self.timer_g, self.timer_h, self.timer_i, self.timer_l)


class NonInviteServerTransaction(_Transaction):
    """§17.2.2. Kept small: hundreds of thousands sit in Completed (timer J)."""

    __slots__ = ("state", "dest", "last", "timer_j")

    def __init__(self, key: TransactionKey, dest: Peer, config: _Config) -> None:
        super().__init__(key, config)
        self.state = NistState.TRYING
        self.dest = dest
        self.last: bytes | None = None
        self.timer_j: float | None = None

    def on_request(self, out: list[Output]) -> None:
        # §17.2.2: retransmissions are discarded in Trying, answered with the
        # last response in Proceeding and Completed.
        if self.last is not None:
            out.append(Send(data=self.last, dest=self.dest))

    def on_response(self, status: int, data: bytes, now: float, out: list[Send]) -> None:
        if self.state is NistState.COMPLETED:
            return  # §17.2.2: further finals from the TU are discarded
        out.append(Send(data=data, dest=self.dest))
        self.last = data
        if status < 200:
            self.state = NistState.PROCEEDING
        elif self.dest.reliable:
            self.state = NistState.TERMINATED  # timer J is 0
            self.ended = True
        else:
            self.state = NistState.COMPLETED
            self.timer_j = now + self.config.timer_j

    def on_timer(self, now: float, out: list[Output]) -> None:
        if self.timer_j is not None and now >= self.timer_j:
            self.state = NistState.TERMINATED
            self.ended = True

    def deadline(self) -> float | None:
        return self.timer_j


_ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
_ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
_AnyTransaction = _ClientTransaction | _ServerTransaction


# ---------------------------------------------------------------- the layer


class TransactionLayer:
    """Every live transaction of one SIP endpoint, and their timers.

    ``auto_trying``: send 100 Trying as soon as an INVITE arrives (§17.2.1
    asks for it within 200 ms when the TU will not answer sooner).
    ``retransmit_2xx``: retransmit a 2xx to INVITE until its ACK (§13.3.1.4),
    reporting ``TimedOut`` at timer L if none came.
    ``len(layer)`` counts live transactions (for metrics); mind that an idle
    layer is therefore falsy.
    """

    def __init__(
        self,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
        *,
        auto_trying: bool = True,
        retransmit_2xx: bool = True,
    ) -> None:
        self.timers = TimerValues(t1, t2, t4)
        self._config = _Config(self.timers, retransmit_2xx)
        self._auto_trying = auto_trying
        self._transactions: dict[TransactionKey, _AnyTransaction] = {}
        self._heap: list[tuple[float, int, _AnyTransaction]] = []
        self._seq = count()
        # Non-INVITE server transactions waiting out timer J, oldest first.
        self._timer_j_queue: deque[NonInviteServerTransaction] = deque()
        # 2xx awaiting ACK, by (Call-ID, CSeq number, To tag) (§13.3.1.4, §17.2.3)
        self._awaiting_ack: dict[tuple[str, int, str], InviteServerTransaction] = {}

    def __len__(self) -> int:
        return len(self._transactions)

    def __contains__(self, key: object) -> bool:
        return key in self._transactions

    def state(self, key: TransactionKey) -> TransactionState | None:
        """The state of a live transaction, None once it has ended."""
        transaction = self._transactions.get(key)
        return None if transaction is None else transaction.state

    # ------------------------------------------------------------ server side

    def receive_request(self, request: Request, source: Peer, now: float) -> list[Output]:
        """A parsed request from ``source``: match it (§17.2.3) or create a
        server transaction and report ``RequestReceived``."""
        via = _parse_top_via(request)
        key = _server_key(request, via)
        method = request.method
        transaction = self._transactions.get(key)
        if transaction is not None:
            out: list[Output] = []
            if type(transaction) is NonInviteServerTransaction:
                transaction.on_request(out)
            elif type(transaction) is InviteServerTransaction:
                if transaction.on_request(method == "ACK", now, out):
                    self._ack_arrived(transaction)
                    out.append(AckReceived(request=_stamp(request, via, source)[0], source=source))
                self._reschedule(transaction)
            return out
        if method == "ACK":
            return self._unmatched_ack(request, via, source)
        request, via = _stamp(request, via, source)
        dest = response_destination(via, source)
        if method == "INVITE":
            invite = InviteServerTransaction(key, dest, self._config)
            self._transactions[key] = invite
            received: list[Output] = [RequestReceived(request=request, source=source, key=key)]
            if self._auto_trying:
                invite.last = make_response(request, 100).encode()
                received.append(Send(data=invite.last, dest=dest))
            return received
        self._transactions[key] = NonInviteServerTransaction(key, dest, self._config)
        return [RequestReceived(request=request, source=source, key=key)]

    def _unmatched_ack(self, request: Request, via: Via, source: Peer) -> list[Output]:
        if self._awaiting_ack:
            try:
                ack_id = (request.call_id, request.cseq.number, request.to.tag or "")
            except HeaderValueError:
                ack_id = None
            invite = self._awaiting_ack.get(ack_id) if ack_id is not None else None
            if invite is not None:
                self._ack_arrived(invite)
                self._reschedule(invite)
        return [AckReceived(request=_stamp(request, via, source)[0], source=source)]

    def _ack_arrived(self, invite: InviteServerTransaction) -> None:
        invite.on_ack_for_2xx()
        if invite.ack_id is not None:
            self._awaiting_ack.pop(invite.ack_id, None)
            invite.ack_id = None

    def invite_key_for_cancel(self, cancel: Request, source: Peer) -> TransactionKey | None:
        """The live INVITE server transaction a CANCEL cancels (§9.2), if any."""
        key = _server_key(cancel, _parse_top_via(cancel))
        invite_key = key._replace(method="INVITE")
        if type(self._transactions.get(invite_key)) is InviteServerTransaction:
            return invite_key
        return None

    def send_response(self, key: TransactionKey, response: Response, now: float) -> list[Send]:
        """Send the TU's ``response`` in server transaction ``key``.

        Returns nothing when the transaction has ended (the TU was told by
        ``TimedOut``/``TransportFailed``) or when the state discards it (a
        second final, §17.2.1 and §17.2.2).
        """
        status = response.status
        if not 100 <= status <= 699:
            raise ValueError(f"response status {status} is outside 100-699")
        transaction = self._transactions.get(key)
        out: list[Send] = []
        if type(transaction) is NonInviteServerTransaction:
            transaction.on_response(status, response.encode(), now, out)
        elif type(transaction) is InviteServerTransaction:
            transaction.on_response(status, response.encode(), now, out)
            if transaction.awaiting_ack and transaction.ack_id is None:
                try:
                    ack_id = (response.call_id, response.cseq.number, response.to.tag or "")
                except HeaderValueError:
                    raise ValueError("2xx without a parsable CSeq or To") from None
                transaction.ack_id = ack_id
                self._awaiting_ack[ack_id] = transaction
        elif transaction is not None:
            raise ValueError(f"{key} is a client transaction")
        else:
            return out
        self._reschedule(transaction)
        return out

    def answer_statelessly(self, key: TransactionKey, response: Response) -> list[Send]:
        """Send ``response`` once and forget server transaction ``key``, as a
        stateless server would (§16.11 aside, what Kamailio does for its
        digest challenges): no retransmission, so a forged source address
        gets one response, not the dozen timer G would send over 32 s. A
        retransmitted request is answered afresh; its ACK, matching nothing,
        is absorbed. For a final response to a request nobody has acted on."""
        if not 300 <= response.status <= 699:
            raise ValueError("only a final non-2xx response may be sent statelessly")
        transaction = self._transactions.pop(key, None)
        if transaction is None:
            return []
        if not isinstance(transaction, (InviteServerTransaction, NonInviteServerTransaction)):
            raise ValueError(f"{key} is a client transaction")
        transaction.ended = True
        return [Send(data=response.encode(), dest=transaction.dest)]

    def discard(self, key: TransactionKey) -> None:
        """Forget server transaction ``key`` without answering: for a request
        the TU drops on purpose (a flood, a blocked guesser). Its
        retransmissions start a new transaction, to be dropped again."""
        transaction = self._transactions.get(key)
        if isinstance(transaction, (InviteServerTransaction, NonInviteServerTransaction)):
            del self._transactions[key]
            transaction.ended = True

    # ------------------------------------------------------------ client side

    def send_request(self, request: Request, dest: Peer, now: float) -> tuple[TransactionKey, list[Send]]:
        """Start a client transaction sending ``request`` to ``dest``.

        The top Via must carry a branch with the magic cookie, unique per
        transaction (§8.1.1.7). ACK is not sent in a transaction: the dialog
        sends the ACK to a 2xx itself (§13.2.2.4).
        """
        method = request.method
        if method == "ACK":
            raise ValueError("ACK is not sent in a client transaction (§17.1.1.3, §13.2.2.4)")
        via = _parse_top_via(request)
        branch = via.params.get("branch")
        if branch is None or not branch.startswith(MAGIC_COOKIE) or len(branch) <= len(MAGIC_COOKIE):
            raise ValueError(f"top Via needs a unique branch starting with {MAGIC_COOKIE} (§8.1.1.7)")
        key = TransactionKey(False, branch, "", method)
        if key in self._transactions:
            raise ValueError(f"a client transaction {key} is already running")
        transaction: _ClientTransaction
        if method == "INVITE":
            transaction = InviteClientTransaction(key, request, dest, now, self._config)
        else:
            transaction = NonInviteClientTransaction(key, request, dest, now, self._config)
        self._transactions[key] = transaction
        self._reschedule(transaction)
        return key, [Send(data=transaction.data, dest=dest)]

    def receive_response(self, response: Response, source: Peer, now: float) -> list[Output]:
        """A parsed response: pass it to its client transaction (§17.1.3)."""
        key = client_key(response)
        transaction = self._transactions.get(key)
        if transaction is None:
            return [StrayResponse(response=response, source=source)]
        out: list[Output] = []
        if type(transaction) is InviteClientTransaction:
            transaction.on_response(response, now, out)
            if transaction.cancel_wanted and transaction.state is IctState.PROCEEDING:
                transaction.cancel_wanted = False  # §9.1: the first 1xx lets it go
                out.extend(self._start_cancel(transaction, now))
        elif type(transaction) is NonInviteClientTransaction:
            transaction.on_response(response, now, out)
        self._reschedule(transaction)
        return out

    def cancel_request(self, invite_key: TransactionKey, now: float,
                       headers: tuple[Header, ...] = ()) -> tuple[TransactionKey, list[Send]] | None:
        """Cancel the INVITE of client transaction ``invite_key`` (§9.1).

        Returns the CANCEL's own client transaction key and what to send. The
        CANCEL goes out only once a provisional response has arrived; before
        that it is remembered and sent with the first 1xx. None when there is
        nothing to cancel: unknown key, or a final response already arrived.
        """
        invite = self._transactions.get(invite_key)
        if type(invite) is not InviteClientTransaction:
            return None
        if invite.state is not IctState.CALLING and invite.state is not IctState.PROCEEDING:
            return None
        cancel_key = TransactionKey(False, invite_key.branch, "", "CANCEL")
        if cancel_key in self._transactions or invite.cancel_wanted:
            return cancel_key, []
        invite.cancel_headers = headers
        if invite.state is IctState.CALLING:
            invite.cancel_wanted = True
            return cancel_key, []
        return cancel_key, self._start_cancel(invite, now)

    def _start_cancel(self, invite: InviteClientTransaction, now: float) -> list[Send]:
        if invite.request is None:  # a final response came: nothing to cancel
            return []
        cancel = build_cancel(invite.request, invite.cancel_headers)
        cancel_key = TransactionKey(False, invite.key.branch, "", "CANCEL")
        transaction = NonInviteClientTransaction(cancel_key, cancel, invite.dest, now, self._config)
        self._transactions[cancel_key] = transaction
        self._reschedule(transaction)
        return [Send(data=transaction.data, dest=invite.dest)]

    # ------------------------------------------------------------ both sides

    def transport_failed(self, key: TransactionKey, now: float) -> list[Output]:
        """The transport could not deliver for ``key`` (§17.1.4, §17.2.4): the
        transaction ends and the TU is told."""
        transaction = self._transactions.get(key)
        if transaction is None:
            return []
        transaction.ended = True
        self._reschedule(transaction)
        return [TransportFailed(key=key)]

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next be called, None if no timer runs."""
        heap = self._heap
        while heap:
            _, seq, transaction = heap[0]
            if transaction.seq == seq and not transaction.ended:
                break
            heapq.heappop(heap)
        queue = self._timer_j_queue
        while queue:
            due = queue[0].due
            if due is not None and queue[0].seq == _QUEUED and not queue[0].ended:
                return heap[0][0] if heap and heap[0][0] < due else due
            queue.popleft()
        return heap[0][0] if heap else None

    def on_timer(self, now: float) -> list[Output]:
        """Fire every timer due at ``now``, in deadline order."""
        out: list[Output] = []
        heap = self._heap
        queue = self._timer_j_queue
        while True:
            transaction: _AnyTransaction
            queued_due: float | None = None
            if queue:
                head = queue[0]
                queued_due = head.due
                if queued_due is None or head.seq != _QUEUED or head.ended:
                    queue.popleft()  # rescheduled or ended meanwhile
                    continue
            if queued_due is not None and queued_due <= now and not (heap and heap[0][0] < queued_due):
                transaction = queue.popleft()
            elif heap and heap[0][0] <= now:
                _, seq, transaction = heapq.heappop(heap)
                if transaction.seq != seq or transaction.ended:
                    continue  # superseded entry
            else:
                break
            transaction.due = None
            transaction.seq = -1
            transaction.on_timer(now, out)
            self._reschedule(transaction)
        return out

    def _reschedule(self, transaction: _AnyTransaction) -> None:
        if transaction.ended:
            if self._transactions.get(transaction.key) is transaction:
                del self._transactions[transaction.key]
            if type(transaction) is InviteServerTransaction and transaction.ack_id is not None:
                self._awaiting_ack.pop(transaction.ack_id, None)
                transaction.ack_id = None
            if type(transaction) is InviteClientTransaction:
                transaction.state = IctState.TERMINATED
            elif type(transaction) is NonInviteClientTransaction:
                transaction.state = NictState.TERMINATED
            elif type(transaction) is InviteServerTransaction:
                transaction.state = IstState.TERMINATED
            else:
                transaction.state = NistState.TERMINATED
            return
        deadline = transaction.deadline()
        if deadline == transaction.due:
            return
        transaction.due = deadline
        if deadline is None:
            transaction.seq = -1
            return
        if type(transaction) is NonInviteServerTransaction and deadline == transaction.timer_j:
            queue = self._timer_j_queue
            last_due = queue[-1].due if queue else None
            if last_due is None or last_due <= deadline:
                transaction.seq = _QUEUED
                queue.append(transaction)
                return
            # A clock that went backwards: keep order by using the heap.
        seq = next(self._seq)
        transaction.seq = seq
        heap = self._heap
        heapq.heappush(heap, (deadline, seq, transaction))
        if len(heap) > 2 * len(self._transactions) + 1024:
            self._compact()

    def _compact(self) -> None:
        """Drop superseded heap entries (lazy deletion leaves them behind)."""
        # In place: on_timer may be iterating over this very list.
        self._heap[:] = [
            (t.due, t.seq, t)
            for t in self._transactions.values()
            if t.due is not None and not t.ended and t.seq != _QUEUED
        ]
        heapq.heapify(self._heap)


__all__ = [
    "TransactionLayer",
    "TransactionKey",
    "TransactionState",
    "IctState",
    "NictState",
    "IstState",
    "NistState",
    "InviteClientTransaction",
    "NonInviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteServerTransaction",
    "server_key",
    "client_key",
    "stamp_via",
    "response_destination",
    "build_cancel",
    "build_non_2xx_ack",
]
