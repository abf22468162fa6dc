"""Load through the cluster's edge while a node dies (issue 19's acceptance):
SIPp callers and a SIPp callee (extension 2000, registered through the edge)
talk through a real Kamailio to two `pbx serve` nodes on one PostgreSQL;
in the middle of 20 calls per second node-a is killed (SIGKILL).

Only its calls in progress are lost: every call SIPp saw completed has its
ANSWERED row, nothing else stays open or comes back twice, the calls placed
after the kill complete on node-b (a new INVITE the dead node leaves
unanswered is retried there by the edge), and when node-a starts again its
rows that were open come back INTERRUPTED. Select with ``-m load``.
"""

from __future__ import annotations

import signal
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest

from pbx.store.db import make_engine
from tests.e2e.cluster import start_cluster
from tests.test_sipp_calls import (Phones, assert_no_duplicates, cdr_rows, dialplan_text, kill_group,
                                   logged_call_ids, sipp_binary, wait_for_ended_rows)

pytestmark = [pytest.mark.e2e, pytest.mark.load, pytest.mark.postgres,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")]

RATE: Final = 20
SECONDS: Final = 12
ENDED_BEFORE_KILL: Final = 40


@dataclass
class EdgePhones(Phones):
    """The SIPp phones of tests/test_sipp_calls.py, pointed at the edge."""

    edge: str = ""

    @property
    def target(self) -> str:
        return self.edge


@pytest.mark.timeout(300)
def test_killing_a_node_mid_load_loses_only_its_calls_in_progress(tmp_path: Path) -> None:
    with start_cluster(tmp_path / "cluster", dialplan_text(), flood_requests=10**6) as cluster:
        engine = make_engine(cluster.db_url)
        try:
            doomed, survivor = cluster.nodes["node-a"], cluster.nodes["node-b"]
            phones = EdgePhones(sipp_binary(), tmp_path, survivor, edge=cluster.edge)
            with phones.callee(None):
                cluster.wait_known("2000")
                callers = phones.start_callers(rate=RATE, calls=RATE * SECONDS)
                try:
                    wait_for_ended_rows(engine, ENDED_BEFORE_KILL, callers, timeout=60)
                    os.killpg(doomed.process.pid, signal.SIGKILL)
                    doomed.process.wait(timeout=10)
                    killed_at = datetime.now(UTC)
                    at_kill = {row["call_uuid"]: row for row in cdr_rows(engine)}
                    code = callers.wait(timeout=SECONDS + 120)
                finally:
                    kill_group(callers)
                doomed.restart()   # closes what it left open
            context = phones.context() + "\n" + cluster.output()
            rows = cdr_rows(engine)
        finally:
            engine.dispose()

    assert code in (0, 1), context  # 1: calls cut by the kill failed
    completed = logged_call_ids(tmp_path / "uac.log", "completed")
    in_flight = {uuid for uuid, row in at_kill.items() if row["ended_at"] is None and row["node"] == "node-a"}
    assert in_flight, "no call was in progress on node-a at the kill: the crash tested nothing"

    assert_no_duplicates(rows)
    by_call_id = {row["call_id"]: row for row in rows}
    by_uuid = {row["call_uuid"]: row for row in rows}
    missing = [call_id for call_id in completed if call_id not in by_call_id]
    assert not missing, f"{len(missing)} completed calls have no CDR: {missing[:10]}\n{context}"
    assert all(by_call_id[c]["disposition"] == "ANSWERED" and by_call_id[c]["ended_at"] for c in completed)
    interrupted = {uuid for uuid, row in by_uuid.items() if row["disposition"] == "INTERRUPTED"}
    assert interrupted == in_flight, context
    assert not [row["call_id"] for row in rows if row["ended_at"] is None], context
    after = [by_call_id[c] for c in completed if by_call_id[c]["started_at"] > killed_at]
    assert after, f"no call completed after the kill\n{context}"
    assert {row["node"] for row in after} == {"node-b"}
