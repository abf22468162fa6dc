"""Trunks at run time, on the event loop: one registration client per trunk
with ``register: true``, and the table of trunk sources the call controller
consults.

The glue stays thin (STYLE §5): the machines in
:mod:`pbx.trunks.registration` decide, this module sends what they say
through the shared SIP endpoint, routes their transactions' responses back,
arms one timer per registration at its ``deadline()`` and logs their facts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping

import structlog

from pbx.routing.dialplan import Dialplan
from pbx.routing.trunk_config import Trunk
from pbx.sip.endpoint import SipEndpoint
from pbx.sip.events import ResponseReceived, TimedOut, TransactionKey, TransportFailed
from pbx.trunks.registration import (
    Backoff,
    Effect,
    ExpiresRaised,
    Registered,
    RegistrationFailed,
    RegistrationState,
    SendRegister,
    TrunkRegistration,
    Unregistered,
)
from pbx.trunks.sources import TrunkSources, normalise_host

log = structlog.get_logger("pbx.trunks")

LocalAddress = Callable[[str], tuple[str, int]]


async def resolve_gateways(trunks: Iterable[Trunk], known: Mapping[str, tuple[str, ...]] | None = None
                           ) -> dict[str, tuple[str, ...]]:
    """IP addresses of every gateway given by name (IP literals are left
    out). A name that does not resolve is logged and left out, so its
    gateway is tried by name and never matches as a source."""
    loop = asyncio.get_running_loop()
    resolved = dict(known or {})
    for trunk in trunks:
        for gateway in trunk.gateways:
            host = gateway.host
            if host in resolved or _is_ip(host):
                continue
            try:
                infos = await loop.getaddrinfo(host, gateway.port, type=socket.SOCK_DGRAM)
            except OSError as err:
                log.warning("trunk_gateway_unresolved", trunk=trunk.key, host=host, error=str(err))
                continue
            addresses = tuple(dict.fromkeys(normalise_host(str(info[4][0])) for info in infos))
            if addresses:
                resolved[host] = addresses
    return resolved


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class TrunkRuntime:
    """Registrations to providers and the trunk source table."""

    def __init__(
        self,
        *,
        endpoint: SipEndpoint,
        local_address: LocalAddress,
        kick: Callable[[], None],
        backoff: Backoff = Backoff(),
    ) -> None:
        self.endpoint = endpoint
        self.local_address = local_address
        self.kick = kick
        self.backoff = backoff
        self.sources = TrunkSources()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resolved: dict[str, tuple[str, ...]] = {}
        self._active: dict[str, TrunkRegistration] = {}
        self._retiring: set[TrunkRegistration] = set()
        self._by_key: dict[TransactionKey, TrunkRegistration] = {}
        self._timers: dict[TrunkRegistration, asyncio.TimerHandle] = {}
        self._listeners: list[Callable[[TrunkSources], None]] = []

    def on_sources(self, listener: Callable[[TrunkSources], None]) -> None:
        """Call ``listener`` with the source table now and whenever it changes."""
        self._listeners.append(listener)
        listener(self.sources)

    # ------------------------------------------------------------ life cycle

    async def start(self, plan: Dialplan) -> None:
        self._loop = asyncio.get_running_loop()
        self._resolved = await resolve_gateways(plan.trunks.values())
        self._apply(plan)

    def use_plan(self, plan: Dialplan) -> None:
        """A reloaded dialplan: new source table, registrations started for
        new or changed trunks and removed for dropped ones. Host names not
        seen before are resolved in the background."""
        self._apply(plan)
        if self._loop is not None and any(
                g.host not in self._resolved and not _is_ip(g.host) for t in plan.trunks.values() for g in t.gateways):
            self._loop.create_task(self._resolve_then_apply(plan))

    async def _resolve_then_apply(self, plan: Dialplan) -> None:
        self._resolved = await resolve_gateways(plan.trunks.values(), self._resolved)
        self._apply(plan)

    def _apply(self, plan: Dialplan) -> None:
        self.sources = TrunkSources(plan.trunks, self._resolved)
        for listener in self._listeners:
            listener(self.sources)
        wanted = {key: trunk for key, trunk in plan.trunks.items() if trunk.register}
        for key, registration in list(self._active.items()):
            if wanted.get(key) != registration.trunk:
                del self._active[key]
                self._retire(registration)
        for key, trunk in wanted.items():
            if key not in self._active:
                registration = TrunkRegistration(trunk, local_address=self.local_address, backoff=self.backoff)
                self._active[key] = registration
                log.info("trunk_registration_starting", trunk=key, gateway=_gateway_text(registration))
                self._run(registration, registration.start(self._now()))
        self.kick()

    def _retire(self, registration: TrunkRegistration) -> None:
        effects = registration.stop(self._now())
        if registration.state is not RegistrationState.STOPPED:
            self._retiring.add(registration)
        self._run(registration, effects)

    async def stop(self, timeout: float = 3.0) -> None:
        """Remove every binding (Expires: 0) and wait up to ``timeout``
        seconds for the registrars to confirm."""
        for key in list(self._active):
            self._retire(self._active.pop(key))
        self.kick()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._retiring and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for registration in self._retiring:
            log.warning("trunk_unregister_unconfirmed", trunk=registration.trunk.key)
        self._retiring.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # ------------------------------------------------------------ queries

    def registered(self) -> dict[str, bool]:
        """Trunk key -> whether its binding is in force now."""
        now = self._now()
        return {key: registration.is_registered(now) for key, registration in self._active.items()}

    # ------------------------------------------------------------ input

    def on_event(self, event: object, now: float) -> bool:
        """Take the events of our REGISTER transactions; False for others."""
        if isinstance(event, ResponseReceived):
            registration = self._by_key.get(event.key)
            if registration is None:
                return False
            if event.response.status >= 200:
                del self._by_key[event.key]
            self._run(registration, registration.on_response(event.response, now))
            return True
        if isinstance(event, (TimedOut, TransportFailed)):
            registration = self._by_key.pop(event.key, None)
            if registration is None:
                return False
            self._run(registration, registration.on_timeout(now))
            return True
        return False

    def _on_timer(self, registration: TrunkRegistration) -> None:
        self._timers.pop(registration, None)
        try:
            self._run(registration, registration.on_timer(self._now()))
        except Exception:  # our bug: log it, keep the loop serving calls
            log.exception("trunk_timer_failed", trunk=registration.trunk.key)
        self.kick()

    # ------------------------------------------------------------ effects

    def _run(self, registration: TrunkRegistration, effects: list[Effect]) -> None:
        trunk = registration.trunk.key
        for effect in effects:
            if isinstance(effect, SendRegister):
                # Only the newest REGISTER's outcome counts: an older one
                # timing out (e.g. the REGISTER a stop() overtook) must not
                # be taken for the newest's.
                for stale in [k for k, r in self._by_key.items() if r is registration]:
                    del self._by_key[stale]
                dest = self.sources.peer(effect.gateway)
                key = self.endpoint.send_request(effect.request, dest, self._now())
                self._by_key[key] = registration
            elif isinstance(effect, Registered):
                log.info("trunk_registered", trunk=trunk, gateway=_gateway_text(registration),
                         expires=effect.expires, refresh_in=round(effect.refresh_at - self._now(), 1))
            elif isinstance(effect, RegistrationFailed):
                gateway = effect.gateway
                log.warning("trunk_registration_failed", trunk=trunk, reason=effect.reason, status=effect.status,
                            gateway=f"{gateway.transport}:{gateway.host}:{gateway.port}",
                            failures=effect.failures, retry_in=round(effect.retry_at - self._now(), 1))
            elif isinstance(effect, ExpiresRaised):
                log.info("trunk_registration_expires_raised", trunk=trunk, expires=effect.expires)
            elif isinstance(effect, Unregistered):
                log.info("trunk_unregistered", trunk=trunk, confirmed=effect.confirmed, status=effect.status)
        if registration.state is RegistrationState.STOPPED:
            self._retiring.discard(registration)
        self._arm(registration)

    def _arm(self, registration: TrunkRegistration) -> None:
        timer = self._timers.pop(registration, None)
        if timer is not None:
            timer.cancel()
        deadline = registration.deadline()
        if deadline is not None and self._loop is not None:
            self._timers[registration] = self._loop.call_at(deadline, self._on_timer, registration)

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0


def _gateway_text(registration: TrunkRegistration) -> str:
    gateway = registration.gateway
    return f"{gateway.transport}:{gateway.host}:{gateway.port}"
