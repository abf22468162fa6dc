"""The fork engine's one outcome rule (pbx.calls.fork.outcome), table-driven:
the final statuses of every branch in, the one answer for the caller out."""

from __future__ import annotations

import pytest

from pbx.calls.fork import BranchEnd, Outcome, outcome
from pbx.cdr.records import Disposition, HangupSide

UNREACHABLE = Outcome(480, Disposition.UNAVAILABLE, "member_unreachable")
GATEWAYS_DOWN = BranchEnd(503, "trunk_unavailable", Disposition.CONGESTION, HangupSide.PBX)


@pytest.mark.parametrize(("ends", "unreachable", "expected"), [
    # §16.7: a 6xx beats everything; 600 means busy everywhere.
    ([BranchEnd(486), BranchEnd(603)], None, Outcome(603, Disposition.REJECTED, "declined")),
    ([BranchEnd(480), BranchEnd(600)], None, Outcome(600, Disposition.BUSY, "busy")),
    ([BranchEnd(404), BranchEnd(486)], None, Outcome(486, Disposition.BUSY, "busy")),
    # Phones that rang out or were cancelled: nobody answered.
    ([BranchEnd(408), BranchEnd(480), BranchEnd(487)], None, Outcome(480, Disposition.NO_ANSWER, "no_answer")),
    # A member whose numbers are all out of reach is "unreachable", not an error.
    ([GATEWAYS_DOWN], UNREACHABLE, UNREACHABLE),
    ([BranchEnd(480), GATEWAYS_DOWN], UNREACHABLE, UNREACHABLE),
    # Otherwise the best final: 4xx before 5xx, in the branch's own words.
    ([GATEWAYS_DOWN], None, Outcome(503, Disposition.CONGESTION, "trunk_unavailable", HangupSide.PBX)),
    ([BranchEnd(500), BranchEnd(404)], None, Outcome(404, Disposition.REJECTED, "callee_error")),
    ([BranchEnd(480, "trunk_480", Disposition.UNAVAILABLE)], None,
     Outcome(480, Disposition.UNAVAILABLE, "trunk_480")),
    ([BranchEnd(302), BranchEnd(500)], None, Outcome(500, Disposition.FAILED, "callee_error")),
    ([], None, Outcome(480, Disposition.UNAVAILABLE, "not_registered", HangupSide.PBX)),
])
def test_outcome(ends: list[BranchEnd], unreachable: Outcome | None, expected: Outcome) -> None:
    assert outcome(ends, unreachable=unreachable) == expected
