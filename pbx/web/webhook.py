"""Telling integrations about each call's end: a JSON POST to every
webhook (CRM screen-pop, missed-call follow-up), signed, retried with
back-off.

The event loop only puts the event in a queue; a thread of its own does
the HTTP, so a slow or dead CRM never delays a SIP message. Each delivery
is tried up to ``ATTEMPTS`` times, waiting 1, 2, 4 ... s between tries (a
2xx ends it, anything else or no answer tries again); what still fails is
logged and dropped. The body is signed: ``X-PBX-Signature: sha256=<hex
HMAC of the body with the webhook's secret>``, so the receiver can tell
the PBX from anyone else who learns its address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Final

import structlog

log = structlog.get_logger("pbx.webhook")

ATTEMPTS: Final = 5
FIRST_BACKOFF: Final = 1.0
TIMEOUT: Final = 5.0
QUEUE_LIMIT: Final = 10_000
HOOKS_TTL: Final = 10.0
"""Seconds the list of webhooks is cached (it lives in the store)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    event: str
    call_uuid: str
    caller: str
    caller_name: str | None
    callee: str
    destination: str | None
    disposition: str
    started_at: str
    answered_at: str | None
    ended_at: str
    hunt_group: str | None
    answered_by: str | None


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


Hook = tuple[int, str, str, bool]
"""(id, url, secret, active), as the store lists them."""


class WebhookSender:
    def __init__(self, hooks: Callable[[], list[Hook]], *, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self._hooks = hooks
        self._queue: queue.Queue[CallEnded | None] = queue.Queue(QUEUE_LIMIT)
        self._stop = threading.Event()
        self._sleep = sleep or (lambda seconds: self._stop.wait(seconds) and None)
        self._clock = clock or time.monotonic
        self._cached: list[Hook] = []
        self._cached_at = float("-inf")
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="pbx-webhooks", daemon=True)
        self._thread.start()

    def call_ended(self, event: CallEnded) -> None:
        """Called on the event loop: never blocks."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("webhook_queue_full", call_uuid=event.call_uuid)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop
        (cutting short any back-off wait)."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(1.0)

    def _hooks_now(self) -> list[Hook]:
        if self._clock() - self._cached_at > HOOKS_TTL:
            try:
                self._cached = [hook for hook in self._hooks() if hook[3]]
                self._cached_at = self._clock()
            except Exception:
                log.exception("webhook_list_failed")
        return self._cached

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            body = json.dumps(asdict(event), ensure_ascii=False).encode()
            for hook_id, url, secret, _ in self._hooks_now():
                self._deliver(hook_id, url, secret, body, event.call_uuid)

    def _deliver(self, hook_id: int, url: str, secret: str, body: bytes, call_uuid: str) -> None:
        backoff = FIRST_BACKOFF
        for attempt in range(1, ATTEMPTS + 1):
            request = urllib.request.Request(url, data=body, method="POST", headers={
                "Content-Type": "application/json", "X-PBX-Event": "call.ended",
                "X-PBX-Signature": sign(secret, body), "User-Agent": "pbx-webhook"})
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (http(s) only)
                    if 200 <= response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as err:
                problem = f"HTTP {err.code}"
            except (urllib.error.URLError, OSError) as err:
                problem = type(err).__name__
            log.warning("webhook_attempt_failed", webhook=hook_id, attempt=attempt, problem=problem,
                        call_uuid=call_uuid)
            if self._stop.is_set() or attempt == ATTEMPTS:
                break
            self._sleep(backoff)
            backoff *= 2
        self.failed += 1
        log.error("webhook_given_up", webhook=hook_id, call_uuid=call_uuid, attempts=ATTEMPTS)
