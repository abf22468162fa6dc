"""The trunk registration client on a real event loop and UDP socket, with
SIPp playing the provider's registrar (sipp-scenarios/provider_uas.xml).

SIPp checks every REGISTER's digest itself (verifyauth); this test checks
what came of it: registered, refreshed before expiry, removed on stop, and
a wrong password backing off instead of looping.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from pbx.routing.dialplan import Dialplan
from pbx.routing.trunk_config import Gateway, Trunk
from pbx.sip.address import Peer
from pbx.sip.endpoint import SipEndpoint
from pbx.transport.udp import UdpTransport, open_udp
from pbx.trunks.client import TrunkRuntime
from pbx.trunks.registration import Backoff

from .provider import Sipp

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]

USER, PASSWORD = "02873000000", "trunk-secret"


def start_provider(log_dir: Path, *, grant: int) -> Sipp:
    """SIPp as the provider's registrar; it exits (0 when every message was
    as expected) once the one registration is removed."""
    return Sipp("provider_uas", log_dir, keys={"user": USER, "pass": PASSWORD, "grant": str(grant)})


@pytest.fixture
def provider_factory(tmp_path: Path) -> Iterator[list[Sipp]]:
    started: list[Sipp] = []
    yield started
    for provider in started:
        provider.stop()


class Driver:
    """The PBX's driver in miniature: one UDP socket, the endpoint, the
    trunk runtime, and the endpoint's timer."""

    def __init__(self, plan: Dialplan, backoff: Backoff) -> None:
        self.plan = plan
        self.endpoint = SipEndpoint()
        self.backoff = backoff
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.udp: UdpTransport = await open_udp("127.0.0.1", 0, self._on_data)
        self.runtime = TrunkRuntime(endpoint=self.endpoint, local_address=lambda _: self.udp.local,
                                    kick=self.flush, backoff=self.backoff)
        await self.runtime.start(self.plan)

    def _on_data(self, data: bytes, source: Peer) -> None:
        self.endpoint.receive(data, source, self.loop.time())
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self.endpoint.on_timer(self.loop.time())
        self.flush()

    def flush(self) -> None:
        while True:
            sends, events = self.endpoint.drain()
            for send in sends:
                self.udp.send(send.data, send.dest)
            if not events:
                break
            for event in events:
                self.runtime.on_event(event, self.loop.time())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.endpoint.next_deadline()
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    async def stop(self) -> None:
        await self.runtime.stop(timeout=3.0)
        if self._timer is not None:
            self._timer.cancel()
        self.udp.close()


def plan_with(port: int, password: str = PASSWORD) -> Dialplan:
    trunk = Trunk(key="viettel", gateways=(Gateway(host="127.0.0.1", port=port),), username=USER,
                  password=password, domain="sip.provider.example", register=True, register_expires=300)
    return Dialplan(domain="pbx.example.com", trunks={"viettel": trunk})


