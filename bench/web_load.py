"""SIP response times with and without load on the HTTP API.

The web console and API run on the SIP server's own event loop (pbx serve
--http). This starts a real ``pbx serve --http`` with the example dialplan,
then measures OPTIONS round trips (a raw UDP client, one request in flight,
--rate per second for --seconds) twice: alone, and while another process
sends --api-rate API requests a second (a mix of CDR search pages, live
calls, registrations, extension lists and /metrics, over keep-alive
connections with an API token). The table gives each run's round-trip
percentiles and the API's own answer times and errors.

    python bench/web_load.py [--seconds 20] [--rate 50] [--api-rate 50]

Only 127.0.0.1 is used; every loop is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.server import run_server  # noqa: E402
from tests.web.harness import copy_example  # noqa: E402

API_PATHS = ("/api/cdr?limit=50", "/api/live/calls", "/api/live/registrations", "/api/extensions", "/metrics")


def options(port: int) -> bytes:
    return (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.2:5099;rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=b1\r\nTo: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def paced(seconds: float, rate: float) -> Iterator[int]:
    """0, 1, 2 ... at ``rate`` per second (on a fixed schedule, so a slow
    answer does not lower the rate) for ``seconds``."""
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        if (wait := start + sent / rate - time.monotonic()) > 0:
            time.sleep(wait)
        yield sent
        sent += 1


def round_trips(port: int, seconds: float, rate: float) -> tuple[list[float], int]:
    """Milliseconds per answered OPTIONS, and how many went unanswered.

    Sent from ten loopback addresses in turn (127.0.0.2-11), so the PBX's
    per-source limit on unauthenticated requests does not drop them: the
    figure is the loop's latency, not the limiter's."""
    times: list[float] = []
    lost = 0
    sockets = []
    for last in range(2, 12):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((f"127.0.0.{last}", 0))
        udp.settimeout(1.0)
        sockets.append(udp)
    try:
        for sent in paced(seconds, rate):
            udp = sockets[sent % len(sockets)]
            began = time.perf_counter()
            udp.sendto(options(port), ("127.0.0.1", port))
            try:
                udp.recv(4096)
                times.append((time.perf_counter() - began) * 1000)
            except TimeoutError:
                lost += 1
    finally:
        for udp in sockets:
            udp.close()
    return times, lost


def api_load(base: str, token: str, seconds: float, rate: float, results: multiprocessing.Queue[object]) -> None:
    times: list[float] = []
    errors = 0
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=5.0) as client:
        for sent in paced(seconds, rate):
            path = API_PATHS[sent % len(API_PATHS)]
            began = time.perf_counter()
            try:
                if client.get(path).status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            times.append((time.perf_counter() - began) * 1000)
    results.put((times, errors))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=50.0, help="OPTIONS per second")
    parser.add_argument("--api-rate", type=float, default=50.0, help="API requests per second")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="pbx-web-bench-"))
    plan = copy_example(directory / "dialplan")
    with run_server(plan, f"sqlite:///{directory / 'pbx.sqlite3'}", ["udp:127.0.0.1:0"],
                    ("--http", "127.0.0.1:0")) as server:
        base = re.search(r"(http://\S+)/", server.wait_lines("web console http", timeout=30)[0])
        password = re.search(r"one-time password (\S+) ", server.wait_lines("one-time password")[0])
        assert base is not None and password is not None
        with httpx.Client(base_url=base.group(1), timeout=10) as client:
            login = client.post("/api/login", json={"username": "admin", "password": password.group(1)})
            headers = {"Cookie": login.headers["set-cookie"].split(";")[0], "X-CSRF-Token": login.json()["csrf_token"]}
            token = client.post("/api/tokens", json={"name": "bench"}, headers=headers).json()["token"]
        port = server.udp_port
        round_trips(port, 2.0, args.rate)  # warm-up
        alone, lost_alone = round_trips(port, args.seconds, args.rate)
        results: multiprocessing.Queue[object] = multiprocessing.Queue()
        loader = multiprocessing.Process(target=api_load,
                                         args=(base.group(1), token, args.seconds + 1.0, args.api_rate, results))
        loader.start()
        time.sleep(0.5)
        loaded, lost_loaded = round_trips(port, args.seconds, args.rate)
        got = results.get(timeout=args.seconds + 30)
        assert isinstance(got, tuple)
        api_times: list[float] = got[0]
        api_errors: int = got[1]
        loader.join(10)
    print(f"OPTIONS round trips over UDP, {args.rate:g}/s for {args.seconds:g} s each (milliseconds)")
    print(f"{'run':<28}{'answered':>9}{'lost':>6}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for name, times, lost in (("SIP alone", alone, lost_alone),
                              (f"with API {args.api_rate:g} req/s", loaded, lost_loaded)):
        print(f"{name:<28}{len(times):>9}{lost:>6}{statistics.median(times):>8.2f}{percentile(times, 0.95):>8.2f}"
              f"{percentile(times, 0.99):>8.2f}{max(times):>8.2f}")
    print(f"API: {len(api_times)} requests, {api_errors} errors, p50 {statistics.median(api_times):.1f} ms, "
          f"p95 {percentile(api_times, 0.95):.1f} ms, p99 {percentile(api_times, 0.99):.1f} ms")


if __name__ == "__main__":
    main()
