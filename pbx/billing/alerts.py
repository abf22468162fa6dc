"""POSTing budget alerts to a webhook, from a thread of their own.

An alert is a JSON object (who, budget, spent, limit, period …). It is sent
with retries: a failed POST (no connection, a timeout, any status outside
2xx) is tried again after a back-off that doubles up to ``max_backoff``,
``attempts`` times in all, then dropped with an error line. The event loop
only puts the alert on a queue: a slow or dead receiver never holds up a
call, and never holds up another alert for longer than its timeout.

The webhook URL may carry a token, so logs name only its scheme and host.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import structlog

log = structlog.get_logger("pbx.billing")

USER_AGENT: Final = "pbx-budget-alerts/1"
_STOP: Final = object()


def shown(url: str) -> str:
    """``url`` as a log may show it: scheme and host, no path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def post_json(url: str, payload: Mapping[str, Any], timeout: float) -> int:
    """POST ``payload`` to ``url``; the status (raises OSError on failure to connect)."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "content-type": "application/json; charset=utf-8", "user-agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only: schema)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


class WebhookSender:
    """A queue of alerts and the thread that POSTs them, retrying."""

    def __init__(self, *, attempts: int = 6, backoff: float = 1.0, max_backoff: float = 60.0,
                 timeout: float = 5.0, post: Callable[[str, Mapping[str, Any], float], int] = post_json) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts, self.backoff, self.max_backoff, self.timeout = attempts, backoff, max_backoff, timeout
        self._post = post
        self._queue: queue.Queue[object] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="budget-alerts", daemon=True)
        self._thread.start()

    def send(self, url: str, payload: Mapping[str, Any]) -> None:
        """Queue ``payload`` for ``url``; returns at once."""
        self._queue.put((url, dict(payload)))

    def close(self, timeout: float) -> None:
        """Stop after the alert being sent (others queued are dropped, logged)."""
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, tuple)
            url: str = item[0]
            payload: dict[str, Any] = item[1]
            self._deliver(url, payload)

    def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            if self._stopping.is_set():
                log.error("budget_alert_dropped", webhook=shown(url), budget=payload.get("budget"),
                          reason="shutting_down")
                return
            outcome: str
            try:
                status = self._post(url, payload, self.timeout)
                if 200 <= status < 300:
                    log.info("budget_alert_sent", webhook=shown(url), budget=payload.get("budget"),
                             period=payload.get("period"), attempt=attempt)
                    return
                outcome = f"status_{status}"
            except (OSError, ValueError) as error:  # refused, timed out, bad URL
                outcome = type(error).__name__
            log.warning("budget_alert_failed", webhook=shown(url), budget=payload.get("budget"), attempt=attempt,
                        outcome=outcome, retry_in=delay if attempt < self.attempts else None)
            if attempt < self.attempts:
                self._stopping.wait(delay)
                delay = min(delay * 2, self.max_backoff)
        log.error("budget_alert_dropped", webhook=shown(url), budget=payload.get("budget"), reason="attempts")
