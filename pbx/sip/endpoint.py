"""The SIP endpoint: bytes in, events and bytes out (sans-I/O).

``receive`` parses a datagram or stream frame, answers what the parser
refuses (when the request is answerable, §8.2 and STYLE §3), enforces
Max-Forwards (§16.3 step 3: 483, OPTIONS excepted so it can be used to
probe hop counts), and hands the rest to the transaction layer. The driver
then collects ``Send``s and events with ``drain``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pbx.sip.address import Peer
from pbx.sip.errors import SipError
from pbx.sip.events import RequestReceived, Send
from pbx.sip.message import Header, Request, Response, make_response
from pbx.sip.parser import parse_message
from pbx.sip.transaction import TransactionKey, TransactionLayer, response_destination, stamp_via


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDropped:
    """Input refused. ``answered`` when a 4xx/5xx went back to the sender."""

    reason: str
    source: Peer
    answered: int | None = None


class SipEndpoint:
    def __init__(self, transactions: TransactionLayer | None = None) -> None:
        self.transactions = transactions if transactions is not None else TransactionLayer()
        self._sends: list[Send] = []
        self._events: list[object] = []
        # 100 Trying of INVITEs that arrived since the last drain, held one
        # round: a TU that answers at once (a 407 challenge, a refusal) makes
        # its 100 pointless, and one packet to a possibly forged source is
        # better than two. What is still held at the next drain goes out.
        self._tryings: dict[TransactionKey, Send] = {}
        self._held: dict[TransactionKey, Send] = {}
        self.retransmissions = 0
        """Messages sent again by a transaction timer (A, E, G), for metrics."""

    def receive(self, data: bytes, source: Peer, now: float) -> None:
        try:
            message = parse_message(data)
        except SipError as err:
            self._refuse(err, source)
            return
        if isinstance(message, Response):
            self._route(self.transactions.receive_response(message, source, now))
            return
        max_forwards = message.get("max-forwards")
        if max_forwards is not None and int(max_forwards) == 0 and message.method not in ("OPTIONS", "ACK"):
            self._answer_stateless(message, source, 483, "Too Many Hops")
            self._events.append(MessageDropped(reason="too_many_hops", source=source, answered=483))
            return
        self._route(self.transactions.receive_request(message, source, now))

    def _refuse(self, err: SipError, source: Peer) -> None:
        partial = err.partial
        if partial is not None and partial.method != "ACK":
            # §17.1.1.3 aside, an ACK is never answered.
            self._answer_stateless(partial, source, err.status, err.phrase)
            self._events.append(MessageDropped(reason=err.reason, source=source, answered=err.status))
        else:
            self._events.append(MessageDropped(reason=err.reason, source=source))

    def _answer_stateless(self, request: Request, source: Peer, status: int, phrase: str) -> None:
        stamped = stamp_via(request, source)
        response = make_response(stamped, status, phrase, to_tag="refused")
        self._sends.append(Send(data=response.encode(), dest=response_destination(stamped.top_via, source)))

    def send_response(self, key: TransactionKey, response: Response, now: float) -> None:
        self._tryings.pop(key, None)
        self._route(self.transactions.send_response(key, response, now))

    def answer_statelessly(self, key: TransactionKey, response: Response) -> None:
        """``response`` once, and the server transaction forgotten (see
        `TransactionLayer.answer_statelessly`)."""
        self._tryings.pop(key, None)
        self._route(self.transactions.answer_statelessly(key, response))

    def discard(self, key: TransactionKey) -> None:
        """Drop the request of server transaction ``key`` unanswered."""
        self._tryings.pop(key, None)
        self.transactions.discard(key)

    def send_request(self, request: Request, dest: Peer, now: float) -> TransactionKey:
        key, effects = self.transactions.send_request(request, dest, now)
        self._route(effects)
        return key

    def cancel(self, invite_key: TransactionKey, now: float, headers: tuple[Header, ...] = ()) -> None:
        """CANCEL a pending INVITE client transaction (§9.1), with ``headers``."""
        result = self.transactions.cancel_request(invite_key, now, headers)
        if result is not None:
            self._route(result[1])

    def send_raw(self, data: bytes, dest: Peer) -> None:
        """Bytes outside any transaction (ACK to 2xx, §13.2.2.4; keep-alives)."""
        self._sends.append(Send(data=data, dest=dest))

    def on_timer(self, now: float) -> None:
        effects = self.transactions.on_timer(now)
        # What a timer sends is always a message sent before: a retransmission.
        self.retransmissions += sum(1 for effect in effects if isinstance(effect, Send))
        self._route(effects)

    def next_deadline(self) -> float | None:
        return self.transactions.next_deadline()

    def _route(self, effects: Sequence[object]) -> None:
        trying_for = None
        for effect in effects:
            if isinstance(effect, Send):
                if trying_for is not None and effect.data.startswith(b"SIP/2.0 100 "):
                    self._held[trying_for] = effect
                    trying_for = None
                else:
                    self._sends.append(effect)
            else:
                self._events.append(effect)
                if isinstance(effect, RequestReceived) and effect.request.method == "INVITE":
                    trying_for = effect.key  # the layer's 100 Trying follows it

    def drain(self) -> tuple[list[Send], list[object]]:
        """What to send and what happened since the last drain. The caller
        handles the events and drains again until there are none."""
        sends, events = self._sends, self._events
        self._sends, self._events = [], []
        if self._tryings:
            sends.extend(self._tryings.values())
        self._tryings, self._held = self._held, {}
        return sends, events
