"""Endpoints on an in-memory wire with a hand-held clock (STYLE.md §7).

Each ``Endpoint`` is a real ``TransactionLayer`` plus a minimal transaction
user: it answers requests with an ``answer`` function and ACKs 2xx responses
to INVITE (§13.2.2.4). Bytes on the wire are real SIP, parsed on arrival with
``parse_message``. A ``loss`` pattern drops datagrams in the order they are
sent (True = lost; once the pattern is used up everything gets through), as
aiortc's connection pair does. ``run_until_idle`` moves the clock from one
arrival or timer deadline to the next until nothing is left to happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pbx.sip.address import Peer
from pbx.sip.errors import SipError
from pbx.sip.events import (
    Event,
    Output,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayResponse,
    TransactionKey,
)
from pbx.sip.message import Message, Request, Response, parse_cseq
from pbx.sip.parser import parse_message
from pbx.sip.transaction import TransactionLayer
from pbx.sip.uri import SipUri, parse_uri


@dataclass(slots=True)
class Clock:
    """Time for the pure layers; tests move it, nothing reads a real clock."""

    now: float = 0.0


@dataclass(frozen=True, slots=True)
class Datagram:
    """One message put on the wire."""

    at: float  # when it was sent
    source: Peer  # as the receiver sees it (after NAT)
    dest: Peer
    data: bytes
    lost: bool

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()


Answer = Callable[[Request], Response | None]


class Endpoint:
    """A transaction layer and a tiny TU at one address of the wire."""

    def __init__(
        self,
        wire: Wire,
        host: str,
        port: int,
        layer: TransactionLayer,
        *,
        answer: Answer | None,
        ack_2xx: bool,
        public: tuple[str, int] | None,
    ) -> None:
        self.wire = wire
        self.layer = layer
        self.answer = answer
        self.ack_2xx = ack_2xx
        self.local = Peer(wire.transport, host, port)
        # Seen by the others: the NAT's public side when behind one.
        self.address = Peer(wire.transport, *(public or (host, port)), 1 if wire.transport != "udp" else None)
        self.events: list[Event] = []
        self.dropped: list[str] = []  # reasons of unparsable input
        self._requests: dict[TransactionKey, tuple[Request, Peer]] = {}
        self._acks: dict[tuple[str, int], tuple[bytes, Peer]] = {}
        self._ack_count = 0

    # -------------------------------------------------------- acting as the TU

    def send_request(self, request: Request, *, now: float, dest: Peer | None = None) -> TransactionKey:
        """Start a client transaction; ``dest`` defaults to the Request-URI."""
        target = dest or self._uri_peer(request.uri)
        key, sends = self.layer.send_request(request, target, now)
        self._requests[key] = (request, target)
        self._flush(sends, now)
        return key

    def respond(self, key: TransactionKey, response: Response, *, now: float) -> None:
        self._flush(self.layer.send_response(key, response, now), now)

    def cancel(self, key: TransactionKey, *, now: float) -> TransactionKey | None:
        result = self.layer.cancel_request(key, now)
        if result is None:
            return None
        cancel_key, sends = result
        self._flush(sends, now)
        return cancel_key

    def send_raw(self, message: Message, dest: Peer, *, now: float) -> None:
        """Send outside any transaction (a TU's ACK to a 2xx, §13.2.2.4)."""
        self.wire.transmit(self, Send(data=message.encode(), dest=dest), now)

    def drain_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    # -------------------------------------------------------- driven by the wire

    def receive(self, data: bytes, source: Peer, now: float) -> None:
        try:
            message = parse_message(data)
        except SipError as error:
            self.dropped.append(error.reason)
            return
        if isinstance(message, Request):
            self._flush(self.layer.receive_request(message, source, now), now)
        else:
            self._flush(self.layer.receive_response(message, source, now), now)

    def on_timer(self, now: float) -> None:
        self._flush(self.layer.on_timer(now), now)

    def _flush(self, outputs: Iterable[Output], now: float) -> None:
        # What the layer sends leaves before the TU reacts to its events.
        outputs = list(outputs)
        for output in outputs:
            if isinstance(output, Send):
                self.wire.transmit(self, output, now)
        for output in outputs:
            if isinstance(output, Send):
                continue
            self.events.append(output)
            if isinstance(output, RequestReceived) and self.answer is not None:
                if output.request.method != "ACK":
                    response = self.answer(output.request)
                    if response is not None:
                        self.respond(output.key, response, now=now)
            elif isinstance(output, ResponseReceived) and self.ack_2xx:
                self._ack_if_2xx_to_invite(output.response, output.key, now)
            elif isinstance(output, StrayResponse) and self.ack_2xx:
                self._reack(output.response, now)

    def _ack_if_2xx_to_invite(self, response: Response, key: TransactionKey, now: float) -> None:
        if key.method != "INVITE" or not 200 <= response.status < 300:
            return
        ident = (response.call_id, response.cseq.number)
        if ident in self._acks:
            self._reack(response, now)  # RFC 6026 §8.4: a 2xx retransmission in Accepted
            return
        invite, dest = self._requests[key]
        self._ack_count += 1
        ack = Request(
            headers=(
                ("via", f"SIP/2.0/{self.wire.transport.upper()} {self.local.host}:{self.local.port}"
                 f";rport;branch=z9hG4bK-ack-{self.local.port}-{self._ack_count}"),
                ("max-forwards", "70"),
                ("from", invite.get("from") or ""),
                ("to", response.get("to") or ""),
                ("call-id", response.call_id),
                ("cseq", f"{parse_cseq(invite.get('cseq') or '').number} ACK"),
            ),
            body=b"",
            method="ACK",
            uri=invite.uri,
        )  # fmt: skip
        self._acks[ident] = (ack.encode(), dest)
        self.wire.transmit(self, Send(data=self._acks[ident][0], dest=dest), now)

    def _reack(self, response: Response, now: float) -> None:
        stored = self._acks.get((response.call_id, response.cseq.number))
        if stored is not None and 200 <= response.status < 300:
            self.wire.transmit(self, Send(data=stored[0], dest=stored[1]), now)

    def _uri_peer(self, uri: str) -> Peer:
        parsed = parse_uri(uri)
        if not isinstance(parsed, SipUri):
            raise ValueError(f"cannot send to {uri}")
        return Peer(self.wire.transport, parsed.host, parsed.port or 5060)


@dataclass(order=True)
class _InFlight:
    arrive: float
    seq: int
    datagram: Datagram = field(compare=False)
    receiver: Endpoint = field(compare=False)


class Wire:
    """Delivers what endpoints send, losing datagrams by ``loss``, after
    ``latency`` seconds."""

    def __init__(self, loss: Iterable[bool] = (), *, latency: float = 0.0, transport: str = "udp") -> None:
        self.transport = transport
        self.latency = latency
        self.log: list[Datagram] = []
        self._loss = list(loss)
        self._endpoints: dict[tuple[str, int], Endpoint] = {}
        self._in_flight: list[_InFlight] = []
        self._reported = 0
        self._seq = 0

    def endpoint(
        self,
        host: str,
        port: int,
        *,
        answer: Answer | None = None,
        ack_2xx: bool = True,
        public: tuple[str, int] | None = None,
        layer: TransactionLayer | None = None,
    ) -> Endpoint:
        """Attach an endpoint; ``public`` puts it behind a NAT with that address."""
        endpoint = Endpoint(
            self,
            host,
            port,
            layer if layer is not None else TransactionLayer(),  # an empty layer is falsy (__len__)
            answer=answer,
            ack_2xx=ack_2xx,
            public=public,
        )
        self._endpoints[(endpoint.address.host, endpoint.address.port)] = endpoint
        return endpoint

    def transmit(self, sender: Endpoint, send: Send, now: float) -> None:
        lost = self._loss.pop(0) if self._loss else False
        datagram = Datagram(at=now, source=sender.address, dest=send.dest, data=send.data, lost=lost)
        self.log.append(datagram)
        receiver = self._endpoints.get((send.dest.host, send.dest.port))
        if lost or receiver is None:
            return
        self._seq += 1
        self._in_flight.append(_InFlight(now + self.latency, self._seq, datagram, receiver))

    def run_until_idle(self, clock: Clock, *, until: float | None = None, max_steps: int = 100_000) -> list[float]:
        """Deliver and fire timers in time order until nothing is pending (or
        ``until``). Returns when each datagram sent since the last call left."""
        for _ in range(max_steps):
            arrival = min(self._in_flight).arrive if self._in_flight else None
            deadlines = [d for e in self._endpoints.values() if (d := e.layer.next_deadline()) is not None]
            timer = min(deadlines, default=None)
            if arrival is None and timer is None:
                break
            step = min(t for t in (arrival, timer) if t is not None)
            if until is not None and step > until:
                break
            clock.now = max(clock.now, step)
            if arrival is not None and arrival <= step:
                item = min(self._in_flight)
                self._in_flight.remove(item)
                item.receiver.receive(item.datagram.data, item.datagram.source, clock.now)
                continue
            for endpoint in list(self._endpoints.values()):
                deadline = endpoint.layer.next_deadline()
                if deadline is not None and deadline <= clock.now:
                    endpoint.on_timer(clock.now)
        else:
            raise RuntimeError("wire did not go idle")
        if until is not None:
            clock.now = max(clock.now, until)
        sent = [d.at for d in self.log[self._reported :]]
        self._reported = len(self.log)
        return sent

    def first_lines(self) -> list[tuple[str, bool]]:
        """(first line, lost) of everything sent so far."""
        return [(d.first_line, d.lost) for d in self.log]
