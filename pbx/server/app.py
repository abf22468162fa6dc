"""Composition root: config, store, SIP core, transports, the event loop.

The asyncio driver stays thin (STYLE §5): bytes from a socket go into the
endpoint with ``loop.time()``, then ``_flush`` writes what the endpoint
wants sent, hands events to the service and re-arms the one timer at the
endpoint's next deadline.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import structlog
from sqlalchemy import Connection, Engine

from pbx.billing.alerts import WebhookSender
from pbx.billing.keeper import BudgetKeeper
from pbx.billing.shared import StoreReservations
from pbx.calls.cdr_adapter import CdrRecorder
from pbx.calls.overload import OverloadGate
from pbx.calls.controller import CallController
from pbx.calls.features import FeatureRecord, FeatureState
from pbx.calls.hunt_state import HuntState, Record as HuntRecord
from pbx.cdr.writer import CdrWriter, dead_nodes, recover_interrupted
from pbx.conference.bridge import ConferenceBridge
from pbx.ivr.service import IvrMedia, prompt_library
from pbx.media.endpoint import MediaEngine
from pbx.media.ports import PortAllocator
from pbx.recording.service import AnchorService
from pbx.recording.writer import RecordingWriter
from pbx.registrar.auth import Authenticator
from pbx.registrar.bindings import BindingTable
from pbx.security.lockout import Lockout
from pbx.security.rate_limit import SourceRateLimit
from pbx.registrar.registrar import Registrar
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import load_dialplan
from pbx.server import gc_tuning
from pbx.server.overload import OverloadMonitor
from pbx.server.cluster_sync import ClusterSync
from pbx.server.call_hooks import HookedRecorder
from pbx.server.loop_lag import LoopLagMonitor
from pbx.server.reload import DialplanReloader
from pbx.server.chat import ChatService
from pbx.server.presence import PresenceService
from pbx.server.security import SecurityEvents
from pbx.server.service import SipService, binding_of
from pbx.sip import digest
from pbx.sip.address import Peer
from pbx.sip.endpoint import SipEndpoint
from pbx.store.bindings import BindingStore
from pbx.store.blocks import BlockStore
from pbx.server.codes import StoreChecker
from pbx.store.chat import OfflineMessageStore
from pbx.store.code_key import load_code_key
from pbx.store.change_events import ChangeListener, announce
from pbx.store.codes import CodeStore
from pbx.store import budgets as budget_store, presence as presence_store
from pbx.store.db import make_engine, migrate
from pbx.store.features import FeatureStore
from pbx.store.hours import HoursStore
from pbx.store.hunt import HuntStore
from pbx.store.voicemail import VoicemailStore
from pbx.store.writer import BackgroundWriter
from pbx.transport.tcp import TcpLimits, TcpTransport
from pbx.transport.tls import ClientTls, ServerCertificates, client_context
from pbx.transport.websocket import WebSocketTransport
from pbx.transport.udp import UdpTransport, open_udp
from pbx.trunks.client import TrunkRuntime
from pbx.trunks.sources import TrunkSources
from pbx.voicemail.service import VoicemailService
from pbx.web.metrics import SipCounters

if TYPE_CHECKING:
    from pbx.web.serve import HttpOptions

log = structlog.get_logger("pbx.app")

SWEEP_INTERVAL = 5.0
# Every this many seconds, while calls are in progress, the node's row in
# cdr_heartbeats is stamped (one row's write, however many calls): a crash
# ends each such call's INTERRUPTED row at most this long before it really
# ended. bench/cdr_heartbeat.py: about 1 ms a stamp on PostgreSQL.
CDR_HEARTBEAT_INTERVAL = 5.0
# Nodes sharing the store close each other's calls when one dies: every
# this many seconds a node looks for another with a call open longer than
# DEAD_NODE_STALE and no heartbeat (stamped every CDR_HEARTBEAT_INTERVAL
# while it has calls) for as long: six beats missed is a dead node.
DEAD_NODE_CHECK_INTERVAL = 10.0
DEAD_NODE_STALE = 6 * CDR_HEARTBEAT_INTERVAL
WRITE_BEHIND_INTERVAL = 0.2
# Every this many seconds budget spend is read back from the store, so what
# other nodes sharing it spent counts here (this node's own counts at once).
BUDGET_REFRESH_INTERVAL = 10.0
# The database writer waits this long after the first op of a burst so the
# others join its transaction: at 700 calls/s this cut the CPU per call from
# 1.59 to 1.20 ms (fewer commits, and fewer times the writer thread holds the
# GIL the event loop wants), for 5 ms more before a BYE's 200 (sent once the
# call's CDR row has committed).
WRITE_GATHER = 0.005


def lockout_of(plan: Dialplan) -> Lockout:
    s = plan.security
    return Lockout(max_failures=s.max_auth_failures, window=s.failure_window, block_seconds=s.block_seconds,
                   scan_usernames=s.scan_usernames, targeted_failures=s.targeted_failures,
                   retry_seconds=s.blocked_retry_seconds)


def rate_limit_of(plan: Dialplan) -> SourceRateLimit:
    s = plan.security
    return SourceRateLimit(rate=s.unauthenticated_per_second, burst=s.unauthenticated_burst)


def packet_limit_of(plan: Dialplan) -> SourceRateLimit:
    rate = plan.security.source_packets_per_second
    return SourceRateLimit(rate=rate, burst=2 * rate)


def tcp_limits(plan: Dialplan) -> TcpLimits:
    security = plan.security
    return TcpLimits(max_connections=security.tcp_max_connections, max_per_source=security.tcp_max_per_source,
                     message_seconds=float(security.tcp_message_seconds),
                     idle_seconds=float(security.tcp_idle_seconds),
                     handshake_seconds=float(security.tls_handshake_seconds))


class Server:
    def __init__(self, plan: Dialplan, listens: list[tuple[str, str, int]], db_url: str,
                 advertise: str | None = None, certificates: ServerCertificates | None = None) -> None:
        self.plan = plan
        self.listens = listens
        self.db_url = db_url
        # The node's name must outlive the process: at start-up
        # recover_interrupted closes the CDR rows a crash left open under this
        # name (with the pid in it, a restarted node would never find them).
        # PBX_NODE tells apart nodes that share one host and one database.
        self.node = os.environ.get("PBX_NODE") or socket.gethostname()
        self.endpoint = SipEndpoint()
        self.udp: list[UdpTransport] = []
        self.tcp: list[TcpTransport] = []
        self.tls: list[TcpTransport] = []
        """TLS listeners; without one, a transport that only opens
        connections (to trunks that need TLS)."""
        self.websockets: list[WebSocketTransport] = []
        self.certificates = certificates
        self._client_contexts: dict[str | None, ssl.SSLContext] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.trunks: TrunkRuntime | None = None
        self.calls: CallController | None = None
        self.overload: OverloadMonitor | None = None
        self.media: MediaEngine | None = None
        self.ivr: IvrMedia | None = None
        self.conferences: ConferenceBridge | None = None
        self.voicemail: VoicemailService | None = None
        self.recordings: RecordingWriter | None = None
        self.anchors: AnchorService | None = None
        self.addresses: list[str] = []
        self._advertise = advertise
        self._advertised: str | None = None
        self.counters = SipCounters()
        self._calls_pending: dict[str, int] = {}
        """Extensions whose count of this node's calls changed since the last flush."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        engine = await asyncio.to_thread(self._open_store)
        self.engine = engine
        self.writer = BackgroundWriter(engine, gather=WRITE_GATHER)
        bindings, blocks = BindingStore(engine), BlockStore(engine)
        now_utc = datetime.now(timezone.utc)
        stored = await asyncio.to_thread(bindings.load_active, now_utc)
        active_blocks = await asyncio.to_thread(blocks.active, now_utc)

        lockout = lockout_of(self.plan)
        nonces = digest.NonceIssuer(secrets.token_bytes(32), lifetime=self.plan.registrar.nonce_lifetime)
        table = BindingTable()
        table.load([binding_of(r, self.node) for r in stored], time.time())
        service_tag = secrets.token_hex(6)
        algorithms = tuple(digest.Algorithm.parse(a) for a in self.plan.registrar.auth_algorithms)
        authenticator = Authenticator(self.plan, nonces, lockout, algorithms, decoy_key=secrets.token_bytes(32))
        registrar = Registrar(self.plan, authenticator, table, to_tag=service_tag)
        self.security = SecurityEvents(lockout, rate_limit_of(self.plan), self.writer, blocks, time.time,
                                       clock=self._loop.time, exempt=self._unlimited,
                                       packets=packet_limit_of(self.plan),
                                       node=self.node if ChangeListener.applies(engine) else None)
        self.security.refresh(active_blocks, now_utc.timestamp())
        self.service = SipService(
            self.endpoint, registrar, writer=self.writer, bindings=bindings, security=self.security,
            wall_clock=time.time, node=self.node,
        )
        self.service.drop_inactive(self.plan)  # suspended or expired while the server was down
        for transport, host, port in self.listens:
            if transport == "udp":
                udp = await open_udp(host, port, self._on_data)
                self.udp.append(udp)
                self.addresses.append(f"udp:{udp.local[0]}:{udp.local[1]}")
            elif transport in ("ws", "wss"):
                if transport == "wss" and self.certificates is None:
                    raise ValueError("listening on WSS needs a certificate and key")
                ws = WebSocketTransport(self._on_data, secure=transport == "wss", limits=tcp_limits(self.plan),
                                        ssl_context=self.certificates.context
                                        if transport == "wss" and self.certificates is not None else None)
                await ws.listen(host, port)
                self.websockets.append(ws)
                self.addresses.append(f"{transport}:{ws.local[0]}:{ws.local[1]}")
            elif transport == "tls":
                if self.certificates is None:
                    raise ValueError("listening on TLS needs a certificate and key")
                tls = TcpTransport(self._on_data, name="tls", ssl_context=self.certificates.context,
                                   limits=tcp_limits(self.plan), client_tls=self._client_tls)
                await tls.listen(host, port)
                self.tls.append(tls)
                self.addresses.append(f"tls:{tls.local[0]}:{tls.local[1]}")
            else:
                tcp = TcpTransport(self._on_data, limits=tcp_limits(self.plan))
                await tcp.listen(host, port)
                self.tcp.append(tcp)
                self.addresses.append(f"tcp:{tcp.local[0]}:{tcp.local[1]}")
        if not self.tls:
            self.tls.append(TcpTransport(self._on_data, name="tls", limits=tcp_limits(self.plan),
                                         client_tls=self._client_tls))
        durable: list[Callable[[], None]] = []
        durable_lock = threading.Lock()

        def run_durable() -> None:
            nonlocal durable
            with durable_lock:
                callbacks, durable = durable, []
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # one call's bug must not hold up the others
                    log.exception("cdr_durable_callback_failed")

        def notify(callback: Callable[[], None]) -> None:
            # From the writer thread, once per call a batch commits: the
            # loop is woken once for those that arrive together, not once
            # per call. (The writer thread and, when the writer is closed,
            # the loop itself call this: hence the lock.)
            with durable_lock:
                durable.append(callback)
                wake = len(durable) == 1
            if wake:
                loop.call_soon_threadsafe(run_durable)

        self.cdr = CdrRecorder(CdrWriter(self.writer, self.node, notify=notify))
        # Listeners on calls (metrics, webhooks) see every call through this.
        self.recorder = HookedRecorder(self.cdr, loop.time)
        self.recorder.on_started.append(self._count_call)
        self.recorder.on_commit.append(self.counters.commit)
        # Hunt groups' state: the store is the truth (other nodes, pbx hunt);
        # changes here are written behind, and the store is read again on
        # every sweep.
        self.hunt_store = HuntStore(engine)
        self.hunts = HuntState(save=self._save_hunt)
        self.hunts.merge(await asyncio.to_thread(self.hunt_store.load))
        # Forwards and do not disturb: the same pattern (the store is the
        # truth, written behind, read again on every sweep).
        self.feature_store = FeatureStore(engine)
        self.features = FeatureState(save=self._save_features)
        self.features.merge(await asyncio.to_thread(self.feature_store.load))
        interrupted = await asyncio.to_thread(recover_interrupted, engine, self.node, datetime.now(timezone.utc))
        if interrupted:
            log.warning("cdr_interrupted_calls_marked", count=interrupted)
        calls = self.calls = CallController(
            endpoint=self.endpoint,
            plan=self.plan,
            auth=authenticator,
            bindings=table,
            recorder=self.recorder,
            local_address=self.local_address,
            kick=self._flush,
            monotonic=loop.time,
            wall_clock=time.time,
            challenges=self.security,
            hunts=self.hunts,
            features=self.features,
        )
        self.service.calls = calls
        # New calls refused with 503 while datagrams wait in the sockets
        # (pbx/calls/overload.py has the measurement behind this).
        calls.overload = OverloadGate()
        self.overload = OverloadMonitor(loop, calls.overload,
                                        lambda: [udp.sock for udp in self.udp if udp.sock is not None])
        self.overload.start()
        for stream in self._streams():
            stream.in_use = lambda: table.connections() | calls.connections()
        # Presence and busy lamps (SUBSCRIBE/NOTIFY) and chat (MESSAGE).
        self.presence = PresenceService(
            endpoint=self.endpoint, plan=self.plan, auth=authenticator, challenges=self.security, bindings=table,
            presence=calls.presence, local_address=self.local_address, kick=self._flush, monotonic=loop.time,
            wall_clock=time.time, soon=loop.call_soon, call_at=loop.call_at)
        self.chat = ChatService(
            endpoint=self.endpoint, plan=self.plan, auth=authenticator, challenges=self.security, bindings=table,
            local_address=self.local_address, kick=self._flush, monotonic=loop.time, wall_clock=time.time,
            call_at=loop.call_at, store=OfflineMessageStore(engine), writer=self.writer,
            threadsafe=loop.call_soon_threadsafe)
        await self.chat.refresh()
        self.service.presence, self.service.chat = self.presence, self.chat
        # Other nodes sharing the store: their registrations, hunt group and
        # feature changes, as they happen (LISTEN/NOTIFY on PostgreSQL).
        node = self.node
        self.cluster_sync = ClusterSync(
            engine=engine, node=node, store=bindings, table=table, pending=self.service.pending_bindings,
            to_binding=lambda record: binding_of(record, node), wall_clock=time.time,
            changed=self._bindings_changed,
            reload={"hunt": self._reload_hunts, "features": self._reload_features, "presence": self._reload_presence,
                    "blocks": self._reload_blocks, "auth_failures": self._count_failures,
                    "voicemail": self._recount_mailboxes})
        self.cluster_sync.start()
        # Who is on a call through the other nodes (busy for hunt groups and
        # max_calls here too); what this node held before it stopped is gone.
        if ChangeListener.applies(engine):  # PostgreSQL: nodes may share it (SQLite: one node)
            calls.presence.shared = self._share_calls
            await asyncio.to_thread(self._forget_node, self.node)
            await self._reload_presence(None)
        # Media for the calls the PBX answers itself: RTP binds where SIP
        # does and is advertised as SIP is (the public address behind NAT).
        media = self.plan.media
        bind_host = self.udp[0].local[0] if self.udp else "0.0.0.0"
        self.media = MediaEngine(bind_host=bind_host, ports=PortAllocator(media.rtp_first, media.rtp_last),
                                 advertise=self.local_address("udp")[0])
        self.conferences = ConferenceBridge(self.media)
        # Voicemail: messages in files and the store, lamps through the
        # presence service, mail in threads (pbx.voicemail.service).
        self.voicemail = VoicemailService(VoicemailStore(engine), self.plan, node=self.node,
                                          changed=self.presence.mailbox_changed,
                                          tell=self._tell_mailboxes if ChangeListener.applies(engine) else None)
        self.presence.mailboxes = self.voicemail.state
        calls.voicemail = self.voicemail
        await self.voicemail.recount(tell=False)
        self.ivr = calls.media = IvrMedia(self.media, prompt_library(media.prompt_dir), conferences=self.conferences,
                                          voicemail=self.voicemail)
        # Recorded and SRTP-bridged calls relay through the PBX; their files
        # are written by one thread (pbx/recording/writer.py).
        recording = self.plan.recording
        self.recordings = RecordingWriter(Path(recording.directory), retention_days=recording.retention_days,
                                          max_bytes=recording.max_megabytes * 1024 * 1024)
        self.anchors = calls.anchors = AnchorService(self.media, self.ivr.prompts, self.recordings)
        self.hours_store = HoursStore(engine)
        calls.hours = await asyncio.to_thread(self.hours_store.active, datetime.now(timezone.utc))
        # Account codes: looked up in the store for each call (a code
        # disabled by `pbx codes` is refused from the next call on), hashed
        # with a secret kept outside the database (pbx/store/code_key.py).
        code_key = await asyncio.to_thread(load_code_key)
        code_store = CodeStore(engine, code_key)
        await asyncio.to_thread(code_store.check_secret, datetime.now(timezone.utc))  # not the codes' secret: no start
        calls.codes = StoreChecker(code_store, lambda: self.plan.account_codes.lockout)
        self.alerts = WebhookSender()
        self.budgets = BudgetKeeper(calls.budgets, self.writer, notify, self.plan, self.alerts, time.time)
        if StoreReservations.applies(engine):
            # Several nodes may spend from one budget: paid calls reserve in
            # the store (pbx/billing/shared.py); a crash's leftovers go first.
            shared = StoreReservations(engine, self.writer, self.node, time.time)
            released = await asyncio.to_thread(shared.recover)
            if released:
                log.warning("budget_reservations_released", count=released)
            calls.shared_budgets = shared
        self.budgets.recount_missing()
        self.budgets.refresh()
        # Trunks: the source table for the controller, and the clients that
        # register to providers (sent once the transports are open).
        self.trunks = TrunkRuntime(endpoint=self.endpoint, local_address=self.local_address, kick=self._flush)
        self.trunks.on_sources(self._use_trunk_sources)
        self.service.trunks = self.trunks
        await self.trunks.start(self.plan)
        self._tasks.append(loop.create_task(self._sweeper()))
        self._tasks.append(loop.create_task(self._write_behind()))
        self._tasks.append(loop.create_task(self._cdr_heartbeat()))
        self._tasks.append(loop.create_task(self._dead_nodes()))
        self._tasks.append(loop.create_task(self._budget_refresh()))
        self._tasks.append(loop.create_task(self.voicemail.run()))
        self.plan_listeners: list[Callable[[Dialplan], None]] = [
            self.service.registrar.use_plan,  # and its authenticator
            calls.use_plan,
            self.trunks.use_plan,
            self.budgets.use_plan,
            self.presence.use_plan,
            self.chat.use_plan,
            self.voicemail.use_plan,
        ]
        log.info("pbx_started", node=self.node, addresses=self.addresses, bindings=len(table),
                 blocked=len(active_blocks), extensions=len(self.plan.extensions))

    def _bindings_changed(self, aor: str) -> None:
        """Another node changed ``aor``'s registrations: its lamps here.
        (Chat messages kept for it are delivered by the node that took the
        REGISTER, not by every node.)"""
        self.presence.changed(aor)

    def _save_features(self, record: FeatureRecord) -> None:
        store, node = self.feature_store, self.node

        def save(conn: Connection) -> None:
            store.save(record, conn=conn)
            announce(conn, node, "features", [record.extension])

        self.writer.submit(save)

    async def _reload_blocks(self, keys: tuple[str, ...] | None = None) -> None:
        """The store is the truth about blocks: set on other nodes (they
        announce them), or lifted by `pbx security blocks clear`."""
        read_at = time.time()
        stored = await asyncio.to_thread(self.service.security.blocks.active,
                                         datetime.fromtimestamp(read_at, timezone.utc))
        self.security.refresh(stored, read_at)

    async def _tell_mailboxes(self, mailboxes: list[str]) -> None:
        def tell() -> None:
            with self.engine.begin() as conn:
                announce(conn, self.node, "voicemail", mailboxes)

        await asyncio.to_thread(tell)

    async def _recount_mailboxes(self, mailboxes: tuple[str, ...] | None = None) -> None:
        """Mailboxes another node changed (None: all, after a gap)."""
        if self.voicemail is None:
            return
        if mailboxes is None:
            await self.voicemail.recount(tell=False)
        for mailbox in mailboxes or ():
            await self.voicemail.recount(mailbox, tell=False)

    async def _count_failures(self, events: tuple[str, ...] | None = None) -> None:
        """Another node's failed authentications (None after a gap in
        listening: what was missed is not read back, the blocks are)."""
        if events:
            self.security.count_remote_failures(events)

    async def _reload_features(self, keys: tuple[str, ...] | None = None) -> None:
        self.features.merge(await asyncio.to_thread(self.feature_store.load))

    async def _reload_hunts(self, keys: tuple[str, ...] | None = None) -> None:
        self.hunts.merge(await asyncio.to_thread(self.hunt_store.load))

    async def _reload_presence(self, extensions: tuple[str, ...] | None) -> None:
        """The other nodes' calls of ``extensions`` (None: all of them)."""
        engine, node = self.engine, self.node

        def read() -> dict[str, int]:
            with engine.connect() as conn:
                return presence_store.elsewhere(node, extensions, conn)

        counts = await asyncio.to_thread(read)
        if extensions is None and self.calls is not None:
            # Everything read again: extensions no longer on a call elsewhere too.
            counts = {**{extension: 0 for extension in self.calls.presence.elsewhere_now()}, **counts}
        if self.calls is not None:
            self.calls.presence.elsewhere(counts)

    def _share_calls(self, extension: str, calls: int) -> None:
        """This node's calls of ``extension`` changed: written behind with
        the bindings (last count wins), one notification a flush."""
        self._calls_pending[extension] = calls

    def _flush_calls(self) -> None:
        if not self._calls_pending:
            return
        pending, self._calls_pending = self._calls_pending, {}
        node, at = self.node, datetime.now(timezone.utc)

        def write(conn: Connection) -> None:
            for extension, calls in pending.items():
                presence_store.set_calls(node, extension, calls, at, conn)
            announce(conn, node, "presence", pending)

        self.writer.submit(write)

    def _forget_node(self, node: str) -> None:
        """Drop what ``node`` (this one starting, or a dead one) said it held:
        its calls per extension, budget reservations and outside calls up."""
        with self.engine.begin() as conn:
            announce(conn, self.node, "presence", presence_store.forget_node(node, conn))
            budget_store.release_node(node, datetime.now(timezone.utc), conn)

    def _streams(self) -> list[TcpTransport | WebSocketTransport]:
        """The connection-oriented transports: limits and idleness apply."""
        return [*self.tcp, *self.tls, *self.websockets]

    def _save_hunt(self, record: HuntRecord) -> None:
        store, node = self.hunt_store, self.node

        def save(conn: Connection) -> None:
            store.save(record, conn=conn)
            announce(conn, node, "hunt", [record.group])

        self.writer.submit(save)

    def _from_trunk(self, source: Peer) -> bool:
        return self.calls is not None and self.calls.trunk_sources.match(source) is not None

    def _unlimited(self, source: Peer) -> bool:
        """Sources the per-source budgets never cut off: trunks' gateways,
        and the edge proxies of `security.trusted_proxies`, which relay for
        every phone behind them (each phone is counted by its own address
        once a request is parsed; the edge runs its own flood guard)."""
        return source.host in self.plan.security.trusted_proxies or self._from_trunk(source)

    def _use_trunk_sources(self, sources: TrunkSources) -> None:
        if self.calls is not None:
            self.calls.trunk_sources = sources

    def apply_plan(self, plan: Dialplan) -> None:
        """Use a new, valid dialplan for everything that starts from now on:
        registrations, authentication and new calls. Calls in progress keep
        their legs; the lockout tracker keeps its counts."""
        old_media, self.plan = self.plan.media, plan
        for listener in self.plan_listeners:
            listener(plan)
        if self.ivr is not None and plan.media.prompt_dir != old_media.prompt_dir:
            self.ivr.prompts = prompt_library(plan.media.prompt_dir)
            if self.anchors is not None:
                self.anchors.prompts = self.ivr.prompts
        if self.recordings is not None:
            self.recordings.configure(Path(plan.recording.directory), retention_days=plan.recording.retention_days,
                                      max_bytes=plan.recording.max_megabytes * 1024 * 1024)
        if (plan.media.rtp_first, plan.media.rtp_last) != (old_media.rtp_first, old_media.rtp_last):
            log.warning("rtp_ports_change_needs_restart", ports=f"{plan.media.rtp_first}-{plan.media.rtp_last}")
        for stream in self._streams():
            stream.limits = tcp_limits(plan)  # for connections and messages from now on
        self.service.drop_inactive(plan)  # a suspended extension's phones lose their bindings now
        # The counts and blocks so far stay; the thresholds are the new ones.
        lockout, limit, fresh = self.security.lockout, self.security.limit, lockout_of(plan)
        lockout.max_failures, lockout.window, lockout.block_seconds = fresh.max_failures, fresh.window, \
            fresh.block_seconds
        lockout.scan_usernames, lockout.targeted_failures, lockout.retry_seconds = fresh.scan_usernames, \
            fresh.targeted_failures, fresh.retry_seconds
        limit.rate, limit.burst = rate_limit_of(plan).rate, rate_limit_of(plan).burst
        self.security.packets.rate, self.security.packets.burst = packet_limit_of(plan).rate, \
            packet_limit_of(plan).burst

    def _client_tls(self, dest: Peer) -> ClientTls | None:
        """How to check the server of a TLS connection we open: a trunk's
        gateway by its settings; anything else (a phone whose connection
        closed) against the system's CAs and its address."""
        gateway = self.calls.trunk_sources.tls_gateway(dest) if self.calls is not None else None
        ca_file = gateway.tls_ca_file if gateway is not None else None
        context = self._client_contexts.get(ca_file)
        if context is None:
            try:
                context = self._client_contexts[ca_file] = client_context(ca_file)
            except (OSError, ssl.SSLError) as err:
                log.error("tls_ca_file_unusable", path=ca_file, error=str(err), dest=str(dest))
                return None
        if gateway is None:
            return ClientTls(context, None)
        return ClientTls(context, gateway.tls_server_name or gateway.host, gateway.tls_pins)

    def local_address(self, transport: str) -> tuple[str, int]:
        """Where peers reach us over ``transport``, for Via and Contact."""
        ws = next((w for w in self.websockets if w.name == transport), None)
        if ws is not None:
            bound = ws.local
        elif transport == "udp" and self.udp:
            bound = self.udp[0].local
        elif transport == "tls" and self.tls and self.tls[0].local[1]:
            bound = self.tls[0].local
        elif transport == "tls":
            bound = (self.tcp[0].local[0] if self.tcp else "127.0.0.1", 5061)  # not listening: the default
        else:
            bound = self.tcp[0].local if self.tcp else ("127.0.0.1", 5060)
        host, port = bound
        if self._advertise is not None:
            host = self._advertise
        elif host in ("0.0.0.0", "::", ""):
            host = self._advertised_host()
        return host, port

    def _advertised_host(self) -> str:
        # Bound to every address and no --advertise given (the public
        # address behind NAT): this host's primary address.
        if self._advertised is None:
            try:
                self._advertised = socket.gethostbyname(socket.gethostname())
            except OSError:
                self._advertised = "127.0.0.1"
        return self._advertised

    def _open_store(self) -> Engine:
        engine = make_engine(self.db_url)
        migrate(engine)
        return engine

    # ------------------------------------------------------------ the driver

    def _on_data(self, data: bytes, source: Peer) -> None:
        now = self._loop.time()
        if not self.security.admit_bytes(source, now):
            return
        try:
            self.endpoint.receive(data, source, now)
        except Exception:  # our bug: log it, keep serving everyone else
            log.exception("receive_failed", source=str(source))
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._loop.time()
        try:
            self.endpoint.on_timer(now)
        except Exception:
            log.exception("timer_failed")
        try:
            if self.calls is not None:
                self.calls.on_timer(now)  # what it sends goes out with the flush below
        except Exception:
            log.exception("call_timer_failed")
        self._flush()

    def _flush(self) -> None:
        endpoint = self.endpoint
        while True:
            sends, events = endpoint.drain()
            for send in sends:
                self._send(send.data, send.dest)
            if not events:
                break
            try:
                self.service.handle_events(events, self._loop.time())
            except Exception:
                log.exception("event_handling_failed")
        deadline = endpoint.next_deadline()
        call_deadline = self.calls.next_deadline() if self.calls is not None else None
        if call_deadline is not None and (deadline is None or call_deadline < deadline):
            deadline = call_deadline
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
        else:
            # Wake up to `slack` after the deadline, so one wake-up serves
            # every timer in that window: under load a transaction ends (timer
            # J) every fraction of a millisecond, and waking for each would
            # cost more than the timers. RFC 3261 timers are not that exact.
            slack = 0.005
            if self._timer_at is None or deadline + slack < self._timer_at:
                # Only move the timer earlier; a wake-up with nothing due
                # just re-arms, cheaper than re-arming on every packet.
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_at = deadline + slack
                self._timer = self._loop.call_at(deadline + slack, self._on_timer)

    def _count_call(self, call: object) -> None:
        self.counters.calls_started += 1

    def _send(self, data: bytes, dest: Peer) -> None:
        self.counters.sent(data)
        if dest.transport == "udp":
            if self.udp:
                self.udp[0].send(data, dest)
        elif dest.transport == "tls":
            self.tls[0].send(data, dest)
        elif dest.transport in ("ws", "wss"):
            for ws in self.websockets:
                if ws.name == dest.transport:
                    ws.send(data, dest)
        elif self.tcp:
            self.tcp[0].send(data, dest)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                self.service.sweep(self._loop.time())
                self.service.drop_inactive(self.plan)  # temporary numbers that just expired
                await self._reload_blocks()
                await self._reload_hunts()
                await self._reload_features()
                await self.chat.refresh()
                await self.refresh_hours()
            except Exception:
                log.exception("sweep_failed")

    async def _cdr_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(CDR_HEARTBEAT_INTERVAL)
            try:
                self.cdr.writer.heartbeat(datetime.now(timezone.utc))
            except Exception:
                log.exception("cdr_heartbeat_failed")

    async def _dead_nodes(self) -> None:
        """Close as INTERRUPTED the calls of nodes that died (pbx.cdr.writer.
        dead_nodes) without waiting for them to start again."""
        stale = timedelta(seconds=DEAD_NODE_STALE)
        while True:
            await asyncio.sleep(DEAD_NODE_CHECK_INTERVAL)
            try:
                now = datetime.now(timezone.utc)
                for node in await asyncio.to_thread(dead_nodes, self.engine, self.node, now, stale):
                    closed = await asyncio.to_thread(recover_interrupted, self.engine, node, now)
                    await asyncio.to_thread(self._forget_node, node)
                    await self._reload_presence(None)
                    log.warning("cdr_dead_node_calls_closed", dead_node=node, count=closed)
            except Exception:
                log.exception("dead_node_check_failed")

    async def refresh_hours(self) -> None:
        """Read ``pbx hours`` overrides (every sweep and on SIGHUP): the next
        call uses them."""
        found = await asyncio.to_thread(self.hours_store.active, datetime.now(timezone.utc))
        if self.calls is not None and found != self.calls.hours:
            self.calls.hours = found
            log.info("hours_overrides_loaded", overrides={k: f"{v.mode}" + (f" until {v.until.isoformat()}" if v.until
                                                                              else "") for k, v in found.items()})
    async def _budget_refresh(self) -> None:
        while True:
            await asyncio.sleep(BUDGET_REFRESH_INTERVAL)
            try:
                self.budgets.refresh()
            except Exception:
                log.exception("budget_refresh_failed")

    async def _write_behind(self) -> None:
        while True:
            await asyncio.sleep(WRITE_BEHIND_INTERVAL)
            self.service.pending_bindings.flush()
            self._flush_calls()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.trunks is not None:
            await self.trunks.stop()  # un-REGISTER while the sockets are still open
        self.service.pending_bindings.flush()
        self._flush_calls()
        await asyncio.to_thread(self.cluster_sync.close)
        if self.overload is not None:
            self.overload.stop()
        for udp in self.udp:
            udp.close()
        for stream in self._streams():
            stream.close()
        if self._timer is not None:
            self._timer.cancel()
        if self.media is not None:
            await self.media.close()
        if self.voicemail is not None:
            try:  # messages already left are being written: let them land
                await asyncio.wait_for(self.voicemail.settled(), 10.0)
            except TimeoutError:
                log.warning("voicemail_unsettled_at_stop")
        if self.recordings is not None:
            await asyncio.to_thread(self.recordings.stop)
        flushed = await asyncio.to_thread(self.writer.close, 10.0)
        await asyncio.to_thread(self.alerts.close, 2.0)
        log.info("pbx_stopped", flushed=flushed)


