"""Calls that need an account code: the call layer's side.

Routing says :class:`~pbx.routing.engine.CodeRequired`; this module runs
it for the controller. In order:

1. is the phone locked out for wrong codes? Then its own announcement and
   403, disposition ``AUTH_FAILED`` (the code is not asked for: a guesser
   learns nothing);
2. a code given with the number (the dial prefix) is checked at once; else
   the PBX answers and asks for it (:class:`~pbx.calls.plan.AskCode`, the
   prompt machine :class:`~pbx.accountcodes.prompt.CodePrompt` on the
   call's media side), and each entry is checked;
3. a right code: routing decides again with the code owner's class of
   service (:func:`~pbx.routing.engine.decide_with_code`); allowed, the call
   is placed (from the prompt: with ringback, then the caller's media goes
   to the callee, as a menu's transfer does) and carries the code's id,
   owner and rights into the CDR; not allowed: "this call is not allowed".

Looking codes up is the store's (:class:`CodeChecker`, answered later
through ``then``); nothing here blocks. The digits are handed from the
prompt (or the dialled number) to the checker and kept nowhere else: no
log line, no CDR column, no exception text carries them.

Rights follow the call: a right code sets :attr:`Call.paid_by` to the
phone with the code's class of service (:func:`walking`), so a transfer of
the call is checked against the code's rights, never the phone's own on
top, and :attr:`Call.account` keeps billing it to the code's owner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

import structlog

from pbx.accountcodes.codes import StoredCode
from pbx.accountcodes.prompt import Accepted, CheckCode, CodePrompt
from pbx.calls.plan import AskCode, End
from pbx.cdr.records import Disposition
from pbx.ivr.menu import Hangup
from pbx.routing.dialplan import Extension
from pbx.routing.engine import CallRequest, CodeRequired, ToTrunk, decide_with_code

if TYPE_CHECKING:
    from pbx.calls.call import Call
    from pbx.calls.controller import CallController

log = structlog.get_logger("pbx.calls")


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """The store's answer for one entry."""

    outcome: Literal["valid", "invalid", "locked"]
    code: StoredCode | None = None
    reason: str = ""
    """Why not (``unknown``, ``disabled``, ``expired`` ...); never the digits."""


class CodeChecker(Protocol):
    """The account code store as the call layer sees it. Each method
    answers later, on the event loop, through ``then``."""

    def locked(self, source: str, then: Callable[[bool], None]) -> None: ...

    def verify(self, digits: str, source: str, then: Callable[[Verification], None]) -> None: ...

    def refused(self, code: StoredCode, source: str) -> None:
        """A right code was asked for a call its rights do not cover."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountUse:
    """The account code a call was placed with: whom it is billed to and
    whose rights it has (the CDR's ``account_code``, ``account_owner``,
    ``account_rights``)."""

    code_id: int
    owner: str
    class_of_service: str


@dataclass(slots=True, kw_only=True)
class CodeCall:
    """A call's account code business while it lasts."""

    decision: CodeRequired
    request: CallRequest
    given: str | None = field(default=None, repr=False)
    """The code dialled with the number, until it is handed to the checker."""
    wrong: int = 0
    """Wrong codes entered in this call."""


def walking(request: CallRequest, code: StoredCode) -> Extension | None:
    """The calling phone as the code makes it: the code's class of service
    in place of its own, and not asked for a code again. What a transfer
    of the call is placed with (:meth:`Call.payer`): the code's rights
    follow the call, never the phone's own on top."""
    if request.caller is None:
        return None
    return replace(request.caller, class_of_service=code.class_of_service, account_codes="none")


def source_of(call: Call) -> str:
    """Whose wrong codes count together: the calling extension's."""
    return f"ext:{call.caller_number}"


