"""Webhooks against a real local HTTP server: signed, retried with
back-off after failures, given up after the last attempt."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pbx.web.webhook import ATTEMPTS, CallEnded, WebhookSender, sign


class Receiver:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.done = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                ok = len(receiver.received) > receiver.failures
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if ok:
                    receiver.done.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    running = Receiver(getattr(request, "param", 0))
    yield running
    running.server.shutdown()


EVENT = CallEnded(event="call.ended", call_uuid="c0ffee", caller="1003", caller_name="Lê Minh Châu", callee="1004",
                  destination="1004", disposition="NO_ANSWER", started_at="2027-01-05T03:00:00+00:00",
                  answered_at=None, ended_at="2027-01-05T03:00:30+00:00", hunt_group=None, answered_by=None)


@pytest.mark.parametrize("receiver", [2], indirect=True)
def test_a_failing_receiver_gets_the_call_again_after_doubling_waits(receiver: Receiver) -> None:
    waits: list[float] = []
    sender = WebhookSender(lambda: [(1, receiver.url, "s3cret", True)], sleep=waits.append)
    try:
        sender.call_ended(EVENT)
        assert receiver.done.wait(10)
    finally:
        sender.close()
    assert len(receiver.received) == 3 and waits == [1.0, 2.0]
    headers, body = receiver.received[-1]
    assert headers["x-pbx-signature"] == sign("s3cret", body)
    sent = json.loads(body)
    assert (sent["caller"], sent["callee"], sent["disposition"]) == ("1003", "1004", "NO_ANSWER")
    assert sender.delivered == 1 and sender.failed == 0


@pytest.mark.parametrize("receiver", [100], indirect=True)
def test_a_dead_receiver_is_given_up_after_the_last_attempt(receiver: Receiver) -> None:
    waits: list[float] = []
    sender = WebhookSender(lambda: [(1, receiver.url, "k", True), (2, receiver.url, "k", False)], sleep=waits.append)
    sender.call_ended(EVENT)
    sender.close(timeout=10)
    assert len(receiver.received) == ATTEMPTS  # the inactive hook is never called
    assert waits == [1.0, 2.0, 4.0, 8.0] and sender.failed == 1
