"""Screening callers who come in from a trunk: black and white lists for
incoming calls, company-wide (``incoming:``), per inbound number (the DID's
``incoming:``) and per extension (its ``incoming:``).

The caller's number, as the provider presents it, is turned into E.164 with
the plan's default number plan (``0912…`` and ``+84912…`` are one caller),
and lists match that form, as for outgoing calls. The rule:

1. a caller on a white list of any level is let through every black list;
2. otherwise the first black list that holds the caller (company, then the
   DID, then the extension) refuses the call;
3. a level with ``whitelist_only`` lets through only callers on its own
   white list (a withheld number included: it is on no list).

Pure: the routing engine runs it for every call from a trunk, so ``pbx
explain --from trunk:KEY`` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.routing.classes_of_service import NumberList
from pbx.routing.numbering import InE164, Numbering, to_e164


@dataclass(frozen=True, slots=True, kw_only=True)
class Screening:
    """One level's lists for incoming callers."""

    blacklist: tuple[NumberList, ...] = ()
    whitelist: tuple[NumberList, ...] = ()
    whitelist_only: bool = False
    announce: bool = False
    """Company-wide only (``incoming.blocked: announce``): a refused caller
    hears "not available" in early media before the 603, rather than the
    603 alone. Either way nothing tells the caller it is on a list."""

    def __bool__(self) -> bool:
        return bool(self.blacklist or self.whitelist or self.whitelist_only)


@dataclass(frozen=True, slots=True, kw_only=True)
class Screened:
    """A caller the lists refuse, and the list entry (or rule) that does."""

    rule: str
    """``incoming.blacklist[0]`` …, ``inbound.<did>.incoming.whitelist_only``."""
    outcome: str


def caller_forms(presented: str, numbering: Numbering | None) -> tuple[str, ...]:
    """What lists are matched against for a presented caller number: its
    E.164 form when one can be made, else nothing (a withheld or garbled
    number is on no list)."""
    digits = presented.strip()
    if not digits or not all(char.isdigit() for char in digits.lstrip("+")):
        return ()
    if numbering is None:
        return (digits,) if digits.startswith("+") else ()
    found = to_e164(digits, numbering)
    return (found.number,) if isinstance(found, InE164) else ()


def screen(forms: tuple[str, ...], levels: list[tuple[str, Screening]]) -> tuple[Screened | None, str]:
    """Apply ``levels`` (rule prefix, lists), company first, to a caller
    whose number has ``forms``; the refusal (or None) and what was checked."""
    shown = forms[0] if forms else "a withheld number"
    for where, level in levels:
        for index, numbers in enumerate(level.whitelist):
            if numbers.find(forms) is not None:
                return None, f"{shown} is on white list {numbers.key} ({where}.whitelist[{index}])"
    for where, level in levels:
        for index, numbers in enumerate(level.blacklist):
            hit = numbers.find(forms)
            if hit is not None:
                return Screened(rule=f"{where}.blacklist[{index}]",
                                outcome=f"{shown} is on black list {numbers.key} (entry {hit[1].text})"), ""
    for where, level in levels:
        if level.whitelist_only:
            names = ", ".join(numbers.key for numbers in level.whitelist) or "none"
            return Screened(rule=f"{where}.whitelist_only",
                            outcome=f"{shown} is not on the white lists ({names}) this number takes calls from"), ""
    checked = ", ".join(where for where, _ in levels)
    return None, f"{shown} is on no black list ({checked})" if levels else ""
