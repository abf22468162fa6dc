"""Calls per second through Kamailio + one node vs Kamailio + two nodes
(issue 19), with the CPU each part spends per call, so scaling can be
projected.

Each step: SIPp callers (tests/test_sipp_calls.py's phones: 20 extensions
calling extension 2000, a SIPp callee registered through the edge; every
call INVITE/407/INVITE/200/ACK, 0.5 s of talk, BYE) place RATE calls a
second for SECONDS seconds through the edge; the table prints how many
completed, and the CPU time of the Kamailio process group and of each node
per completed call (from /proc). One PostgreSQL schema per cluster.

    python bench/cluster_calls.py                        # rates 20,40,80 for 10 s, one node then two
    python bench/cluster_calls.py --rates 50,100 --seconds 20

The machine this ran on has 2 cores shared with other work, and SIPp,
Kamailio, PostgreSQL and the nodes all run on it: the calls/s are what this
box carries, not what a node can; the CPU per call is the figure to project
from (a node's capacity is about its cores x 1000 / node ms per call).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from procfs import cpu_ticks, group_members  # noqa: E402
from tests.e2e.cluster import Cluster, start_cluster  # noqa: E402
from tests.test_sipp_calls import Phones, dialplan_text, kill_group, logged_call_ids, sipp_binary  # noqa: E402
from tests.test_sipp_cluster import EdgePhones  # noqa: E402

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def ticks(pgid: int) -> int:
    return cpu_ticks(group_members(pgid))


def step(cluster: Cluster, phones: Phones, rate: int, seconds: int) -> tuple[int, int, float, list[float]]:
    """(placed, completed, Kamailio ms/call, each node's ms/call)."""
    groups = {name: server.process.pid for name, server in cluster.nodes.items()}
    edge_before = ticks(cluster.kamailio.process.pid)
    nodes_before = {name: ticks(pgid) for name, pgid in groups.items()}
    callers = phones.start_callers(rate=rate, calls=rate * seconds)
    try:
        callers.wait(timeout=seconds + 150)
    finally:
        kill_group(callers)
    time.sleep(1.0)  # the last BYEs' CDR writes
    completed = len(logged_call_ids(phones.workdir / "uac.log", "completed"))
    per_call = max(completed, 1)
    edge_ms = (ticks(cluster.kamailio.process.pid) - edge_before) * TICK_MS / per_call
    node_ms = [(ticks(pgid) - nodes_before[name]) * TICK_MS / per_call for name, pgid in groups.items()]
    return rate * seconds, completed, edge_ms, node_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="20,40,80")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    print(f"{os.cpu_count()} cores (shared); SIPp, Kamailio, PostgreSQL and the nodes on one machine")
    print(f"{'nodes':>5}{'calls/s':>9}{'placed':>8}{'completed':>11}{'edge ms/call':>14}"
          f"{'node ms/call (each)':>24}{'all nodes ms/call':>19}")
    for nodes in (("node-a",), ("node-a", "node-b")):
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as work:
            directory = Path(work)
            with start_cluster(directory / "cluster", dialplan_text(), nodes=nodes, flood_requests=10**6) as cluster:
                phones = EdgePhones(sipp_binary(), directory, cluster.nodes["node-a"], edge=cluster.edge)
                with phones.callee(None):
                    cluster.wait_known("2000")
                    for rate in rates:
                        placed, completed, edge_ms, node_ms = step(cluster, phones, rate, args.seconds)
                        each = " / ".join(f"{ms:.2f}" for ms in node_ms)
                        print(f"{len(nodes):>5}{rate:>9}{placed:>8}{completed:>11}{edge_ms:>14.2f}"
                              f"{each:>24}{sum(node_ms):>19.2f}", flush=True)
    print("projection: calls/s a node carries ~ its cores x 1000 / (node ms/call); the edge ~ its cores x 1000"
          " / (edge ms/call); one run per row")


if __name__ == "__main__":
    main()
