"""The dialplan model: what the PBX knows about its domain, users and policy.

Pure data, built by :mod:`pbx.routing.loader` from YAML (or directly, in
tests). Every class is a frozen dataclass; constructors check their own
invariants and raise ``ValueError``, so a model that exists is a valid one.
The loader checks the same rules first, to report them with file positions.

Secrets rule: an extension's password and HA1 values never appear in a
``repr`` (and therefore never in a log line or a test failure message).
"""

from __future__ import annotations

import ipaddress

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from datetime import datetime, timezone, tzinfo
from types import MappingProxyType
from typing import Final, Literal, TypeVar, get_args

from pbx.routing.account_codes import AccountCodeSettings, Mode as AccountCodeMode
from pbx.routing.budgets import BudgetSettings
from pbx.ldap.settings import LdapSettings
from pbx.recording.policy import RecordingSettings
from pbx.routing.calendars import Calendar, Schedule
from pbx.routing.classes import BUILTIN_CLASSES, EMERGENCY, NumberPlan
from pbx.routing.classes_of_service import ClassOfService, NumberList, OutsideCallLimits
from pbx.routing.hunt_groups import CONDITIONS, HuntGroup
from pbx.routing.conferences import Conference
from pbx.routing.parking import Parking
from pbx.routing.places import RulePlaces
from pbx.routing.ivr import IvrMenu, MediaSettings
from pbx.routing.routes import InboundTarget, Route
from pbx.routing.screening import Screening
from pbx.routing.short_numbers import ShortNumberGroup
from pbx.routing.tariffs import Billing
from pbx.routing.trunk_config import Trunk
from pbx.routing.voicemail import VoicemailPlan

EXTENSION_NUMBER: Final = re.compile(r"[0-9]{2,8}")
"""An extension number: 2 to 8 decimal digits (also the digest username)."""

_HA1_MD5: Final = re.compile(r"[0-9a-f]{32}")
_HA1_SHA256: Final = re.compile(r"[0-9a-f]{64}")
CALLER_ID: Final = re.compile(r"\+?[0-9]{2,20}")
"""A number presented through a trunk: digits, optionally E.164's ``+``."""

NatMode = Literal["auto", "force", "never"]
"""Where calls to an extension's phones go (:mod:`pbx.registrar.destination`):
``auto`` the Contact unless NAT is seen, ``force`` where the REGISTER came
from, ``never`` the Contact."""
NAT_MODES: Final[tuple[str, ...]] = get_args(NatMode)
MediaEncryption = Literal["none", "optional", "required"]
"""SRTP for an extension's calls (:mod:`pbx.calls.media_policy`,
:mod:`pbx.media.sdes`): never, when offered or taken, or always (488)."""
MEDIA_ENCRYPTIONS: Final[tuple[str, ...]] = get_args(MediaEncryption)

ExtensionStatus = Literal["active", "suspended", "retired"]
"""Set by the admin (``pbx ext suspend|resume|retire``): a suspended or
retired extension neither registers nor calls, and calls to it are refused."""
EXTENSION_STATUSES: Final[tuple[str, ...]] = get_args(ExtensionStatus)
ExtensionState = Literal["active", "suspended", "retired", "not_yet_valid", "expired"]
"""An extension's status at a moment: its ``status``, or what its
``valid_from``/``valid_until`` make of an active one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Department:
    """A group of extensions, such as ``sales``; later issues route by it."""

    key: str
    """Short identifier used in the dialplan file (``sales``)."""
    name: str
    """Human name (``Sales / Kinh doanh``)."""
    class_of_service: str | None = None
    """What its extensions may dial (a key of :attr:`Dialplan.classes_of_service`);
    None: internal and emergency calls only."""
    number_plan: str | None = None
    """Number plan that classifies what its extensions dial; None: the plan's default."""
    caller_id: str | None = None
    """Number presented through a trunk for its extensions, unless an extension sets one."""
    language: str | None = None
    """Language the PBX speaks to its extensions (vi, zh, en); None: the plan's."""
    account_codes: AccountCodeMode | None = None
    """When its extensions are asked for an account code; None: the company default."""
    music_on_hold: str | None = None
    """The WAV file its callers on hold hear; None: the plan's (``media.music_on_hold``)."""


