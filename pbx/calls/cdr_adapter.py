"""Turns the controller's view of a call into CDR facts (``pbx.cdr.records``)
and hands them to the CDR writer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pbx.calls.call import Call
from pbx.calls.fork import Leg, LegState
from pbx.cdr.records import (
    CallAnswer,
    CallEnd,
    CallRouted,
    CallStart,
    Disposition,
    HangupSide,
    LegAttempt,
    LegResult,
)
from pbx.cdr.writer import CdrWriter
from pbx.routing.tariffs import to_decimal


def _at(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, timezone.utc)


def _leg_result(leg: Leg) -> LegResult:
    if leg.state is LegState.ANSWERED:
        return LegResult.ANSWERED
    if leg.state is LegState.CANCELLED:
        return LegResult.CANCELLED
    status = leg.status
    if status is None or status == 408:
        return LegResult.FAILED if status is None else LegResult.NO_ANSWER
    if status in (486, 600):
        return LegResult.BUSY
    if status == 487:
        return LegResult.CANCELLED
    return LegResult.REJECTED


def _priced(call: Call) -> dict[str, Any]:
    """The cost columns of a call's end, when a tariff priced it."""
    if call.cost is None or call.rate is None:
        return {}
    rate = call.rate
    return {"cost": to_decimal(call.cost, rate.minor_unit), "cost_minor": call.cost, "currency": rate.currency,
            "tariff": rate.tariff.id}


class CdrRecorder:
    """The controller's ``CallRecorder`` on top of :class:`CdrWriter`."""

    def __init__(self, writer: CdrWriter) -> None:
        self.writer = writer
        self._uuids: dict[str, uuid.UUID] = {}
        """Calls started and not ended: their ``uuid`` as the writer's key,
        parsed once."""

    def _uuid(self, call: Call) -> uuid.UUID:
        found = self._uuids.get(call.uuid)
        return found if found is not None else uuid.UUID(call.uuid)

    def call_started(self, call: Call) -> None:
        call_uuid = self._uuids[call.uuid] = uuid.UUID(call.uuid)
        routing = None
        if call.rule is not None or call.trunk is not None:
            member = call.member
            routing = CallRouted(
                call_uuid=call_uuid, rule=call.rule, trunk=call.trunk, call_class=call.call_class,
                short_number=member.short_number if member is not None else None,
                resolved_number=call.resolved_number,
                member=member.label if member is not None else None,
                hunt_group=call.hunt_group,
            )
        self.writer.started(CallStart(
            call_uuid=call_uuid,
            call_id=call.a_call_id or call.uuid,
            started_at=_at(call.started_at),
            caller_number=call.caller_number,
            caller_name=call.caller_name,
            dialed_number=call.dialled or "?",
            caller_department=call.caller.department if call.caller is not None else None,
            project=call.caller.project if call.caller is not None else None,
        ), routing)

    def _trunk_chosen(self, call: Call) -> None:
        # An outbound call's trunk is known only once it is placed, after
        # call_started; a later routing report fills the column in. A group
        # member's desk answering means the mobile's trunk did not carry it.
        winner = call.winner
        if call.outbound is not None and (winner is None or winner.trunk is not None):
            self.writer.routed(CallRouted(call_uuid=self._uuid(call), trunk=call.outbound.trunk.key))

    def _menu_path(self, call: Call) -> None:
        if call.ivr_path:
            self.writer.routed(CallRouted(call_uuid=self._uuid(call), ivr_path=call.ivr_path, rule=call.rule))
        account = call.account
        if account is not None:
            # The code's id and owner, never its digits; with the call
            # class the code's rights gave it.
            self.writer.routed(CallRouted(call_uuid=self._uuid(call), account_code=str(account.code_id),
                                          account_owner=account.owner, account_rights=account.class_of_service,
                                          call_class=call.call_class, rule=call.rule))

    def call_answered(self, call: Call) -> None:
        """The caller was answered: by a callee, by a menu, or by the callee
        a menu transferred it to (a second report: the destination)."""
        assert call.answered_at is not None
        self._trunk_chosen(call)
        if call.hunt_group is not None:
            # The group that answered (an overflow may have led to another).
            self.writer.routed(CallRouted(call_uuid=self._uuid(call), hunt_group=call.hunt_group))
        self._menu_path(call)
        if call.member is not None:
            # Which of the member's numbers took it, and its class (a mobile
            # that answers makes the call a mobile call).
            self.writer.routed(CallRouted(call_uuid=self._uuid(call), resolved_number=call.resolved_number,
                                          call_class=call.call_class))
        self.writer.answered(CallAnswer(
            call_uuid=self._uuid(call),
            answered_at=_at(call.answered_at),
            destination=call.destination or call.dialled,
            answered_by=call.answered_by,
            recording=call.anchor.recorded if call.anchor is not None else None,
        ))

    def call_alive(self, call: Call, at: float) -> None:
        self.writer.alive(_at(at))

    def call_ended(self, call: Call, on_durable: Callable[[], None]) -> None:
        self._trunk_chosen(call)
        self._menu_path(call)
        billed = call.billed_to
        if billed is not None and billed.number != call.caller_number:
            self.writer.routed(CallRouted(call_uuid=self._uuid(call), billed_to=billed.number,
                                          billed_department=billed.department))
        if call.transfers or call.linked_call is not None:
            self.writer.routed(CallRouted(call_uuid=self._uuid(call), transfer="; ".join(call.transfers) or None,
                                          destination=call.destination if call.transfers else None,
                                          linked_call=None if call.linked_call is None
                                          else str(uuid.UUID(call.linked_call))))
        ended = call.ended_at if call.ended_at is not None else call.started_at
        call_uuid = self._uuid(call)
        self._uuids.pop(call.uuid, None)  # the call's last report
        legs = []
        for leg in call.legs:
            leg_end = leg.ended_at if leg.ended_at is not None else ended
            result = _leg_result(leg)
            legs.append(LegAttempt(
                target=leg.target or call.destination or call.dialled,
                contact=leg.contact,
                started_at=_at(leg.started_at),
                ended_at=_at(max(leg_end, leg.started_at)),
                result=result,
                status=leg.status,
                call_id=leg.call_id,
                answered_at=_at(call.answered_at or leg_end) if result is LegResult.ANSWERED else None,
            ))
        self.writer.ended(
            CallEnd(
                call_uuid=call_uuid,
                ended_at=_at(ended),
                disposition=call.disposition or Disposition.FAILED,
                hangup_side=call.hangup_side or HangupSide.PBX,
                hangup_status=None if call.disposition is Disposition.ANSWERED and call.reason == "bye"
                else call.hangup_status,
                reason=call.reason,
                destination=call.destination,
                recording=call.recording_file,
                **_priced(call),
            ),
            legs,
            on_durable,
        )