async def wait_until(predicate: object, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    assert callable(predicate)
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


def test_registers_refreshes_and_unregisters(tmp_path: Path, provider_factory: list[Sipp]) -> None:
    # The registrar grants 3 s: the client must refresh after 1.5 s.
    provider = start_provider(tmp_path, grant=3)
    provider_factory.append(provider)

    async def scenario() -> list[MutableMapping[str, Any]]:
        driver = Driver(plan_with(provider.port), Backoff(first=1, factor=2, cap=4))
        with structlog.testing.capture_logs() as logs:
            await asyncio.sleep(0.2)   # let SIPp bind
            await driver.start()
            assert await wait_until(lambda: driver.runtime.registered().get("viettel"), 5.0), logs
            # Two refreshes, each before the 3 s binding ran out.
            assert await wait_until(lambda: sum(1 for e in logs if e["event"] == "trunk_registered") >= 3, 6.0), logs
            assert driver.runtime.registered() == {"viettel": True}
            await driver.stop()
        return logs

    logs = asyncio.run(scenario())
    registered = [e for e in logs if e["event"] == "trunk_registered"]
    assert all(e["expires"] == 3 and e["refresh_in"] == 1.5 for e in registered), registered
    assert [e for e in logs if e["event"] == "trunk_unregistered"] == [
        {"event": "trunk_unregistered", "log_level": "info", "trunk": "viettel", "confirmed": True, "status": 200}]
    assert not [e for e in logs if e["event"] == "trunk_registration_failed"], logs
    assert provider.process.wait(timeout=10) == 0   # the scenario ended: every message as expected

    registers = [m.text for m in provider.requests("REGISTER")]
    # Challenge, credentials, then at least two refreshes and the removal.
    assert len(registers) >= 5, registers
    assert "Authorization:" not in registers[0]
    assert all("Authorization: Digest" in r for r in registers[1:])
    assert all(f"From: <sip:{USER}@sip.provider.example>" in r for r in registers)
    assert len({re.search(r"Call-ID: (\S+)", r).group(1) for r in registers}) == 1  # type: ignore[union-attr]
    assert "Expires: 0" in registers[-1] and all("Expires: 300" in r for r in registers[:-1])
    assert PASSWORD not in "".join(str(e) for e in logs)


def test_wrong_password_backs_off(tmp_path: Path, provider_factory: list[Sipp]) -> None:
    provider = start_provider(tmp_path, grant=60)
    provider_factory.append(provider)

    async def scenario() -> list[MutableMapping[str, Any]]:
        driver = Driver(plan_with(provider.port, password="wrong-password"), Backoff(first=1, factor=2, cap=8))
        with structlog.testing.capture_logs() as logs:
            await asyncio.sleep(0.2)
            await driver.start()
            # Attempts at 0, 1 and 3 s (back-off 1, then 2): three failures.
            assert await wait_until(
                lambda: sum(1 for e in logs if e["event"] == "trunk_registration_failed") >= 3, 6.0), logs
            assert driver.runtime.registered() == {"viettel": False}
            await driver.stop()
        return logs

    logs = asyncio.run(scenario())
    failures = [e for e in logs if e["event"] == "trunk_registration_failed"]
    assert [(e["reason"], e["status"], e["failures"], e["retry_in"]) for e in failures[:3]] == [
        ("auth_rejected", 401, 1, 1.0), ("auth_rejected", 401, 2, 2.0), ("auth_rejected", 401, 3, 4.0)]
    # Two REGISTERs per attempt, no tight loop; nothing to remove at the end.
    assert len(provider.requests("REGISTER")) == 2 * len(failures)
    assert not [e for e in logs if e["event"] == "trunk_unregistered"]


def test_reload_without_the_trunk_removes_its_registration(tmp_path: Path, provider_factory: list[Sipp]) -> None:
    provider = start_provider(tmp_path, grant=300)
    provider_factory.append(provider)

    async def scenario() -> list[MutableMapping[str, Any]]:
        driver = Driver(plan_with(provider.port), Backoff(first=1, factor=2, cap=4))
        with structlog.testing.capture_logs() as logs:
            await asyncio.sleep(0.2)
            await driver.start()
            assert await wait_until(lambda: driver.runtime.registered().get("viettel"), 5.0), logs
            assert len(driver.runtime.sources) == 1
            # The admin removes the trunk: its binding goes, and so does its
            # gateway from the trunk sources.
            driver.runtime.use_plan(Dialplan(domain="pbx.example.com"))
            assert await wait_until(lambda: any(e["event"] == "trunk_unregistered" for e in logs), 5.0), logs
            assert driver.runtime.registered() == {} and len(driver.runtime.sources) == 0
            await driver.stop()
        return logs

    logs = asyncio.run(scenario())
    (removed,) = [e for e in logs if e["event"] == "trunk_unregistered"]
    assert removed["confirmed"] is True
    assert provider.process.wait(timeout=10) == 0
    assert provider.requests("REGISTER")[-1].header("Expires") == "0"
