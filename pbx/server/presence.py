"""The presence and busy lamp service: SUBSCRIBE in, NOTIFY out.

The rules are pure (:mod:`pbx.presence.subscription`,
:mod:`pbx.presence.bodies`); this is their edge: it authenticates
subscribers, answers, sends NOTIFYs through the endpoint, takes their
answers, and wakes up when a subscription expires.

Where the state comes from: the registrar's binding table (registered or
not) and the call layer's :class:`pbx.calls.presence.Presence` (on a call,
ringing), both of this node. They report every change (the registrar
through :class:`pbx.server.service.SipService`, the call layer through
``Presence.listener``); the changes of one round of input are gathered and
the NOTIFYs go out right after it (``soon``: the event loop's next turn),
so a phone that stops ringing because it answered goes from ``early``
straight to ``confirmed``, and the NOTIFY leaves within a millisecond or
so of the SIP message that changed the state.

The voicemail lamp (``message-summary``, RFC 3842) is served the same
way, its state the mailbox's counts (``mailboxes``, kept by
:mod:`pbx.voicemail.service`, which calls :meth:`PresenceService.mailbox_changed`
on every new, heard or deleted message). Phones of the extension that do
not subscribe get the same body in an unsolicited NOTIFY (out of any
dialog, as Asterisk and most phones practise it), sent to each
registered contact without a subscription of its own.

PUBLISH is refused (405, with a reason): what a phone is doing is known
here from its registrations and calls, and the PBX does not let a phone
claim another state for it.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from pbx.calls.presence import Presence
from pbx.presence.bodies import ExtensionState, MailboxState, dialog_info, message_summary, pidf
from pbx.presence.subscription import (ALLOW_EVENTS, PACKAGES, BadExpires, Subscription, Subscriptions,
                                       SubscriptionState, TooBrief, accepts, granted_expires, may_watch,
                                       parse_event)
from pbx.registrar.auth import Authenticator, ChallengeSink
from pbx.registrar.bindings import BindingTable
from pbx.registrar.destination import destination, remote_target
from pbx.routing.dialplan import Dialplan, Extension
from pbx.server.requests import LocalParty, answered, authenticated, request_user
from pbx.sip.dialog import Dialog, new_tag
from pbx.sip.endpoint import SipEndpoint
from pbx.sip.events import RequestReceived, TransactionKey
from pbx.sip.message import Header, HeaderValueError, make_request, make_response, parse_name_addr
from pbx.sip.tokens import random_hex
from pbx.sip.session import LocalAddress

log = structlog.get_logger("pbx.presence")

Soon = Callable[[Callable[[], None]], object]
CallAt = Callable[[float, Callable[[], None]], object]


class PresenceService:
    def __init__(self, *, endpoint: SipEndpoint, plan: Dialplan, auth: Authenticator, challenges: ChallengeSink,
                 bindings: BindingTable, presence: Presence, local_address: LocalAddress,
                 kick: Callable[[], None], monotonic: Callable[[], float], wall_clock: Callable[[], float],
                 soon: Soon, call_at: CallAt) -> None:
        self.endpoint = endpoint
        self.plan = plan
        self.auth = auth
        self.challenges = challenges
        self.bindings = bindings
        self.presence = presence
        self.local = LocalParty(local_address)
        self.kick = kick
        self.monotonic = monotonic
        self.wall = wall_clock
        self.soon = soon
        self.call_at = call_at
        self.subscriptions = Subscriptions(max_per_watcher=plan.features.max_subscriptions)
        self._by_key: dict[TransactionKey, Subscription] = {}
        self._changed: set[str] = set()
        self.mailboxes: Callable[[str], MailboxState] = lambda extension: MailboxState()
        """A mailbox's counts now (the voicemail service replaces it)."""
        self._unsolicited: dict[TransactionKey, str] = {}
        self._timer: object | None = None
        self._timer_at: float | None = None
        presence.listener = self.changed

    def use_plan(self, plan: Dialplan) -> None:
        """A new dialplan: its limit for new subscriptions; those in place stay."""
        self.plan = plan
        self.subscriptions.max_per_watcher = plan.features.max_subscriptions

    # ------------------------------------------------------------ state

    def state_of(self, extension: str) -> ExtensionState:
        return ExtensionState(registered=bool(self.bindings.current(extension, self.wall())),
                              calls=self.presence.calls(extension), ringing=self.presence.ringing(extension))

    def changed(self, extension: str) -> None:
        """``extension``'s registrations, calls or ringing changed."""
        if not self.subscriptions.watched(extension):
            return
        if not self._changed:
            self.soon(self._send_changes)
        self._changed.add(extension)

    def _send_changes(self) -> None:
        changed, self._changed = self._changed, set()
        now = self.monotonic()
        for extension in changed:
            for subscription in self.subscriptions.watching(extension):
                self._notify(subscription, now, force=False)
        self.kick()

    def registered(self, extension: str) -> None:
        """A phone of ``extension`` registered (or refreshed): if new
        messages wait, its lamp is lit at once, not at the next message."""
        if self.mailboxes(extension).new:
            self.mailbox_changed(extension)

    def mailbox_changed(self, extension: str) -> None:
        """``extension``'s mailbox changed: its subscribers' lamps, and an
        unsolicited NOTIFY to each of its phones that does not subscribe."""
        now = self.monotonic()
        state = self.mailboxes(extension)
        subscribed = set()
        for subscription in self.subscriptions.watching(extension):
            if subscription.event.package == "message-summary":
                subscribed.add((subscription.dest.host, subscription.dest.port))
                self._notify(subscription, now, force=False)
        plan = self.plan
        owner = plan.extension(extension)
        nat = owner.nat if owner is not None else "auto"
        account = f"sip:{extension}@{plan.domain}"
        for binding in self.bindings.current(extension, self.wall()):
            dest = destination(binding, nat).peer
            if (dest.host, dest.port) in subscribed:
                continue
            headers: list[Header] = [
                ("via", self.local.via(dest.transport)),
                ("max-forwards", "70"),
                ("from", f"<{account}>;tag={new_tag()}"),
                ("to", f"<{account}>"),
                ("call-id", f"mwi-{random_hex(10)}"),
                ("cseq", "1 NOTIFY"),
                ("contact", self.local.contact(dest.transport)),
                ("event", "message-summary"),
                ("subscription-state", "active"),
                ("content-type", "application/simple-message-summary"),
            ]
            request = make_request("NOTIFY", binding.contact, headers, message_summary(account, state))
            self._unsolicited[self.endpoint.send_request(request, dest, now)] = extension
        self.kick()

    # ------------------------------------------------------------ requests

    def on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        if request.method == "PUBLISH":
            self._answer(event, 405, "Presence Comes From Registrations And Calls", now,
                         [("allow", "SUBSCRIBE, NOTIFY"), ("allow-events", ALLOW_EVENTS)])
            return
        parsed = parse_event(request.get("event"))
        if parsed is None:
            self._answer(event, 400, "Missing Event Header", now)
            return
        if parsed.package not in PACKAGES:
            # RFC 6665 §8.2.2: the packages served, whoever asks.
            self._answer(event, 489, "Bad Event", now, [("allow-events", ALLOW_EVENTS)])
            return
        if request.to.tag is not None:
            self._refresh(event, now)
            return
        watcher = authenticated(event, plan=self.plan, auth=self.auth, challenges=self.challenges,
                                endpoint=self.endpoint, wall=self.wall(), now=now)
        if watcher is None:
            return
        self._subscribe(event, watcher, parsed.package, now)

    def _subscribe(self, event: RequestReceived, watcher: Extension, package: str, now: float) -> None:
        request, plan = event.request, self.plan
        user = request_user(request.uri)
        target = plan.extension(user) if user else None
        if target is None:
            self._refuse(event, watcher, 404, "Not Found", "no_such_extension", now, user=user)
            return
        if not may_watch(plan, watcher, target, package):
            self._refuse(event, watcher, 403, "Not Allowed To Watch", "not_visible", now, target=target.number)
            return
        if not accepts(request.get_all("accept"), PACKAGES[package]):
            self._refuse(event, watcher, 406, "Not Acceptable", "body_type_not_accepted", now,
                         headers=[("accept", PACKAGES[package])])
            return
        expires = self._expires(event, now)
        if expires is None:
            return
        if expires and self.subscriptions.full(watcher.number):
            self._refuse(event, watcher, 403, "Too Many Subscriptions", "too_many_subscriptions", now,
                         limit=self.subscriptions.max_per_watcher)
            return
        contacts = request.get_all("contact")
        try:
            contact = parse_name_addr(contacts[0]).uri if contacts else None
        except HeaderValueError:
            contact = None
        if contact is None:
            self._answer(event, 400, "Missing Contact", now)
            return
        parsed = parse_event(request.get("event"))
        assert parsed is not None
        dialog = Dialog.as_uas(request, new_tag())
        subscription = Subscription(event=parsed, watcher=watcher.number, target=target.number, dialog=dialog,
                                    dest=remote_target(contact, event.source, watcher.nat).peer,
                                    expires_at=now + expires)
        if expires == 0:
            subscription.end_reason = "timeout"  # a fetch: one NOTIFY, then over
        else:
            self.subscriptions.add(subscription)
        self._ok(event, subscription, expires, now)
        log.info("subscription_started", watcher=watcher.number, target=target.number, package=package,
                 expires=expires, source=str(event.source))
        self._notify(subscription, now, force=True)
        self._arm()

    def _refresh(self, event: RequestReceived, now: float) -> None:
        request = event.request
        subscription = self.subscriptions.get(request.call_id, request.to.tag or "")
        if subscription is None or subscription.state is SubscriptionState.TERMINATED:
            self._answer(event, 481, None, now)
            return
        expires = self._expires(event, now)
        if expires is None:
            return
        subscription.refresh(expires, now)
        self.subscriptions.rescheduled(subscription)
        self._ok(event, subscription, expires, now)
        self._notify(subscription, now, force=True)
        if expires == 0:
            log.info("subscription_ended", watcher=subscription.watcher, target=subscription.target,
                     package=subscription.event.package, reason="unsubscribed")
        self._arm()

    def _expires(self, event: RequestReceived, now: float) -> int | None:
        """The granted duration, or None once refused (423, 400)."""
        settings = self.plan.registrar
        granted = granted_expires(event.request.get("expires"), minimum=settings.min_expires,
                                  maximum=settings.max_expires)
        if isinstance(granted, TooBrief):
            self._answer(event, 423, "Interval Too Brief", now, [("min-expires", str(granted.minimum))])
            return None
        if isinstance(granted, BadExpires):
            self._answer(event, 400, "Bad Expires", now)
            return None
        return granted

    def _ok(self, event: RequestReceived, subscription: Subscription, expires: int, now: float) -> None:
        transport = subscription.dest.transport
        request = event.request
        # §12.1.1: the 2xx that sets up the dialog copies the Record-Route
        # (a refresh's 2xx does not: the route set is fixed by then).
        routes = [("record-route", value) for value in request.get_all("record-route")] \
            if request.to.tag is None else []
        response = make_response(request, 200, to_tag=subscription.dialog.local_tag, headers=[
            *routes, ("expires", str(expires)), ("contact", self.local.contact(transport))])
        self.endpoint.send_response(event.key, response, now)

    def _answer(self, event: RequestReceived, status: int, reason: str | None, now: float,
                headers: list[Header] | None = None) -> None:
        response = make_response(event.request, status, reason, to_tag=new_tag(), headers=headers or ())
        self.endpoint.send_response(event.key, response, now)

    def _refuse(self, event: RequestReceived, watcher: Extension, status: int, reason: str, tag: str, now: float,
                headers: list[Header] | None = None, **fields: object) -> None:
        log.info("subscription_refused", watcher=watcher.number, status=status, reason=tag,
                 source=str(event.source), **fields)
        self._answer(event, status, reason, now, headers)

    # ------------------------------------------------------------ NOTIFY

    def _notify(self, subscription: Subscription, now: float, *, force: bool) -> None:
        package = subscription.event.package
        state: ExtensionState | MailboxState = self.mailboxes(subscription.target) \
            if package == "message-summary" else self.state_of(subscription.target)
        if not subscription.should_notify(state, force=force):
            return
        state_header = subscription.state_header(now)
        version = subscription.sent(state)
        entity = f"sip:{subscription.target}@{self.plan.domain}"
        if isinstance(state, MailboxState):
            body = message_summary(entity, state)
        else:
            body = pidf(entity, state) if package == "presence" else dialog_info(entity, state, version)
        transport = subscription.dest.transport
        request = subscription.dialog.request(
            "NOTIFY", via=self.local.via(transport), contact=self.local.contact(transport), body=body,
            headers=[("event", str(subscription.event)), ("subscription-state", state_header),
                     ("content-type", subscription.body_type)])
        key = self.endpoint.send_request(request, subscription.dest, now)
        self._by_key[key] = subscription
        if subscription.state is SubscriptionState.TERMINATED:
            self.subscriptions.remove(subscription)

    def on_event(self, event: object, now: float) -> bool:
        """Answers to our NOTIFYs (and their timeouts); False: not ours."""
        found = answered(event, self._by_key)
        if isinstance(found, tuple):
            self._answered(*found, now)
        if found is False:
            # An unsolicited NOTIFY's answer: nothing to do (a phone that
            # refuses them simply has no lamp).
            return answered(event, self._unsolicited) is not False
        return True

    def _answered(self, subscription: Subscription, status: int, now: float) -> None:
        was_active = subscription.state is SubscriptionState.ACTIVE
        if subscription.answered(status):
            self._notify(subscription, now, force=False)
        elif subscription.state is SubscriptionState.TERMINATED:
            self.subscriptions.remove(subscription)
            if was_active:
                log.info("subscription_ended", watcher=subscription.watcher, target=subscription.target,
                         package=subscription.event.package, reason=f"notify_{status}")

    # ------------------------------------------------------------ expiry

    def _arm(self) -> None:
        deadline = self.subscriptions.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        self._timer_at = deadline
        self._timer = self.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self.monotonic()
        for subscription in self.subscriptions.expired(now):
            log.info("subscription_ended", watcher=subscription.watcher, target=subscription.target,
                     package=subscription.event.package, reason="expired")
            self._notify(subscription, now, force=True)
            if subscription.state is not SubscriptionState.TERMINATED:
                # A NOTIFY was still in flight: the subscription ends without
                # a terminated one (a refresh from the subscriber gets 481).
                self.subscriptions.remove(subscription)
                subscription.state = SubscriptionState.TERMINATED
        self._arm()
        self.kick()