async def _serve(dialplan: Path, plan: Dialplan, listens: list[tuple[str, str, int]], db_url: str,
                 pid_file: Path | None, advertise: str | None, tls: tuple[Path, Path] | None,
                 http: HttpOptions | None = None) -> None:
    # The store's writer thread competes with the event loop for the GIL; a
    # shorter switch interval bounds how long a packet waits behind it.
    sys.setswitchinterval(0.001)
    certificates = ServerCertificates(*tls) if tls is not None else None
    server = Server(plan, listens, db_url, advertise, certificates)
    await server.start()
    # Start-up's objects out of every collection, and each collection's
    # survivors after it: pbx/server/gc_tuning.py has the figures behind this.
    gc_tuning.freeze_survivors()
    gc_tuning.tune()

    def apply_plan(new: Dialplan) -> None:
        server.apply_plan(new)
        # The new plan lives as long as the old one did: freeze it too, or
        # every full collection from now on would visit it. The old plan,
        # no longer referenced, is freed by reference counting.
        gc_tuning.freeze_new()

    # The reloader takes its first look at the files before "listening" is
    # printed: whoever waits for that line may edit the dialplan at once.
    reloader = DialplanReloader(dialplan, plan, apply_plan)
    for address in server.addresses:
        print(f"listening {address}", flush=True)
    loop = asyncio.get_running_loop()
    lag = LoopLagMonitor(loop)
    lag.start()
    collector = gc_tuning.Collector(loop, lambda: server.calls.active if server.calls is not None else 0)
    collector.start()
    web = None
    if http is not None:
        from pbx.web.serve import start_web  # FastAPI and uvicorn only when asked for

        web = await start_web(server, reloader, http)
    watcher = loop.create_task(reloader.watch())
    # A renewed certificate is read on SIGHUP or when its files change: new
    # connections get it, established ones (and their calls) keep theirs.
    cert_watcher = loop.create_task(certificates.watch()) if certificates is not None else None
    reloads: set[asyncio.Task[bool]] = set()

    async def refresh_hours() -> bool:
        await server.refresh_hours()
        return True

    def on_sighup() -> None:
        for task in (loop.create_task(reloader.reload("sighup")), loop.create_task(refresh_hours())):
            reloads.add(task)
            task.add_done_callback(reloads.discard)
        if certificates is not None:
            certificates.reload("sighup")

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    written = pid_file is not None and write_pid_file(pid_file)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("pbx_stopping")
        lag.stop()
        lag.report()
        collector.stop()
        watcher.cancel()
        await asyncio.to_thread(reloader.close)  # waits for a reload under way
        if cert_watcher is not None:
            cert_watcher.cancel()
        if web is not None:
            await web.stop()
        if written and pid_file is not None:
            remove_pid_file(pid_file)
        await server.stop()


def write_pid_file(path: Path) -> bool:
    """Record our pid for ``pbx reload``; a failure is logged, not fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()}\n")
    except OSError as err:
        log.warning("pid_file_not_written", path=str(path), error=str(err))
        return False
    return True


def remove_pid_file(path: Path) -> None:
    # Only our own: another server may have taken the file over since.
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def run_server(dialplan: Path, listens: list[tuple[str, str, int]], db_url: str,
               pid_file: Path | None = None, advertise: str | None = None,
               tls: tuple[Path, Path] | None = None, http: HttpOptions | None = None) -> None:
    """``tls``: the certificate (chain) and key files, for TLS listeners;
    ``http``: where to serve the web console and API."""
    with gc_tuning.paused():
        plan = load_dialplan(dialplan)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_serve(dialplan, plan, listens, db_url, pid_file, advertise, tls, http))
    else:
        uvloop.run(_serve(dialplan, plan, listens, db_url, pid_file, advertise, tls, http))
    sys.stdout.flush()