FORWARD_TARGET: Final = re.compile(r"\+?[0-9]{2,20}")
"""Where a forward may point: an extension, a hunt group or an outside number."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Forwards:
    """An extension's call forwarding (``forward:``), each None when off.

    ``always`` takes every call at once; ``busy`` the calls that find it
    busy (on its maximum of calls, do not disturb, or every phone said
    busy); ``no_answer`` the calls unanswered after its ring time;
    ``unreachable`` the calls when no phone of it is registered. What the
    user sets from the phone (``*72`` ...) is kept in the store and wins
    over this (:mod:`pbx.calls.features`)."""

    always: str | None = None
    busy: str | None = None
    no_answer: str | None = None
    unreachable: str | None = None

    def __post_init__(self) -> None:
        for kind in FORWARD_KINDS:
            target = getattr(self, kind)
            if target is not None and FORWARD_TARGET.fullmatch(target) is None:
                raise ValueError(f"forward {kind} must be a number, got {target!r}")


FORWARD_KINDS: Final = ("always", "busy", "no_answer", "unreachable")


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """A user of the PBX, registered and authenticated by its number.

    Digest credentials (RFC 7616 §3.4.2): the username is ``number`` and the
    realm is :attr:`Dialplan.domain`. Either the plain ``password`` is
    known, or one or both precomputed HA1 values are: ``ha1_md5`` is
    ``MD5(number:realm:password)`` and ``ha1_sha256`` the SHA-256 of the
    same string, as lowercase hex.
    """

    number: str
    name: str
    """Display name, used in From/P-Asserted-Identity of outgoing calls."""
    department: str
    """Key of the :class:`Department` this extension belongs to."""
    password: str | None = field(default=None, repr=False)
    ha1_md5: str | None = field(default=None, repr=False)
    ha1_sha256: str | None = field(default=None, repr=False)
    ring_timeout: int = 30
    """Seconds to ring before the call counts as unanswered."""
    max_contacts: int = 5
    """How many devices may register for this extension at once."""
    class_of_service: str | None = None
    """Overrides the department's class of service."""
    caller_id: str | None = None
    """Number presented through a trunk; None: the department's, else the trunk's."""
    outside_calls: OutsideCallLimits = OutsideCallLimits()
    """Caps on this extension's outside calls; unset: its class of service's."""
    nat: NatMode = "auto"
    """Where calls to its phones go: the Contact, or the REGISTER's source."""
    language: str | None = None
    """Overrides the department's prompt language."""
    forward: Forwards = Forwards()
    """Call forwarding the administrator set (the user's own, from the phone, wins)."""
    dnd: bool = False
    """Do not disturb as the administrator set it (``*78``/``*79`` change it)."""
    max_calls: int = 2
    """Calls the extension may be in at once (call waiting: the second
    rings while the first goes on); a caller beyond it gets busy."""
    pickup_group: str | None = None
    """Who may pick up its ringing calls with ``*8``: extensions of the
    same pickup group; None: its department."""
    media_encryption: MediaEncryption = "optional"
    """SRTP: ``required`` refuses (488) calls from or to it whose offer has
    no SDES key; the PBX's own media offers SRTP unless ``none``."""
    account_codes: AccountCodeMode | None = None
    """Overrides the department's account code mode."""

    project: str | None = None
    """Project tag its calls are charged to (budgets, reports), if any."""
    status: ExtensionStatus = "active"
    valid_from: datetime | None = None
    """First moment the number works; None: always has."""
    valid_until: datetime | None = None
    """First moment it no longer works (a temporary project number); None: never ends."""
    inactive_status: int | None = None
    """What calls to it get while it is not active: 404 or 480; None: 404
    once retired, 480 otherwise (it may come back)."""
    incoming: Screening = Screening()
    """Black and white lists for callers from outside who reach it."""
    email: str | None = None
    mobile: str | None = None
    ldap_dn: str | None = None
    """The directory entry this extension is kept in step with (``pbx ldap
    sync``); None: made by hand, never touched by the sync."""

    def __post_init__(self) -> None:
        if self.max_calls < 1:
            raise ValueError(f"extension {self.number!r}: max_calls must be at least 1")
        if self.status not in EXTENSION_STATUSES:
            raise ValueError(f"extension {self.number!r}: status must be one of {', '.join(EXTENSION_STATUSES)}")
        if self.inactive_status not in (None, 404, 480):
            raise ValueError(f"extension {self.number!r}: inactive_status must be 404 or 480")
        for moment in (self.valid_from, self.valid_until):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"extension {self.number!r}: valid_from/valid_until must be aware datetimes")
        if self.valid_from is not None and self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError(f"extension {self.number!r}: valid_until must be after valid_from")
        if EXTENSION_NUMBER.fullmatch(self.number) is None:
            raise ValueError(f"extension number {self.number!r} must be 2 to 8 digits")
        has_ha1 = self.ha1_md5 is not None or self.ha1_sha256 is not None
        if (self.password is not None) == has_ha1:
            raise ValueError(
                f"extension {self.number!r} needs exactly one of password or ha1_md5/ha1_sha256"
            )
        if self.password is not None and not self.password:
            raise ValueError(f"extension {self.number!r} has an empty password")
        if self.ha1_md5 is not None and _HA1_MD5.fullmatch(self.ha1_md5) is None:
            raise ValueError(f"extension {self.number!r}: ha1_md5 must be 32 lowercase hex digits")
        if self.ha1_sha256 is not None and _HA1_SHA256.fullmatch(self.ha1_sha256) is None:
            raise ValueError(
                f"extension {self.number!r}: ha1_sha256 must be 64 lowercase hex digits"
            )
        if self.ring_timeout < 1:
            raise ValueError(f"extension {self.number!r}: ring_timeout must be at least 1")
        if self.max_contacts < 1:
            raise ValueError(f"extension {self.number!r}: max_contacts must be at least 1")
        if self.caller_id is not None and CALLER_ID.fullmatch(self.caller_id) is None:
            raise ValueError(f"extension {self.number!r}: caller_id must be digits, optionally after +")
        if self.nat not in NAT_MODES:
            raise ValueError(f"extension {self.number!r}: nat must be one of {', '.join(NAT_MODES)}")
        if self.media_encryption not in MEDIA_ENCRYPTIONS:
            raise ValueError(f"extension {self.number!r}: media_encryption must be one of"
                             f" {', '.join(MEDIA_ENCRYPTIONS)}")

    def state_at(self, at: datetime) -> ExtensionState:
        """The extension's status at ``at`` (an aware datetime)."""
        if self.status != "active":
            return self.status
        if self.valid_from is not None and at < self.valid_from:
            return "not_yet_valid"
        if self.valid_until is not None and at >= self.valid_until:
            return "expired"
        return "active"

    def refusal_status(self, state: ExtensionState) -> int:
        """The status calls to it get in ``state`` (not active)."""
        if self.inactive_status is not None:
            return self.inactive_status
        return 404 if state == "retired" else 480

    # Pickled as the tuple of its values, as dataclasses does but without
    # looking the fields up again for every object: for 20,000 extensions
    # that lookup was half of pickling a plan in the reload child and most
    # of unpickling it in the server.
    def __getstate__(self) -> tuple[object, ...]:
        values: tuple[object, ...] = _EXTENSION_VALUES(self)
        return values

    def __setstate__(self, state: Sequence[object]) -> None:
        # Each slot's own setter: object.__setattr__ would look every name
        # up in the class first (0.075 -> 0.044 s for 20,000 extensions).
        for set_slot, value in zip(_EXTENSION_SETTERS, state, strict=True):
            set_slot(self, value)


