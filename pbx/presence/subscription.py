"""Subscriptions to an extension's state (RFC 6665), as their notifier.

A SUBSCRIBE names an event package in its Event header; the PBX serves
three: ``presence`` (RFC 3856, PIDF bodies), ``dialog`` (RFC 4235, what desk
phones' busy lamp keys watch) and ``message-summary`` (RFC 3842, the
voicemail lamp: an extension may only watch its own mailbox). Anything else is answered 489 Bad Event with
Allow-Events (§8.2.2). Rules kept here:

- Expires (§4.2.1.1): a notifier may shorten the duration asked for but
  never lengthen it; a request below the minimum gets 423 Interval Too
  Brief with Min-Expires; no Expires means the package's default (3600 s
  for both, RFC 3856 §6.4, RFC 4235 §3.2); ``Expires: 0`` is a fetch: one
  NOTIFY with the state and ``Subscription-State: terminated``;
- the 200 carries the granted Expires, and a NOTIFY follows at once
  (§4.2.1.2), again on each refresh, and on every visible change;
- one NOTIFY in flight per subscription, so NOTIFYs never overtake each
  other and a burst of changes costs one NOTIFY: changes meanwhile are
  folded into one sent when the answer comes, carrying the latest state;
- a NOTIFY answered 481, any other failure, or none at all, ends the
  subscription (§4.2.2); the subscription ends with a ``terminated``
  NOTIFY (``reason=timeout``) when it expires unrefreshed (§4.2.2).

Pure: the caller passes ``now`` (its monotonic clock) and sends what the
methods say to send.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from pbx.routing.dialplan import Dialplan, Extension
from pbx.sip.address import Peer
from pbx.sip.dialog import Dialog

PACKAGES: Final[dict[str, str]] = {
    "presence": "application/pidf+xml",
    "dialog": "application/dialog-info+xml",
    "message-summary": "application/simple-message-summary",
}
"""Event packages served and the body type each NOTIFY carries."""
ALLOW_EVENTS: Final = ", ".join(PACKAGES)
DEFAULT_EXPIRES: Final = 3600
"""RFC 3856 §6.4 and RFC 4235 §3.2: the duration when Expires is absent."""


@dataclass(frozen=True, slots=True)
class EventHeader:
    """An Event header's package and ``id`` parameter (RFC 6665 §8.2.1)."""

    package: str
    event_id: str | None = None

    def __str__(self) -> str:
        return self.package + (f";id={self.event_id}" if self.event_id else "")


def parse_event(value: str | None) -> EventHeader | None:
    """The Event header of a SUBSCRIBE; None when there is none (§4.1.2:
    a SUBSCRIBE must name its package)."""
    if not value or not value.strip():
        return None
    package, *params = (part.strip() for part in value.split(";"))
    event_id = None
    for param in params:
        name, _, text = param.partition("=")
        if name.strip().lower() == "id":
            event_id = text.strip() or None
    return EventHeader(package.lower(), event_id)


@dataclass(frozen=True, slots=True)
class TooBrief:
    """423 Interval Too Brief, with ``Min-Expires: minimum``."""

    minimum: int


@dataclass(frozen=True, slots=True)
class BadExpires:
    """400: an Expires that is not a number of seconds."""


def granted_expires(value: str | None, *, minimum: int, maximum: int) -> int | TooBrief | BadExpires:
    """The subscription's duration for a SUBSCRIBE's Expires header (see
    the module): 0 is a fetch; shortened to ``maximum``, never lengthened."""
    if value is None:
        return min(DEFAULT_EXPIRES, maximum)
    text = value.strip()
    if not text.isdigit():
        return BadExpires()
    asked = int(text)
    if asked == 0:
        return 0
    if asked < minimum:
        return TooBrief(minimum)
    return min(asked, maximum)


def accepts(accept_values: list[str], body_type: str) -> bool:
    """Whether a SUBSCRIBE's Accept headers allow ``body_type`` (none: the
    package's default type, §8.2.4 of RFC 6665 via RFC 3261 §20.1)."""
    if not accept_values:
        return True
    major = body_type.split("/")[0]
    for value in accept_values:
        for item in value.split(","):
            media = item.split(";")[0].strip().lower()
            if media in (body_type, "*/*", f"{major}/*"):
                return True
    return False


class SubscriptionState(enum.Enum):
    ACTIVE = "active"
    TERMINATED = "terminated"


