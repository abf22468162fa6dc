"""The chat service: MESSAGE out of any dialog (RFC 3428), relayed to the
recipient's phones, kept when none takes it, delivered on registration.

The rules are pure (:mod:`pbx.presence.chat`); this is their edge: it
authenticates the sender (407, as for INVITE), sends one MESSAGE per
registered contact through the endpoint, answers the sender once, and
keeps what it could not deliver in ``offline_messages``
(:class:`pbx.store.chat.OfflineMessageStore`, written behind).

Delivery of kept messages: the recipients with messages waiting are read
at start-up and on every sweep (other nodes keep messages too), and a
message kept here is added once it has committed. When such a recipient
registers (any REGISTER that adds or refreshes a binding), its messages
are read and relayed to its contacts, each with a Date header saying when
it was sent; each one accepted is deleted, the others stay for the next
registration until their retention ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import structlog

from pbx.calls.plan import quoted_text
from pbx.presence.chat import RELAY_WAIT, ChatRelay, Outcome, refusal, storable
from pbx.registrar.auth import Authenticator, ChallengeSink
from pbx.registrar.bindings import Binding, BindingTable
from pbx.registrar.destination import destination
from pbx.routing.dialplan import Dialplan
from pbx.server.requests import LocalParty, answered, authenticated, request_user
from pbx.sip.dialog import new_tag
from pbx.sip.endpoint import SipEndpoint
from pbx.sip.events import RequestReceived, TransactionKey
from pbx.sip.message import Header, Request, make_request, make_response
from pbx.sip.session import LocalAddress
from pbx.sip.tokens import random_hex
from pbx.store.chat import OfflineMessageStore, StoredMessage
from pbx.store.writer import BackgroundWriter

log = structlog.get_logger("pbx.chat")

CallAt = Callable[[float, Callable[[], None]], object]


class ChatService:
    def __init__(self, *, endpoint: SipEndpoint, plan: Dialplan, auth: Authenticator, challenges: ChallengeSink,
                 bindings: BindingTable, local_address: LocalAddress, kick: Callable[[], None],
                 monotonic: Callable[[], float], wall_clock: Callable[[], float], call_at: CallAt,
                 store: OfflineMessageStore, writer: BackgroundWriter,
                 threadsafe: Callable[[Callable[[], None]], object]) -> None:
        self.endpoint = endpoint
        self.plan = plan
        self.auth = auth
        self.challenges = challenges
        self.bindings = bindings
        self.local = LocalParty(local_address)
        self.kick = kick
        self.monotonic = monotonic
        self.wall = wall_clock
        self.call_at = call_at
        self.store = store
        self.writer = writer
        self.threadsafe = threadsafe
        """Run a callback on the event loop from the writer thread."""
        self.waiting: set[str] = set()
        """Extensions with messages kept for them (as last read, plus ours)."""
        self._by_key: dict[TransactionKey, ChatRelay] = {}
        self._senders: dict[int, tuple[TransactionKey, Request]] = {}
        """The sender's request each live relay answers, by id(relay)."""
        self._relays: dict[int, ChatRelay] = {}
        self._delivering: set[str] = set()
        self._kept_in_flight: set[int] = set()
        """Ids of kept messages relayed and not yet answered: a second
        registration meanwhile must not send them again."""
        self._tasks: set[asyncio.Task[None]] = set()

    def use_plan(self, plan: Dialplan) -> None:
        self.plan = plan

    # ------------------------------------------------------------ MESSAGE in

    def on_request(self, event: RequestReceived, now: float) -> None:
        sender = authenticated(event, plan=self.plan, auth=self.auth, challenges=self.challenges,
                               endpoint=self.endpoint, wall=self.wall(), now=now)
        if sender is None:
            return
        request = event.request
        user = request_user(request.uri)
        recipient = self.plan.extension(user) if user else None
        if recipient is None:
            log.info("chat_refused", sender=sender.number, recipient=user, status=404, reason="no_such_extension")
            self._answer(event.key, request, 404, None, now)
            return
        content_type = request.get("content-type")
        refused = refusal(content_type, request.body, self.plan.features.chat_max_bytes)
        if refused is not None:
            status, phrase = refused
            log.info("chat_refused", sender=sender.number, recipient=recipient.number, status=status,
                     size=len(request.body), limit=self.plan.features.chat_max_bytes)
            self._answer(event.key, request, status, phrase, now)
            return
        assert content_type is not None
        relay = ChatRelay(sender=sender.number, recipient=recipient.number, content_type=content_type.strip(),
                          body=request.body, waiting=0, due=now + RELAY_WAIT)
        self._senders[id(relay)] = (event.key, request)
        contacts = [b for b in self.bindings.current(recipient.number, self.wall())
                    if not (b.aor == sender.number and b.source == event.source)]
        if not self._relay(relay, contacts, now):
            self._settle(relay, "undelivered", now)

    def _relay(self, relay: ChatRelay, contacts: list[Binding], now: float,
               created_at: datetime | None = None) -> bool:
        """Send ``relay`` to each contact; False when there is none."""
        if not contacts:
            return False
        relay.waiting = len(contacts)
        relay.due = now + RELAY_WAIT
        self._relays[id(relay)] = relay
        sender = self.plan.extension(relay.sender)
        # quoted_text: a name (API, console, directory) with a line break
        # would otherwise write headers of its own into the MESSAGE.
        display = f'"{quoted_text(sender.name)}" ' if sender is not None and sender.name else ""
        extension = self.plan.extension(relay.recipient)
        nat = extension.nat if extension is not None else "auto"
        for binding in contacts:
            where = destination(binding, nat)
            dest = where.peer
            headers: list[Header] = [
                ("via", self.local.via(dest.transport)),
                ("max-forwards", "70"),
                ("from", f"{display}<sip:{relay.sender}@{self.plan.domain}>;tag={new_tag()}"),
                ("to", f"<sip:{relay.recipient}@{self.plan.domain}>"),
                ("call-id", f"chat-{random_hex(10)}"),
                ("cseq", "1 MESSAGE"),
                ("content-type", relay.content_type),
            ]
            if where.reason == "path":
                headers.extend(("route", hop) for hop in binding.path)  # RFC 3327 §5.1
            if created_at is not None:
                headers.append(("date", format_datetime(created_at.astimezone(UTC), usegmt=True)))
            key = self.endpoint.send_request(make_request("MESSAGE", binding.contact, headers, relay.body),
                                             dest, now)
            self._by_key[key] = relay
        self.call_at(relay.due, lambda: self._on_timer(relay))
        return True

    def _answer(self, key: TransactionKey, request: Request, status: int, reason: str | None, now: float) -> None:
        self.endpoint.send_response(key, make_response(request, status, reason, to_tag=new_tag()), now)

    # ------------------------------------------------------------ answers

    def on_event(self, event: object, now: float) -> bool:
        """Answers to our MESSAGEs (and their timeouts); False: not ours."""
        found = answered(event, self._by_key)
        if isinstance(found, tuple):
            self._answered(*found, now)
        return found is not False

    def _answered(self, relay: ChatRelay, status: int, now: float) -> None:
        outcome = relay.answered(status)
        if outcome is not None:
            self._settle(relay, outcome, now)

    def _on_timer(self, relay: ChatRelay) -> None:
        outcome = relay.on_timer(self.monotonic())
        if outcome is not None:
            self._settle(relay, outcome, self.monotonic())
            self.kick()

    def _settle(self, relay: ChatRelay, outcome: Outcome, now: float) -> None:
        self._relays.pop(id(relay), None)
        sender = self._senders.pop(id(relay), None)
        if relay.stored_id is not None:
            self._stored_settled(relay, outcome)
            return
        assert sender is not None
        key, request = sender
        if outcome == "delivered":
            log.info("chat_delivered", sender=relay.sender, recipient=relay.recipient, size=len(relay.body))
            self._answer(key, request, 200, None, now)
        elif storable(relay.content_type):
            self._keep(relay)
            self._answer(key, request, 202, None, now)
        else:
            self._answer(key, request, 480, None, now)

    def _keep(self, relay: ChatRelay) -> None:
        features, store, recipient = self.plan.features, self.store, relay.recipient
        created = datetime.fromtimestamp(self.wall(), UTC)
        expires = created + timedelta(hours=features.chat_retention_hours)
        log.info("chat_kept", sender=relay.sender, recipient=recipient, size=len(relay.body),
                 retention_hours=features.chat_retention_hours)

        def kept() -> None:
            self.waiting.add(recipient)
            if self.bindings.current(recipient, self.wall()):
                self.registered(recipient)  # it registered while the write was on its way

        self.writer.submit(
            lambda conn: store.save(recipient, relay.sender, relay.content_type, relay.body, now=created,
                                    expires_at=expires, keep=features.chat_max_stored, conn=conn),
            on_commit=lambda: self.threadsafe(kept))

    # ------------------------------------------------------------ kept ones

    def registered(self, aor: str) -> None:
        """``aor`` has a phone registered: deliver what waits for it."""
        if aor not in self.waiting or aor in self._delivering or not self.bindings.current(aor, self.wall()):
            return
        self._delivering.add(aor)
        task = asyncio.get_running_loop().create_task(self._deliver_kept(aor))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_kept(self, aor: str) -> None:
        try:
            self.waiting.discard(aor)
            messages = await asyncio.to_thread(self.store.pending, aor, datetime.fromtimestamp(self.wall(), UTC))
            contacts = self.bindings.current(aor, self.wall())
            now = self.monotonic()
            for message in messages:
                if message.id in self._kept_in_flight:
                    continue
                self._kept_in_flight.add(message.id)
                if not self._relay(self._kept_relay(message), contacts, now, created_at=message.created_at):
                    self._kept_in_flight.discard(message.id)
                    self.waiting.add(aor)
                    break
            if messages:
                log.info("chat_kept_sent", recipient=aor, messages=len(messages), contacts=len(contacts))
            self.kick()
        except Exception:
            log.exception("chat_kept_delivery_failed", recipient=aor)
            self.waiting.add(aor)
        finally:
            self._delivering.discard(aor)

    @staticmethod
    def _kept_relay(message: StoredMessage) -> ChatRelay:
        return ChatRelay(sender=message.sender, recipient=message.recipient, content_type=message.content_type,
                         body=message.body, waiting=0, due=0.0, stored_id=message.id)

    def _stored_settled(self, relay: ChatRelay, outcome: Outcome) -> None:
        message_id, store = relay.stored_id, self.store
        assert message_id is not None
        self._kept_in_flight.discard(message_id)
        if outcome == "delivered":
            log.info("chat_delivered", sender=relay.sender, recipient=relay.recipient, size=len(relay.body),
                     kept=True)
            self.writer.submit(lambda conn: store.delete(message_id, conn=conn))
        else:
            self.waiting.add(relay.recipient)

    # ------------------------------------------------------------ sweep

    async def refresh(self) -> None:
        """Drop messages past retention; read who has messages waiting."""
        now = datetime.fromtimestamp(self.wall(), UTC)
        dropped = await asyncio.to_thread(self.store.sweep, now)
        if dropped:
            log.info("chat_kept_expired", count=dropped)
        self.waiting |= await asyncio.to_thread(self.store.recipients, now)
