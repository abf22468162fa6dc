"""The call layer's one exception to "a call from a trunk never goes back
out": a menu's own outside-number destination (checked against the menu's
rights by routing) is placed through the trunk; the same decision for a
caller from a trunk that no menu chose is refused (toll fraud)."""

from __future__ import annotations

from pathlib import Path

from pbx.calls.fork import TrunkTarget
from pbx.calls.plan import Caller, End, Ring, plan_call
from pbx.routing.engine import CallRequest, ToTrunk, decide_menu_destination
from pbx.routing.loader import load_dialplan
from tests.routing.test_loader_ivr import GOOD, OPEN


def test_a_menus_outside_number_goes_out_and_nothing_else_from_a_trunk_does(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(GOOD)
    plan = load_dialplan(path)
    main = plan.ivr_menus["main"]
    request = CallRequest(caller=None, trunk="t", dialled="+842800", at=OPEN, caller_number="0912000222")
    decision = decide_menu_destination(plan, main, main.options["3"], "ivr_menus.main.options.3", request)
    assert isinstance(decision, ToTrunk)
    caller = Caller(number="0912000222", name=None, extension=None, from_trunk="t")

    placed = plan_call(decision, caller, plan, lambda number: [], "call-1", transfer=True)
    assert isinstance(placed, Ring) and len(placed.targets) == 1
    target = placed.targets[0]
    assert isinstance(target, TrunkTarget)
    assert (target.dialling.trunk.key, target.dialling.number) == ("t", decision.number)

    refused = plan_call(decision, caller, plan, lambda number: [], "call-2")
    assert isinstance(refused, End) and (refused.status, refused.reason) == (403, "no_trunk_to_trunk")
