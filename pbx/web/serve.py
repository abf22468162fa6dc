"""Running the web app inside ``pbx serve``: uvicorn in a thread of its
own, the webhook sender, and the periodic directory sync.

The HTTP side has its own event loop in its own thread, so parsing
requests, checking them and rendering JSON and pages never runs on the SIP
loop. What must be read where the SIP state lives (registrations, calls,
blocks, the metrics' numbers) or done there (a dialplan reload) is handed
to the SIP loop as a small job and awaited (:class:`SipLoopBridge`); each
job copies a few numbers or lists. Database queries, file edits, password
hashing and LDAP run in the web side's worker threads. The two threads
still share the GIL (the server sets a 1 ms switch interval); the SIP
loop's worst case is bounded by that, not by a request's length.
bench/web_load.py measures OPTIONS round trips with and without API load.
The PBX keeps its own signal handling; stopping it stops the web server
first.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
import uvicorn

from pbx.ldap.passwords import PendingPasswords
from pbx.store.code_key import load_code_key
from pbx.store.codes import CodeStore
from pbx.web.app import create_app
from pbx.web.context import BlockView, CallView, RegistrationView, WebContext
from pbx.web.live import ServerLive
from pbx.web.metrics import Snapshot, exposition
from pbx.web.store import WebStore
from pbx.web.webhook import WebhookSender

if TYPE_CHECKING:
    from pbx.server.app import Server
    from pbx.server.reload import DialplanReloader

log = structlog.get_logger("pbx.web")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOptions:
    host: str
    port: int
    secure_cookies: bool = True
    certificate: Path | None = None
    key: Path | None = None
    metrics_open_on_loopback: bool = False


class _InLoopServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The PBX owns SIGTERM, SIGINT and SIGHUP; it stops us itself.
        yield


T = TypeVar("T")


class SipLoopBridge:
    """Runs small jobs on the SIP loop for the web thread, and waits."""

    TIMEOUT = 5.0

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the SIP loop; from another thread only."""
        async def run() -> T:
            return job()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(self.TIMEOUT)

    async def await_on_sip(self, job: Callable[[], Awaitable[T]]) -> T:
        """Await ``job()`` on the SIP loop, from the web loop."""
        async def run() -> T:
            return await job()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))


class BridgedLive:
    """:class:`ServerLive`, read on the SIP loop for the web thread."""

    def __init__(self, live: ServerLive, bridge: SipLoopBridge) -> None:
        self.live, self.bridge = live, bridge

    def registrations(self) -> list[RegistrationView]:
        return self.bridge.call(self.live.registrations)

    def calls(self) -> list[CallView]:
        return self.bridge.call(self.live.calls)

    def blocks(self) -> list[BlockView]:
        return self.bridge.call(self.live.blocks)

    def sockets_bound(self) -> bool:
        return self.bridge.call(self.live.sockets_bound)


@dataclass
class RunningWeb:
    server: _InLoopServer
    thread: threading.Thread
    webhooks: WebhookSender
    ldap: asyncio.Task[None] | None

    async def stop(self) -> None:
        if self.ldap is not None:
            self.ldap.cancel()
        self.server.should_exit = True
        await asyncio.to_thread(self.thread.join, 5.0)
        await asyncio.to_thread(self.webhooks.close, 2.0)


