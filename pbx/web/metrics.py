"""``/metrics`` in the Prometheus text format (prometheus-client), every
name prefixed ``pbx_``.

Counters that the SIP side bumps (responses sent by code, calls started)
live in :class:`SipCounters`, plain integers the event loop increments;
gauges are read at scrape time from the server (registrations, calls in
progress, the CDR writer's queue, lock-out blocks). A scrape runs on the
event loop and only copies numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

# Bounds (seconds) of the CDR commit latency histogram.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class SipCounters:
    """Counts the SIP side keeps for the metrics (plain ints: no locks on
    the hot path; read on the same loop)."""

    responses: Counter[str] = field(default_factory=Counter)
    calls_started: int = 0
    commit_seconds: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BUCKETS) + 1))
    commit_sum: float = 0.0

    def sent(self, data: bytes) -> None:
        # "SIP/2.0 200 OK": the status code is bytes 8-10 of a response.
        if data.startswith(b"SIP/2.0 "):
            self.responses[data[8:11].decode("ascii", "replace")] += 1

    def commit(self, seconds: float) -> None:
        for index, bound in enumerate(COMMIT_BUCKETS):
            if seconds <= bound:
                self.commit_seconds[index] += 1
                break
        else:
            self.commit_seconds[-1] += 1
        self.commit_sum += seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    registrations: int
    calls_in_progress: int
    retransmissions: int
    cdr_queue: int
    blocks: int
    lockouts_total: int


class PbxCollector(Collector):
    def __init__(self, counters: SipCounters, snapshot: Callable[[], Snapshot]) -> None:
        self.counters = counters
        self.snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        now = self.snapshot()
        yield GaugeMetricFamily("pbx_registrations", "Registered contacts now", value=now.registrations)
        yield GaugeMetricFamily("pbx_calls_in_progress", "Calls in progress now", value=now.calls_in_progress)
        yield CounterMetricFamily("pbx_calls", "Calls started (rate() of it: calls per second)",
                                  value=self.counters.calls_started)
        responses = CounterMetricFamily("pbx_sip_responses", "SIP responses sent, by status code", labels=["code"])
        for code, count in sorted(self.counters.responses.items()):
            responses.add_metric([code], count)
        yield responses
        yield CounterMetricFamily("pbx_sip_retransmissions", "Requests and responses sent again by a timer",
                                  value=now.retransmissions)
        yield GaugeMetricFamily("pbx_cdr_writer_queue", "Database writes waiting (CDRs and the rest)",
                                value=now.cdr_queue)
        buckets, total = [], 0
        for bound, count in zip((*map(str, COMMIT_BUCKETS), "+Inf"), self.counters.commit_seconds, strict=True):
            total += count
            buckets.append((bound, total))
        yield HistogramMetricFamily("pbx_cdr_commit_seconds", "Time from a CDR write's submission to its commit",
                                    buckets=buckets, sum_value=self.counters.commit_sum)
        yield GaugeMetricFamily("pbx_lockout_blocks", "Sources blocked by the lock-out now", value=now.blocks)
        yield CounterMetricFamily("pbx_lockouts", "Blocks set by the lock-out since start", value=now.lockouts_total)


def exposition(counters: SipCounters, snapshot: Callable[[], Snapshot]) -> Callable[[], tuple[bytes, str]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PbxCollector(counters, snapshot))
    return lambda: (generate_latest(registry), CONTENT_TYPE_LATEST)