class AccountCodes:
    """Runs :class:`CodeRequired` decisions for a controller."""

    def __init__(self, controller: CallController) -> None:
        self._controller = controller

    def start(self, call: Call, decision: CodeRequired, request: CallRequest, given: str | None) -> None:
        """Begin with the lock-out check; the rest follows its answer."""
        controller = self._controller
        checker = controller.codes
        if checker is None:
            log.error("account_codes_unavailable", call_id=call.a_call_id, uuid=call.uuid)
            call.run(End(status=503, disposition=Disposition.FAILED, reason="account_codes_unavailable"), controller.now)
            return
        call.code = CodeCall(decision=decision, request=request, given=given)
        checker.locked(source_of(call), lambda locked: controller.act(call, lambda: self._lock_known(call, locked)))

    def _lock_known(self, call: Call, locked: bool) -> None:
        code = call.code
        if code is None or not call.routing:
            return  # cancelled while the store answered
        controller = self._controller
        if locked:
            code.given = None
            log.warning("account_code_locked_out", call_id=call.a_call_id, uuid=call.uuid, source=source_of(call))
            call.run(self._refusal(call, "account_code_locked", "code_locked", Disposition.AUTH_FAILED),
                     controller.now)
        elif code.given is not None:
            given, code.given = code.given, None
            self._verify(call, given)
        else:
            call.run(AskCode(decision=code.decision, language=controller.plan.language_for(call.caller)),
                     controller.now)

    def prompt(self) -> CodePrompt:
        settings = self._controller.plan.account_codes
        return CodePrompt(attempts=settings.attempts, first_digit_timeout=settings.first_digit_timeout,
                          digit_timeout=settings.digit_timeout)

    def on_prompt(self, call: Call, action: CheckCode | Accepted | Hangup) -> None:
        """What the prompt machine says, carried out for ``call``."""
        if not call.answering_locally:
            return
        match action:
            case CheckCode():
                self._verify(call, action.digits)
            case Accepted():
                self._place(call)
            case Hangup():
                # Never answered by anyone: the CDR says why it ended.
                disposition = Disposition.REJECTED if action.reason == "not_allowed" else Disposition.AUTH_FAILED
                call.end_locally(action.reason, disposition, self._controller.now)

    def _verify(self, call: Call, digits: str) -> None:
        checker = self._controller.codes
        assert checker is not None
        checker.verify(digits, source_of(call),
                       lambda found: self._controller.act(call, lambda: self._verified(call, found)))

    def _verified(self, call: Call, found: Verification) -> None:
        code = call.code
        if code is None or not (call.routing or call.answering_locally):
            return
        controller = self._controller
        prompted = call.media is not None
        if found.outcome == "locked":
            log.warning("account_code_locked_out", call_id=call.a_call_id, uuid=call.uuid, source=source_of(call),
                        reason=found.reason)
            self._tell(call, "locked", "account_code_locked", "code_locked", Disposition.AUTH_FAILED)
            return
        if found.outcome == "invalid" or found.code is None:
            code.wrong += 1
            call.unanswered = Disposition.AUTH_FAILED  # should the caller give up now
            log.warning("account_code_refused", call_id=call.a_call_id, uuid=call.uuid, source=source_of(call),
                        reason=found.reason, wrong_in_call=code.wrong, prompted=prompted)
            self._tell(call, "invalid", "account_code_invalid", "invalid_code", Disposition.AUTH_FAILED)
            return
        stored = found.code
        decision = decide_with_code(code.request, controller.plan, stored.class_of_service, stored.label)
        if not isinstance(decision, ToTrunk):
            assert controller.codes is not None
            controller.codes.refused(stored, source_of(call))
            call.account = AccountUse(code_id=stored.id, owner=stored.owner, class_of_service=stored.class_of_service)
            log.warning("account_code_not_allowed", call_id=call.a_call_id, uuid=call.uuid, code=stored.label,
                        class_of_service=stored.class_of_service, reason=decision.reason, rule=decision.rule)
            self._tell(call, "not_allowed", decision.reason, "not_allowed", Disposition.REJECTED)
            return
        call.account = AccountUse(code_id=stored.id, owner=stored.owner, class_of_service=stored.class_of_service)
        call.paid_by = walking(code.request, stored)
        call.code_decision = decision
        call.rule, call.call_class = decision.rule, decision.call_class
        log.info("account_code_accepted", call_id=call.a_call_id, uuid=call.uuid, code=stored.label,
                 class_of_service=stored.class_of_service, prompted=prompted,
                 steps=[f"{step.rule}: {step.outcome}" for step in decision.steps])
        media = call.media
        if media is not None:
            media.code_checked("valid")  # the prompt ends; its Accepted places the call
        else:
            self._place(call)

    def _tell(self, call: Call, outcome: Literal["invalid", "not_allowed", "locked"], reason: str, phrase: str,
              disposition: Disposition) -> None:
        """A code that does not let the call through: the prompt says so
        (and asks again, or says goodbye); a code given with the number
        ends the call with the announcement and 403."""
        if call.media is not None and call.answering_locally:
            call.media.code_checked(outcome)
            return
        call.run(self._refusal(call, reason, phrase, disposition), self._controller.now)

    def _refusal(self, call: Call, reason: str, phrase: str, disposition: Disposition) -> End:
        return End(status=403, disposition=disposition, reason=reason, announcement=phrase,
                   language=self._controller.plan.language_for(call.caller),
                   headers=(("reason", f'SIP;cause=403;text="{reason}"'),))

    def _place(self, call: Call) -> None:
        decision = call.code_decision
        if decision is None:
            return
        controller = self._controller
        action = controller.plan_for(call, decision, transfer=call.media is not None)
        if call.media is not None:
            call.transfer(action, decision.rule, controller.now)
        else:
            call.run(action, controller.now)
