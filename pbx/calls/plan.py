"""From a routing decision to what the coordinator does: a closed union.

Routing (:mod:`pbx.routing.engine`) says *who* (an extension, a group
member, a number through a trunk, or no). This module says *how*: a
:class:`Ring` of fork targets (every registered contact of an extension,
a member's desk and mobile, a trunk with its gateways) with the ring time
and the words for an unreachable callee, an :class:`End` with the status
for the caller (and, when the dialplan wants it, the announcement the
caller hears first), or an :class:`AnswerMenu`: the PBX answers and runs
an auto attendant. The coordinator runs the result with ``match`` and
``assert_never``.

A hunt group (:mod:`pbx.calls.hunt`) becomes a ``Ring`` that carries the
group (:class:`~pbx.calls.hunt.HuntRing`), or :class:`Overflowing` when
nobody in it can take the call; the controller then routes the group's
overflow destination for that condition.

Pure: the registered contacts and the clock's reading come in as values.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, assert_never

import structlog

from pbx.calls.fork import ContactTarget, Outcome, Target, TrunkTarget
from pbx.calls.hunt import HuntRing, HuntView, Unavailable, plan_hunt
from pbx.cdr.records import Disposition, HangupSide
from pbx.registrar.bindings import Binding
from pbx.routing.conferences import Conference
from pbx.routing.dialplan import Dialplan, Extension
from pbx.calls.local import PHRASE_FOR_STATUS
from pbx.calls.features import ForwardOnFail
from pbx.routing.engine import (AgentCode, CodeRequired, Decision, Feature, Hunt, Reject, Ring as RingExtension,
                                JoinConference, RingMember, RunIvr, ToTrunk)
from pbx.routing.ivr import IvrMenu
from pbx.sip.message import Header
from pbx.trunks.outbound import RING_TIMEOUT as TRUNK_RING_TIMEOUT
from pbx.trunks.outbound import TrunkDialling

if TYPE_CHECKING:
    from pbx.calls.budgets import SharedHold

log = structlog.get_logger("pbx.calls")

MEMBER_UNREACHABLE = Outcome(480, Disposition.UNAVAILABLE, "member_unreachable", HangupSide.CALLEE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring:
    """Ring ``targets`` (a fork); give up after ``ring_timeout`` seconds."""

    targets: tuple[Target, ...]
    ring_timeout: float
    unreachable: Outcome | None = None
    """What the caller hears when every target failed without a telling
    status (a group member's numbers all out of reach)."""
    hunt: HuntRing | None = None
    """The hunt group rung, when it is one: its overflow and CDR columns."""
    forward: ForwardOnFail | None = None
    """Where the call goes if the extension is busy or does not answer."""
    voicemail: str | None = None
    """The mailbox that takes the call when nobody answers (after any
    forward): the rung extension's, when it has one."""
    hold: SharedHold | None = None
    """Budgets shared by several nodes: reserve this in the store before
    anything rings (``pbx.calls.budgets``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class End:
    """Refuse the call: ``status`` to the caller, a CDR with ``disposition``."""

    status: int
    disposition: Disposition
    reason: str
    side: HangupSide = HangupSide.PBX
    headers: tuple[Header, ...] = ()
    phrase: str | None = None
    """Reason phrase of the final response; None: the status's usual one."""
    announcement: str | tuple[str, ...] | None = None
    """Prompt (or prompts, in order) said first (183 with early media), when
    the call can carry it."""
    language: str = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class Overflowing:
    """Nobody in a hunt group can take the call: route the group's
    destination for ``unavailable.condition`` (or tell the caller)."""

    unavailable: Unavailable


@dataclass(frozen=True, slots=True, kw_only=True)
class Hunting:
    """What ringing a hunt group reads besides the plan: the agents' state,
    who is on a call, the random source and today's date (the plan's zone)."""

    view: HuntView
    busy: Callable[[str], bool]
    rng: random.Random
    day: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerMenu:
    """Answer the call and run ``menu``, speaking ``language``."""

    menu: IvrMenu
    language: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AskCode:
    """Answer the call and ask for an account code, speaking ``language``
    (:mod:`pbx.calls.codes` runs the rest)."""

    decision: CodeRequired
    language: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerConference:
    """Answer the call and put the caller into ``room`` (its PIN asked
    first), speaking ``language``."""

    room: Conference
    language: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveMessage:
    """Answer and take a message for ``mailbox``: the extension was busy,
    did not answer or had no phone (``disposition`` says which, for the CDR)."""

    mailbox: str
    disposition: Disposition


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenMailbox:
    """Answer and run the mailbox menu (``*97``: ``mailbox`` known and the
    caller its owner's phone; ``*98``: asks for what it was not given)."""

    mailbox: str | None
    authenticated: bool
    language: str


Action = Ring | End | Overflowing | AnswerMenu | AskCode | AnswerConference | LeaveMessage | OpenMailbox


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who is calling, as the legs present them."""

    number: str
    name: str | None
    extension: Extension | None
    from_trunk: str | None


def plan_call(decision: Decision, caller: Caller, plan: Dialplan,
              contacts: Callable[[str], list[Binding]], call_id: str, hunting: Hunting | None = None, *,
              transfer: bool = False) -> Action:
    """What to do for ``decision``. ``contacts(number)``: an extension's
    registered contacts now. ``transfer``: a menu placing the call it
    answered (an outside number was checked against the menu's rights)."""
    match decision:
        case Hunt():
            if hunting is None:
                log.error("hunt_without_state", call_id=call_id, group=decision.group.number)
                return End(status=503, disposition=Disposition.FAILED, reason="hunt_unavailable")
            planned = plan_hunt(decision, caller_number=caller.number, domain=plan.domain, trunks=plan.trunks,
                                view=hunting.view, contacts=contacts, busy=hunting.busy, rng=hunting.rng,
                                day=hunting.day)
            if isinstance(planned, Unavailable):
                return Overflowing(unavailable=planned)
            targets, ring = planned
            log.info("hunt_ringing", call_id=call_id, group=ring.group.number, strategy=ring.group.strategy,
                     order=list(ring.order))
            return Ring(targets=tuple(targets), ring_timeout=float(ring.group.total_seconds), hunt=ring)
        case AgentCode() | Feature():
            # Agent and feature codes change lasting state: the controller
            # answers them before planning. Reaching here is a bug, told plainly.
            log.error("feature_code_not_handled", call_id=call_id)
            return End(status=500, disposition=Disposition.FAILED, reason="feature_code_not_handled")
        case RingExtension():
            extension = decision.extension
            found = contacts(extension.number)
            if not found:
                return _announced(End(status=480, disposition=Disposition.UNAVAILABLE, reason="not_registered"),
                                  caller, plan)
            from_uri = _caller_uri(caller, plan.domain)
            return Ring(targets=tuple(ContactTarget(binding=b, extension=extension.number, from_uri=from_uri)
                                      for b in found), ring_timeout=extension.ring_timeout)
        case RingMember():
            return _ring_member(decision, caller, plan, contacts, call_id)
        case ToTrunk():
            if caller.extension is None and decision.for_group is None and not transfer:
                # Routing gives trunk calls only DIDs, but a call from a
                # trunk must never be relayed back out (toll fraud); a menu
                # may, with the rights its class of service gives it.
                log.warning("trunk_relay_refused", call_id=call_id, trunk=caller.from_trunk,
                            to_trunk=decision.trunk)
                return End(status=403, disposition=Disposition.REJECTED, reason="no_trunk_to_trunk")
            trunk = plan.trunks.get(decision.trunk)
            if trunk is None:
                log.error("trunk_missing", call_id=call_id, trunk=decision.trunk)
                return End(status=503, disposition=Disposition.FAILED, reason="unknown_trunk")
            caller_id = decision.caller_id or trunk.caller_id or caller.number
            dialling = TrunkDialling(trunk=trunk, number=decision.number, caller_id=caller_id)
            return Ring(targets=(TrunkTarget(dialling=dialling),), ring_timeout=TRUNK_RING_TIMEOUT)
        case Reject():
            return _announced(_refusal(decision, caller, plan.domain), caller, plan)
        case RunIvr():
            return AnswerMenu(menu=decision.menu, language=decision.menu.language or plan.language_for(caller.extension))
        case JoinConference():
            return AnswerConference(room=decision.room,
                                    language=decision.room.language or plan.language_for(caller.extension))
        case CodeRequired():
            return AskCode(decision=decision, language=plan.language_for(caller.extension))
        case _:
            assert_never(decision)


def over_tls_only(found: list[Binding]) -> list[Binding]:
    """The contacts a ``sips:`` call may ring: those registered over TLS.
    A SIPS Request-URI asks for TLS on every hop (RFC 3261 §26.2.2,
    RFC 5630), so a phone on UDP or TCP is never rung for it."""
    return [binding for binding in found if binding.source.transport == "tls"]


def sips_not_allowed(domain: str) -> End:
    """The refusal of a ``sips:`` call whose callee is registered, but not
    over TLS: 480 with Warning 380 (RFC 5630 §3.1.3's code for it)."""
    return End(status=480, disposition=Disposition.UNAVAILABLE, reason="sips_not_allowed",
               headers=(("warning", f'380 {domain} "SIPS Not Allowed"'),))


def _announced(end: End, caller: Caller, plan: Dialplan) -> End:
    """``end`` with the announcement its status calls for, if the dialplan
    wants refusals announced."""
    phrase = PHRASE_FOR_STATUS.get(end.status)
    if end.reason == "caller_blocked" and plan.incoming.announce:
        # Asked for in the plan (incoming.blocked: announce), whatever
        # media.announce_refusals says.
        return replace(end, announcement="not_available", language=plan.language_for(caller.extension))
    if phrase is None or not plan.media.announce_refusals:
        return end
    return replace(end, announcement=phrase, language=plan.language_for(caller.extension))


def _refusal(decision: Reject, caller: Caller, domain: str) -> End:
    """Refuse as routing decided (403 barred, 404 unknown): a Reason with
    the tag and, for our own phones, a Warning (RFC 3261 §20.43, code 399)
    naming the rule and why, so a phone or a trace shows which rule refused
    it. Callers from outside are not told our rules."""
    status = decision.status
    headers: tuple[Header, ...] = ()
    if caller.from_trunk is None:
        text = quoted_text(f"{decision.rule}: {decision.detail or decision.reason}")
        headers = (("reason", f'SIP;cause={status};text="{quoted_text(decision.reason)}"'),
                   ("warning", f'399 {domain} "{text}"'))
    return End(status=status, disposition=Disposition.REJECTED, reason=decision.reason, headers=headers)


def _ring_member(decision: RingMember, caller: Caller, plan: Dialplan,
                 contacts: Callable[[str], list[Binding]], call_id: str) -> Action:
    """A short-number group member: the registered contacts of their
    extension and/or a trunk leg to their mobile, together, or the desk
    first and the mobile joining after ``desk_seconds`` (or at once when
    every desk leg failed). The desk leg shows the caller's short number,
    so an in-group call looks like one and can be called back by it; the
    mobile leg presents the caller ID routing names."""
    targets: list[Target] = []
    desk: list[Binding] = []
    if decision.extension is not None:
        desk = contacts(decision.extension.number)
        short = decision.presented_number
        display = f"{short} {caller.name}" if caller.name else short
        from_uri = f'"{quoted_text(display)}" <sip:{short}@{plan.domain}>'
        targets.extend(ContactTarget(binding=b, extension=decision.extension.number, from_uri=from_uri)
                       for b in desk)
    wait = float(decision.desk_seconds) if desk and decision.order == "desk_first" else 0.0
    mobile = decision.mobile
    if mobile is not None:
        trunk = plan.trunks.get(mobile.trunk)
        if trunk is None:  # the plan changed under the call
            log.error("trunk_missing", call_id=call_id, trunk=mobile.trunk)
        else:
            caller_id = mobile.caller_id or trunk.caller_id or caller.number
            targets.append(TrunkTarget(dialling=TrunkDialling(trunk=trunk, number=mobile.number,
                                                              caller_id=caller_id), after=wait))
    if not desk and mobile is None:
        return End(status=480, disposition=Disposition.UNAVAILABLE, reason="not_registered")
    ring_timeout = decision.extension.ring_timeout if decision.extension is not None else TRUNK_RING_TIMEOUT
    log.info("member_ringing", call_id=call_id, group=decision.group, member=decision.member.short,
             desk_contacts=len(desk), mobile=mobile.number if mobile is not None else None,
             mobile_after=wait if mobile is not None else None, presented=decision.presented_number)
    return Ring(targets=tuple(targets), ring_timeout=wait + ring_timeout, unreachable=MEMBER_UNREACHABLE)


def quoted_text(text: str) -> str:
    """``text`` made safe inside a SIP quoted-string (RFC 3261 §25.1): no
    control characters, quotes and backslashes escaped, bounded length."""
    printable = "".join(char if char >= " " and char != "\x7f" else " " for char in text)[:300]
    return quote(printable)


def quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _caller_uri(caller: Caller, domain: str) -> str:
    """From of a leg towards an extension: who is calling, as shown. The
    name may come from the API, the console or a directory: a line break
    in it would start a header of the caller's making (quoted_text)."""
    display = f'"{quoted_text(caller.name)}" ' if caller.name else ""
    return f"{display}<sip:{caller.number}@{domain}>"