@dataclass(slots=True, eq=False, kw_only=True)
class Subscription:
    """One subscriber's dialog with the PBX about one extension."""

    event: EventHeader
    watcher: str
    """The authenticated extension that subscribed."""
    target: str
    """The extension watched."""
    dialog: Dialog
    dest: Peer
    """Where NOTIFYs go (the subscriber's Contact, or its source behind NAT)."""
    expires_at: float
    state: SubscriptionState = SubscriptionState.ACTIVE
    version: int = 0
    """The next dialog-info version (RFC 4235 §4.1: 0 first, +1 per NOTIFY)."""
    in_flight: bool = False
    pending: bool = False
    """A change came while a NOTIFY was in flight: send again on its answer."""
    last_sent: object = None
    """The state the last NOTIFY reported (a change is only a new one)."""
    end_reason: str | None = None
    """Set once the subscription is ending: the terminated NOTIFY's reason."""

    @property
    def dialog_id(self) -> tuple[str, str]:
        return self.dialog.call_id, self.dialog.local_tag

    @property
    def body_type(self) -> str:
        return PACKAGES[self.event.package]

    def state_header(self, now: float) -> str:
        """Subscription-State for a NOTIFY sent ``now`` (RFC 6665 §8.2.3)."""
        if self.end_reason is not None:
            return f"terminated;reason={self.end_reason}"
        return f"active;expires={max(0, int(self.expires_at - now + 0.5))}"

    def refresh(self, expires: int, now: float) -> None:
        """A refreshing SUBSCRIBE granted ``expires`` seconds (0: ends it)."""
        self.expires_at = now + expires
        if expires == 0:
            self.end_reason = "timeout"

    def should_notify(self, state: object, *, force: bool) -> bool:
        """Whether to send a NOTIFY for ``state`` now. With one in flight,
        the change waits (``pending``) for its answer; an unchanged state
        is only sent when ``force``d (a new or refreshed subscription) or
        when the subscription is ending."""
        if self.state is SubscriptionState.TERMINATED:
            return False
        if not force and self.end_reason is None and state == self.last_sent:
            return False
        if self.in_flight:
            self.pending = True
            return False
        return True

    def sent(self, state: object) -> int:
        """A NOTIFY for ``state`` went; returns its dialog-info version."""
        self.in_flight, self.pending, self.last_sent = True, False, state
        version = self.version
        self.version += 1
        if self.end_reason is not None:
            self.state = SubscriptionState.TERMINATED
        return version

    def answered(self, status: int) -> bool:
        """The NOTIFY in flight was answered ``status`` (408 for a timeout
        or a transport failure). True when a change waits to be sent;
        a failure ends the subscription (§4.2.2)."""
        self.in_flight = False
        if status >= 300:
            self.state = SubscriptionState.TERMINATED
            return False
        return self.pending and self.state is SubscriptionState.ACTIVE


@dataclass(slots=True)
class Subscriptions:
    """Every subscription this node serves: by dialog, by target, by
    watcher (against ``max_per_watcher``), and their expiry times in one
    heap (lazy deletion, as the call controller's)."""

    max_per_watcher: int
    _by_dialog: dict[tuple[str, str], Subscription] = field(default_factory=dict)
    _by_target: dict[str, set[Subscription]] = field(default_factory=dict)
    _per_watcher: dict[str, int] = field(default_factory=dict)
    _heap: list[tuple[float, int, Subscription]] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return len(self._by_dialog)

    def full(self, watcher: str) -> bool:
        """``watcher`` holds as many subscriptions as it may."""
        return self._per_watcher.get(watcher, 0) >= self.max_per_watcher

    def add(self, subscription: Subscription) -> None:
        self._by_dialog[subscription.dialog_id] = subscription
        self._by_target.setdefault(subscription.target, set()).add(subscription)
        self._per_watcher[subscription.watcher] = self._per_watcher.get(subscription.watcher, 0) + 1
        self.rescheduled(subscription)

    def get(self, call_id: str, local_tag: str) -> Subscription | None:
        return self._by_dialog.get((call_id, local_tag))

    def watching(self, target: str) -> list[Subscription]:
        return list(self._by_target.get(target, ()))

    def watched(self, target: str) -> bool:
        return target in self._by_target

    def remove(self, subscription: Subscription) -> None:
        if self._by_dialog.pop(subscription.dialog_id, None) is None:
            return
        watchers = self._by_target.get(subscription.target)
        if watchers is not None:
            watchers.discard(subscription)
            if not watchers:
                del self._by_target[subscription.target]
        left = self._per_watcher.get(subscription.watcher, 0) - 1
        if left > 0:
            self._per_watcher[subscription.watcher] = left
        else:
            self._per_watcher.pop(subscription.watcher, None)

    def rescheduled(self, subscription: Subscription) -> None:
        """Its ``expires_at`` changed (or it is new): wake up then."""
        heapq.heappush(self._heap, (subscription.expires_at, next(self._seq), subscription))
        if len(self._heap) > 2 * len(self._by_dialog) + 64:
            self._heap = [(s.expires_at, next(self._seq), s) for s in self._by_dialog.values()]
            heapq.heapify(self._heap)

    def _current(self, when: float, subscription: Subscription) -> bool:
        return subscription.expires_at == when and self._by_dialog.get(subscription.dialog_id) is subscription

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not self._current(heap[0][0], heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expired(self, now: float) -> list[Subscription]:
        """Subscriptions whose time ran out by ``now``, marked as ending
        (their terminated NOTIFY is the caller's to send)."""
        due: list[Subscription] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, subscription = heapq.heappop(heap)
            if self._current(when, subscription):
                subscription.end_reason = subscription.end_reason or "timeout"
                due.append(subscription)
        return due


def may_watch(plan: Dialplan, watcher: Extension, target: Extension, package: str = "presence") -> bool:
    """Whether ``watcher`` may see ``target``'s presence and busy lamp:
    any extension of the company (the dialplan's ``presence_visibility:
    company``, the default), or only its own department's. A mailbox's
    lamp is its owner's alone."""
    if package == "message-summary":
        return watcher.number == target.number
    if plan.features.presence_visibility == "department":
        return watcher.department == target.department
    return True