_EXTENSION_FIELDS: Final = tuple(item.name for item in fields(Extension))
_EXTENSION_VALUES: Final = attrgetter(*_EXTENSION_FIELDS)
_EXTENSION_SETTERS: Final[tuple[Callable[[Extension, object], None], ...]] = tuple(
    Extension.__dict__[name].__set__ for name in _EXTENSION_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrarSettings:
    """Binding lifetimes for REGISTER (RFC 3261 §10.2.1.1, §10.3 step 7).

    A REGISTER asking for less than ``min_expires`` seconds is refused with
    423 Interval Too Brief and a Min-Expires header (§10.3 step 7); more than
    ``max_expires`` is shortened; no Expires at all gets ``default_expires``.
    ``nonce_lifetime`` bounds how long a digest nonce is accepted before the
    challenge is repeated with ``stale=true`` (RFC 7616 §3.3).
    """

    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    nonce_lifetime: int = 300
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    """Digest algorithms offered, most preferred first (RFC 8760 §2.4)."""

    def __post_init__(self) -> None:
        if min(self.min_expires, self.nonce_lifetime) < 1:
            raise ValueError("registrar times must be at least 1 second")
        if not self.auth_algorithms or not set(self.auth_algorithms) <= {"SHA-256", "MD5"}:
            raise ValueError("auth_algorithms must list SHA-256 and/or MD5")
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("registrar needs min_expires <= default_expires <= max_expires")


@dataclass(frozen=True, slots=True, kw_only=True)
class SecuritySettings:
    """The lock-out of guessers and the limits on unauthenticated traffic
    (pbx/security/ has the rules; docs/dialplan.md the keys).

    ``max_auth_failures`` failures for one username from one source within
    ``failure_window`` seconds block that pair for ``block_seconds``;
    failures for ``scan_usernames`` usernames from one source block the
    source. A block silences only failing requests; a blocked pair gets one
    check per ``blocked_retry_seconds``. ``targeted_failures`` failures for
    one username from anywhere are logged. A source may send
    ``unauthenticated_per_second`` requests without valid credentials (a
    burst of ``unauthenticated_burst``) before it is ignored.
    """

    outside_calls: OutsideCallLimits = OutsideCallLimits(simultaneous=4, per_minute=10)
    """The company default caps on one extension's outside calls (what an
    extension and its class of service leave unset). A person at a desk
    holds a few outside calls at once (one on hold, a consultation) and
    dials a few a minute at most; a hundred in a second is fraud."""
    max_auth_failures: int = 10
    failure_window: int = 60
    block_seconds: int = 300
    scan_usernames: int = 10
    targeted_failures: int = 50
    blocked_retry_seconds: int = 2
    unauthenticated_per_second: int = 20
    """Per source; an office of 200 phones behind one address re-registering
    once a minute needs about 7 (each REGISTER is challenged once)."""
    unauthenticated_burst: int = 400
    """Every phone of such an office booting at once: two requests each."""
    source_packets_per_second: int = 2000
    """Every datagram or TCP message from one address, before it is even
    parsed (a burst of twice as many): a flood is dropped for the cost of a
    table lookup. Trunk gateways are exempt."""
    digest_without_qop: tuple[str, ...] = ("REGISTER",)
    """Methods whose digest may leave out ``qop`` (RFC 2069, old phones)."""
    digest_nonce_per_address: bool = True
    """A digest nonce is good only from the address it was sent to
    (:mod:`pbx.registrar.auth`): forged failures cannot block someone else's
    address. ``false`` for clients whose address changes between the
    challenge and the answer (a carrier NAT that pools addresses)."""
    tcp_max_connections: int = 4000
    """TCP (and later TLS) connections accepted at once."""
    tcp_max_per_source: int = 200
    """... from one address: an office behind NAT has many phones on one."""
    tcp_message_seconds: int = 20
    """A message must be complete this long after its first byte arrived."""
    tcp_idle_seconds: int = 120
    """A connection that carries no registration is closed after this long
    without a byte from its peer."""
    tls_handshake_seconds: int = 10
    """A TLS handshake must be done this long after its connection opened."""
    sdes_over_plain_signalling: bool = False
    """Let SRTP keys (SDP a=crypto) pass between phones whose signalling is
    not TLS (:mod:`pbx.calls.media_policy`)."""
    trusted_proxies: frozenset[str] = frozenset()
    """Edge proxies (Kamailio in front of several nodes) whose requests are
    counted against the client they relayed, not against the proxy
    (:mod:`pbx.security.origin`)."""

    def __post_init__(self) -> None:
        if self.outside_calls.simultaneous is None or self.outside_calls.per_minute is None:
            raise ValueError("security outside_calls needs both simultaneous and per_minute")
        numbers = (self.max_auth_failures, self.failure_window, self.block_seconds, self.scan_usernames,
                   self.targeted_failures, self.blocked_retry_seconds, self.unauthenticated_per_second,
                   self.unauthenticated_burst, self.source_packets_per_second, self.tcp_max_connections,
                   self.tcp_max_per_source,
                   self.tcp_message_seconds, self.tcp_idle_seconds, self.tls_handshake_seconds)
        if min(numbers) < 1:
            raise ValueError("security settings must all be at least 1")
        for address in self.trusted_proxies:
            ipaddress.ip_address(address)  # raises ValueError: the loader checked the form
        if not set(self.digest_without_qop) <= {"REGISTER", "INVITE"}:
            raise ValueError("digest_without_qop lists methods: REGISTER and/or INVITE")


RFC_MIN_SE: Final = 90
"""RFC 4028 §4: no session interval (Min-SE) may be shorter than 90 s."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSettings:
    """What keeps a dead call from living for ever (the ``calls:`` section).

    Where the phones negotiate session timers (RFC 4028) the PBX relays
    them, asks for ``session_expires`` seconds when a caller that supports
    timers names none (and shortens longer requests to it), refuses an
    interval below ``min_se`` with 422, and ends the call with BYE on both
    legs once a refresh is overdue. Where they do not, an answered call
    ends after ``max_call_seconds``. ``allow_short_timers`` lets ``min_se``
    go below RFC 4028's 90 s: for tests only, phones may refuse it.
    """

    session_expires: int = 1800
    min_se: int = RFC_MIN_SE
    max_call_seconds: int = 4 * 3600
    allow_short_timers: bool = False

    def __post_init__(self) -> None:
        if min(self.session_expires, self.min_se, self.max_call_seconds) < 1:
            raise ValueError("calls settings must all be at least 1 second")
        if self.min_se < RFC_MIN_SE and not self.allow_short_timers:
            raise ValueError(f"calls min_se must be at least {RFC_MIN_SE} (RFC 4028)")
        if self.session_expires < self.min_se:
            raise ValueError("calls session_expires must not be below min_se")


PresenceVisibility = Literal["company", "department"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureSettings:
    """Limits of the everyday call features (the ``features:`` section).

    A forward that leads to another extension's forward is followed at most
    ``forward_limit`` times (a loop ends there, with 482 and a CDR saying
    so). A chat message may be ``chat_max_bytes`` long; one kept for an
    offline user is kept ``chat_retention_hours`` and at most
    ``chat_max_stored`` wait per user (the oldest go first). Presence and
    busy lamps of an extension may be watched by every extension
    (``company``) or by its own department's (``department``)."""

    forward_limit: int = 5
    chat_max_bytes: int = 4096
    chat_retention_hours: int = 168
    chat_max_stored: int = 100
    presence_visibility: PresenceVisibility = "company"
    max_subscriptions: int = 200
    """Presence and dialog subscriptions one extension may hold at once."""

    def __post_init__(self) -> None:
        if min(self.forward_limit, self.chat_max_bytes, self.chat_retention_hours, self.chat_max_stored,
               self.max_subscriptions) < 1:
            raise ValueError("features settings must all be at least 1")
        if self.presence_visibility not in ("company", "department"):
            raise ValueError("presence_visibility must be company or department")


_V = TypeVar("_V")


def _frozen_mapping(items: Mapping[str, _V]) -> Mapping[str, _V]:
    return items if isinstance(items, MappingProxyType) else MappingProxyType(dict(items))


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialplan:
    """Everything loaded from a dialplan file and its includes."""

    domain: str
    """SIP domain of this PBX and the digest realm (``pbx.example.com``)."""
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    calls: CallSettings = field(default_factory=CallSettings)
    """Session timers and the maximum call duration."""
    features: FeatureSettings = field(default_factory=FeatureSettings)
    """Forwarding, chat and presence limits."""
    departments: Mapping[str, Department] = field(default_factory=dict)
    """Departments by key; read-only after construction."""
    extensions: Mapping[str, Extension] = field(default_factory=dict)
    """Extensions by number; read-only after construction."""
    trunks: Mapping[str, Trunk] = field(default_factory=dict)
    """SIP trunks to providers by key; read-only after construction."""
    timezone: tzinfo = timezone.utc
    """Where the office is: schedules without their own time zone use it,
    and ``pbx explain --at`` reads local times in it."""
    call_classes: Mapping[str, str] = field(default_factory=lambda: dict(BUILTIN_CLASSES))
    """Every call class (built-in and the dialplan's own) with its description."""
    number_plans: Mapping[str, NumberPlan] = field(default_factory=dict)
    number_plan: str | None = None
    """Default number plan; None with exactly one plan means that one."""
    number_lists: Mapping[str, NumberList] = field(default_factory=dict)
    blacklist: tuple[NumberList, ...] = ()
    """Lists of numbers nobody may dial (emergency numbers excepted)."""
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    classes_of_service: Mapping[str, ClassOfService] = field(default_factory=dict)
    feature_codes: Mapping[str, str] = field(default_factory=dict)
    """Numbers reserved for phone features, with what they are for."""
    routes: tuple[Route, ...] = ()
    """Outbound routes in order; the first that applies wins."""
    inbound: Mapping[str, InboundTarget] = field(default_factory=dict)
    """DIDs as the provider sends them -> where the call goes."""
    groups: Mapping[str, ShortNumberGroup] = field(default_factory=dict)
    """Short-number groups by key, in file order (the order a caller's
    groups are tried in); read-only after construction."""
    hunt_groups: Mapping[str, HuntGroup] = field(default_factory=dict)
    """Hunt groups by number, in file order; read-only after construction."""
    ivr_menus: Mapping[str, IvrMenu] = field(default_factory=dict)
    """Auto attendant menus by key; read-only after construction."""
    conferences: Mapping[str, Conference] = field(default_factory=dict)
    """Meet-me rooms by key; read-only after construction."""
    parking: Parking | None = None
    """Call park slots; None: no call park (``*70`` is refused)."""
    media: MediaSettings = field(default_factory=MediaSettings)
    account_codes: AccountCodeSettings = field(default_factory=AccountCodeSettings)
    """Account code prompts: the company default mode, code length, dial
    prefix, attempts, timeouts and lock-out (:mod:`pbx.routing.account_codes`)."""
    billing: Billing = field(default_factory=Billing)
    """Currency and tariffs: what each outside call costs."""
    budgets: BudgetSettings = field(default_factory=BudgetSettings)
    """Spending limits per extension, department, project and account code."""
    incoming: Screening = field(default_factory=Screening)
    """Company-wide black and white lists for callers from outside."""
    did_incoming: Mapping[str, Screening] = field(default_factory=dict)
    """Per inbound number (as in ``inbound``): its lists for callers."""
    ldap: LdapSettings | None = None
    """Where employees are read from (``pbx ldap sync``); None: no directory."""
    voicemail: VoicemailPlan = field(default_factory=VoicemailPlan)
    """Mailboxes: on for every extension unless turned off, and their settings."""
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    """Which calls are recorded, and where the files go (:mod:`pbx.recording.policy`)."""
    places: RulePlaces = field(default_factory=RulePlaces)
    """Rule name (as in :class:`~pbx.routing.steps.Step`) -> ``file:line:col``."""
    sources: tuple[str, ...] = ()
    """Files the plan was read from, root file first, in load order."""
    source_folders: tuple[str, ...] = ()
    """Folders included whole: a ``.yaml`` file added to or removed from one
    changes the plan, so the reloader watches their listing."""

    def __post_init__(self) -> None:
        if not self.domain:
            raise ValueError("dialplan needs a domain")
        # Store read-only views so a shared plan cannot be changed under a caller.
        object.__setattr__(self, "departments", _frozen_mapping(self.departments))
        object.__setattr__(self, "extensions", _frozen_mapping(self.extensions))
        object.__setattr__(self, "trunks", _frozen_mapping(self.trunks))
        for name in ("call_classes", "number_plans", "number_lists", "calendars", "schedules",
                     "classes_of_service", "feature_codes", "inbound", "groups", "hunt_groups", "ivr_menus",
                     "conferences", "did_incoming"):
            object.__setattr__(self, name, _frozen_mapping(getattr(self, name)))
        self._check_routing()
        for key, department in self.departments.items():
            if key != department.key:
                raise ValueError(f"department stored under {key!r} has key {department.key!r}")
        for number, extension in self.extensions.items():
            if number != extension.number:
                raise ValueError(f"extension stored under {number!r} has number {extension.number!r}")
            if extension.department not in self.departments:
                raise ValueError(
                    f"extension {number!r} has unknown department {extension.department!r}"
                )

    def _check_routing(self) -> None:
        # The loader reports all of these with places first; this keeps a
        # plan built by hand (in tests) just as consistent.
        def known(kind: str, key: str | None, table: Mapping[str, object], owner: str) -> None:
            if key is not None and key not in table:
                raise ValueError(f"{owner} names unknown {kind} {key!r}")

        known("number plan", self.number_plan, self.number_plans, "the dialplan")
        for department in self.departments.values():
            owner = f"department {department.key!r}"
            known("class of service", department.class_of_service, self.classes_of_service, owner)
            known("number plan", department.number_plan, self.number_plans, owner)
        for extension in self.extensions.values():
            if extension.class_of_service is not None:  # (not worded for each of 20,000 that name none)
                known("class of service", extension.class_of_service, self.classes_of_service,
                      f"extension {extension.number!r}")
        for route in self.routes:
            known("trunk", route.trunk, self.trunks, f"route {route.name!r}")
        for did, target in self.inbound.items():
            current: InboundTarget | None = target
            while current is not None:
                known("extension", current.extension, self.extensions, f"inbound number {did!r}")
                known("hunt group", current.hunt_group, self.hunt_groups, f"inbound number {did!r}")
                known("menu", current.menu, self.ivr_menus, f"inbound number {did!r}")
                known("conference room", current.conference, self.conferences, f"inbound number {did!r}")
                current = current.otherwise
        for menu in self.ivr_menus.values():
            known("menu", menu.closed, self.ivr_menus, f"menu {menu.key!r}")
            known("class of service", menu.class_of_service, self.classes_of_service, f"menu {menu.key!r}")
            known("department", menu.department, self.departments, f"menu {menu.key!r}")
            for rule, destination in menu.destinations():
                table: Mapping[str, object] | None = {"extension": self.extensions, "menu": self.ivr_menus,
                                                      "hunt_group": self.hunt_groups}.get(destination.kind)
                if table is not None:
                    known(destination.kind.replace("_", " "), destination.value, table, rule)
        for group in self.groups.values():
            for member in group.members.values():
                known("extension", member.extension, self.extensions,
                      f"member {member.short!r} of group {group.key!r}")
        for hunt in self.hunt_groups.values():
            owner = f"hunt group {hunt.number!r}"
            for agent in hunt.members:
                known("extension", agent.extension, self.extensions, owner)
            for overflow in (hunt.overflow.get(condition) for condition in CONDITIONS):
                if overflow is not None:
                    known("extension", overflow.extension, self.extensions, owner)
                    known("hunt group", overflow.hunt_group, self.hunt_groups, owner)
            known("hunt group", hunt.otherwise, self.hunt_groups, owner)
            known("department", hunt.department, self.departments, owner)
            known("class of service", hunt.class_of_service, self.classes_of_service, owner)
        for profile in self.classes_of_service.values():
            for call_class in profile.allow | profile.deny:
                known("call class", call_class, self.call_classes, f"class of service {profile.key!r}")
        for number_plan in self.number_plans.values():
            for entry in number_plan.entries:
                known("call class", entry.call_class, self.call_classes, entry.rule)

    def extension(self, number: str) -> Extension | None:
        """The extension with this number, or None."""
        return self.extensions.get(number)

    def menu_at(self, number: str) -> IvrMenu | None:
        """The menu reached by internal ``number``, or None."""
        for menu in self.ivr_menus.values():
            if menu.number == number:
                return menu
        return None

    def may_be_emergency(self, number: str) -> bool:
        """True if any number plan classes ``number`` as an emergency number
        (for a decision made before the caller, and so their plan, is known)."""
        return any((entry := table.classify(number)) is not None and entry.call_class == EMERGENCY
                   for table in self.number_plans.values())

    def conference_at(self, number: str) -> Conference | None:
        """The meet-me room reached by internal ``number``, or None."""
        return next((room for room in self.conferences.values() if room.number == number), None)

    def language_for(self, person: Extension | None) -> str:
        """The language the PBX speaks to ``person`` (a trunk caller: the plan's)."""
        if person is not None:
            department = self.departments.get(person.department)
            found = person.language or (department.language if department is not None else None)
            if found is not None:
                return found
        return self.media.language

    def music_on_hold(self, *people: Extension | None, department: str | None = None) -> str | None:
        """The music a party on hold hears: ``department``'s (a hunt
        group's), else that of the first of ``people`` (the holder, then
        the held) whose department has its own, else the plan's; None: the
        shipped tune."""
        keys = [department, *(person.department for person in people if person is not None)]
        for key in keys:
            found = self.departments.get(key) if key is not None else None
            if found is not None and found.music_on_hold is not None:
                return found.music_on_hold
        return self.media.music_on_hold

    def account_code_mode(self, person: Extension) -> tuple[AccountCodeMode, str]:
        """When ``person`` is asked for an account code, and the rule that says so."""
        if person.account_codes is not None:
            return person.account_codes, f"extensions.{person.number}.account_codes"
        department = self.departments.get(person.department)
        if department is not None and department.account_codes is not None:
            return department.account_codes, f"departments.{department.key}.account_codes"
        return self.account_codes.mode, "account_codes.mode"

    def number_plan_for(self, person: Extension) -> NumberPlan | None:
        """The number plan that classifies what ``person`` dials."""
        key = self.departments[person.department].number_plan or self.number_plan
        if key is not None:
            return self.number_plans[key]
        if len(self.number_plans) == 1:
            return next(iter(self.number_plans.values()))
        return None

    def route_for(self, person: Extension, number: str, call_class: str | None) -> Route | None:
        """The first outbound route that applies to ``person`` dialling ``number``."""
        for route in self.routes:
            if route.applies(number, call_class, person.department):
                return route
        return None

    def caller_id_for(self, person: Extension, trunk: Trunk) -> tuple[str | None, str]:
        """The number presented for ``person`` through ``trunk``, and whose it is."""
        if person.caller_id is not None:
            return person.caller_id, f"extension {person.number}"
        department = self.departments[person.department]
        if department.caller_id is not None:
            return department.caller_id, f"department {department.key}"
        if trunk.caller_id is not None:
            return trunk.caller_id, f"trunk {trunk.key}"
        return None, f"none set (trunk {trunk.key} decides)"

    def place(self, rule: str) -> str | None:
        """``file:line:col`` of a rule, or of the nearest enclosing one."""
        while rule:
            found = self.places.get(rule)
            if found is not None:
                return found
            cut = max(rule.rfind("."), rule.rfind("["))
            rule = rule[:cut] if cut > 0 else ""
        return None
