"""The loader's part for account codes (``account_codes:``): a check with
positions, then the model (:mod:`pbx.routing.account_codes`).

Check: the dial prefix must not shadow a feature code or a hunt group
agent code (``*45``/``*46``), nor be shadowed by one: whatever starts with
the prefix is taken as a code given before a number.
"""

from __future__ import annotations

from typing import Any, Final

from pbx.accountcodes.lockout import LockoutPolicy
from pbx.routing.account_codes import AccountCodeSettings
from pbx.routing.loader_common import Merged, Place, Report, section_of

AGENT_CODES: Final = ("*45", "*46")


def check_prefix(plan: Merged, root: Place, report: Report) -> None:
    section = section_of(plan, "account_codes")
    prefix = section.get("prefix", AccountCodeSettings().prefix)
    if not isinstance(prefix, str) or not plan.valid(("account_codes", "prefix")):
        return
    taken = [*section_of(plan, "feature_codes"), *(AGENT_CODES if section_of(plan, "hunt_groups") else ())]
    for code in taken:
        if code.startswith(prefix) or prefix.startswith(code):
            where = plan.value_place(("account_codes", "prefix"), plan.key_place(("account_codes",), root)) \
                if "prefix" in section else plan.key_place(("account_codes",), root)
            report(where, f"account_codes prefix {prefix!r} overlaps feature code {code!r}: dialling one would be"
                   " taken for the other; choose another prefix")


CHECKS: Final = (check_prefix,)


def build_account_codes(plan: Merged) -> AccountCodeSettings:
    data = section_of(plan, "account_codes")
    fields: dict[str, Any] = {}
    for key in ("mode", "prefix"):
        if key in data:
            fields[key] = str(data[key])
    for key in ("length", "attempts"):
        if key in data:
            fields[key] = int(data[key])
    for key in ("first_digit_timeout", "digit_timeout"):
        if key in data:
            fields[key] = float(data[key])
    lockout = data.get("lockout")
    if isinstance(lockout, dict):
        fields["lockout"] = LockoutPolicy(**{str(k): int(v) for k, v in lockout.items()})
    return AccountCodeSettings(**fields)
