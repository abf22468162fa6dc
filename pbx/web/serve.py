"""Running the web app inside ``pbx serve``: uvicorn on the SIP server's
own event loop, the webhook sender, and the periodic directory sync.

One loop serves SIP and HTTP. That is safe because the HTTP side never
blocks it: database queries, file edits, password hashing and LDAP run in
threads, and what runs on the loop copies a few numbers or lists. The PBX
keeps its own signal handling (uvicorn would install its own otherwise);
stopping the PBX stops the web server first. bench/web_load.py measures
SIP response times with and without API load.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import uvicorn

from pbx.web.app import create_app
from pbx.web.context import WebContext
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


class _InLoopServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The PBX owns SIGTERM, SIGINT and SIGHUP; it stops us itself.
        yield


@dataclass
class RunningWeb:
    server: _InLoopServer
    task: asyncio.Task[None]
    webhooks: WebhookSender
    ldap: asyncio.Task[None] | None

    async def stop(self) -> None:
        if self.ldap is not None:
            self.ldap.cancel()
        self.server.should_exit = True
        try:
            await asyncio.wait_for(self.task, 5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self.task.cancel()
        await asyncio.to_thread(self.webhooks.close, 2.0)


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
    ctx = WebContext(engine=server.engine, store=store, dialplan_path=reloader.path, plan=lambda: reloader.plan,
                     reload=reloader.reload, live=ServerLive(server), secure_cookies=http.secure_cookies,
                     metrics_text=exposition(server.counters, lambda: _snapshot(server)))
    config = uvicorn.Config(create_app(ctx), loop="none", lifespan="off", log_config=None, access_log=False,
                            ssl_certfile=str(http.certificate) if http.certificate else None,
                            ssl_keyfile=str(http.key) if http.key else None, server_header=False)
    web = _InLoopServer(config)
    sock = _bind(http.host, http.port)
    loop = asyncio.get_running_loop()
    task = loop.create_task(web.serve(sockets=[sock]))
    while not web.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # raises what stopped it
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
    ldap = loop.create_task(_ldap_every(server, reloader)) if reloader.plan.ldap is not None else None
    log.info("web_started", address=f"{scheme}://{shown}:{port}/")
    return RunningWeb(server=web, task=task, webhooks=sender, ldap=ldap)


async def _ldap_every(server: Server, reloader: DialplanReloader) -> None:
    from pbx.ldap.run import SyncError, sync_directory
    from pbx.ldap.sync import describe

    while True:
        settings = reloader.plan.ldap
        interval = settings.interval if settings is not None else 0
        if interval <= 0:
            await asyncio.sleep(60)  # the setting may be turned on by a reload
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
            for number, _ in applied.passwords:
                # The password is not logged: the admin sets a new one for
                # the user through the API or the console.
                log.warning("ldap_extension_created", number=number, note="set its SIP password in the console")
        log.info("ldap_sync_done", changes=len(result.planned.changes), skipped=len(result.planned.skipped))