def new_loop() -> Callable[[Coroutine[Any, Any, None]], None]:
    """How the web thread runs its loop: uvloop, as the SIP side does."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run
    return uvloop.run


def _snapshot(server: Server) -> Snapshot:
    calls = server.calls
    return Snapshot(
        registrations=len(server.service.registrar.table), calls_in_progress=calls.active if calls else 0,
        retransmissions=server.endpoint.retransmissions, cdr_queue=server.writer.stats().queued,
        blocks=len(server.security.lockout.blocks(time.time())), lockouts_total=server.security.blocks_set)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def start_web(server: Server, reloader: DialplanReloader, http: HttpOptions) -> RunningWeb:
    store = WebStore(server.engine)
    password = await asyncio.to_thread(store.ensure_admin, datetime.now(UTC))
    loop = asyncio.get_running_loop()
    bridge = SipLoopBridge(loop)

    async def reload(trigger: str) -> bool:
        return await bridge.await_on_sip(lambda: reloader.reload(trigger))

    code_key = await asyncio.to_thread(load_code_key)
    pending = PendingPasswords()
    ctx = WebContext(pending_passwords=pending, engine=server.engine, store=store, dialplan_path=reloader.path, plan=lambda: reloader.plan,
                     reload=reload, live=BridgedLive(ServerLive(server), bridge), secure_cookies=http.secure_cookies,
                     metrics_text=exposition(server.counters, lambda: bridge.call(lambda: _snapshot(server))),
                     metrics_open_on_loopback=http.metrics_open_on_loopback, codes=CodeStore(server.engine, code_key))
    config = uvicorn.Config(create_app(ctx), loop="none", lifespan="off", log_config=None, access_log=False,
                            ssl_certfile=str(http.certificate) if http.certificate else None,
                            ssl_keyfile=str(http.key) if http.key else None, server_header=False)
    web = _InLoopServer(config)
    sock = _bind(http.host, http.port)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            new_loop()(web.serve(sockets=[sock]))
        except BaseException as err:  # reported to start_web, or logged once running
            failed.append(err)
            log.exception("web_server_failed")

    thread = threading.Thread(target=run, name="pbx-web", daemon=True)
    thread.start()
    while not web.started and thread.is_alive():
        await asyncio.sleep(0.01)
    if failed:
        raise failed[0]
    host, port = sock.getsockname()[:2]
    scheme = "https" if http.certificate else "http"
    shown = f"[{host}]" if ":" in host else host
    print(f"web console {scheme}://{shown}:{port}/", flush=True)
    if password is not None:
        # Printed, never logged: the one time anyone sees it.
        print(f"web console admin account: user admin, one-time password {password} "
              "(shown only now; make your own users and keep this safe)", flush=True)
    sender = WebhookSender(store.webhooks)
    server.recorder.on_ended.append(sender.call_ended)
    # Started with or without an ldap: section: a reload may add one.
    ldap = loop.create_task(_ldap_every(server, reloader, pending))
    log.info("web_started", address=f"{scheme}://{shown}:{port}/")
    return RunningWeb(server=web, thread=thread, webhooks=sender, ldap=ldap)


LDAP_OFF_POLL = 5.0
"""Seconds between looks at the plan while the periodic sync is off."""


async def _ldap_every(server: Server, reloader: DialplanReloader, pending: PendingPasswords) -> None:
    from pbx.ldap.run import SyncError, sync_directory
    from pbx.ldap.sync import describe

    while True:
        settings = reloader.plan.ldap
        interval = settings.interval if settings is not None else 0
        if interval <= 0:
            await asyncio.sleep(LDAP_OFF_POLL)  # a reload may turn it on
            continue
        await asyncio.sleep(interval)
        try:
            result = await asyncio.to_thread(sync_directory, reloader.path, dry_run=False, engine=server.engine)
        except SyncError as err:
            log.error("ldap_sync_failed", problem=str(err), problems=[str(p) for p in err.problems])
            continue
        except Exception:
            log.exception("ldap_sync_failed")
            continue
        applied = result.applied
        if applied is not None:
            await reloader.reload("ldap")
            for change in applied.applied:
                log.info("ldap_change", change=describe(change))
            for number, password in applied.passwords:
                # Never logged: held in memory for an admin to collect once.
                pending.add(number, password, time.monotonic())
                log.warning("ldap_extension_created", number=number,
                            note="collect its SIP password: POST /api/dialplan/ldap-sync/passwords")
        log.info("ldap_sync_done", changes=len(result.planned.changes), skipped=len(result.planned.skipped))
