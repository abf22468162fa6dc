"""The loader's part for mailboxes (``voicemail:`` at the top, in
departments and in extensions): a check with positions, then the model
(:mod:`pbx.routing.voicemail`).

Check: a PIN policy's ``min_length`` must not exceed its ``max_length``
(at whichever level either is set, the merged values must agree).
"""

from __future__ import annotations

from typing import Any, Final

from pbx.accountcodes.lockout import LockoutPolicy
from pbx.routing.loader_common import DataPath, Merged, Place, Report, section_of
from pbx.routing.voicemail import SETTING_KEYS, PinPolicy, SmtpSettings, VoicemailPlan

_PIN_DEFAULTS: Final = PinPolicy()


def _levels(plan: Merged) -> list[tuple[DataPath, dict[str, Any]]]:
    """Every ``voicemail:`` mapping in the plan, with its path."""
    found: list[tuple[DataPath, dict[str, Any]]] = [(("voicemail",), section_of(plan, "voicemail"))]
    for kind in ("departments", "extensions"):
        for key, entry in section_of(plan, kind).items():
            if isinstance(entry, dict) and isinstance(entry.get("voicemail"), dict):
                found.append(((kind, key, "voicemail"), entry["voicemail"]))
    return found


def check_pin_lengths(plan: Merged, root: Place, report: Report) -> None:
    company_pin = section_of(plan, "voicemail").get("pin")
    company = company_pin if isinstance(company_pin, dict) else {}
    for path, level in _levels(plan):
        pin = level.get("pin")
        if not isinstance(pin, dict) or not plan.valid((*path, "pin")):
            continue
        low = pin.get("min_length", company.get("min_length", _PIN_DEFAULTS.min_length))
        high = pin.get("max_length", company.get("max_length", _PIN_DEFAULTS.max_length))
        if isinstance(low, int) and isinstance(high, int) and low > high:
            where = plan.key_place((*path, "pin"), root)
            report(where, f"voicemail pin min_length ({low}) must not exceed max_length ({high})")


CHECKS: Final = (check_pin_lengths,)


def _pin(data: dict[str, Any], base: PinPolicy) -> PinPolicy:
    fields: dict[str, Any] = {k: int(data[k]) for k in ("min_length", "max_length") if k in data}
    lockout = data.get("lockout")
    if isinstance(lockout, dict):
        current = base.lockout
        fields["lockout"] = LockoutPolicy(
            failures=int(lockout.get("failures", current.failures)),
            window=int(lockout.get("window", current.window)),
            lock_seconds=int(lockout.get("lock_seconds", current.lock_seconds)))
    return PinPolicy(**{"min_length": base.min_length, "max_length": base.max_length, "lockout": base.lockout,
                        **fields})


def _settings(data: dict[str, Any], company_pin: PinPolicy) -> dict[str, Any]:
    """One level's own settings, typed (only the keys it gives)."""
    fields: dict[str, Any] = {}
    for key in SETTING_KEYS:
        if key not in data:
            continue
        value = data[key]
        if key in ("enabled", "email_messages"):
            fields[key] = value is True
        elif key in ("max_message_seconds", "ring_seconds", "retention_days"):
            fields[key] = int(value)
        elif key == "silence_seconds":
            fields[key] = float(value)
        elif key == "email":
            fields[key] = str(value)
        elif key == "pin" and isinstance(value, dict):
            fields[key] = _pin(value, company_pin)
    return fields


def build_voicemail(plan: Merged) -> VoicemailPlan:
    data = section_of(plan, "voicemail")
    company_pin = _pin(data["pin"], PinPolicy()) if isinstance(data.get("pin"), dict) else PinPolicy()
    smtp = None
    if isinstance(data.get("smtp"), dict):
        raw = data["smtp"]
        smtp = SmtpSettings(host=str(raw["host"]), port=int(raw.get("port", 25)),
                            sender=str(raw["sender"]) if "sender" in raw else None,
                            timeout=float(raw.get("timeout", 30.0)))
    levels: dict[str, dict[str, dict[str, Any]]] = {"departments": {}, "extensions": {}}
    for kind in levels:
        for key, entry in section_of(plan, kind).items():
            if isinstance(entry, dict) and isinstance(entry.get("voicemail"), dict):
                levels[kind][str(key)] = _settings(entry["voicemail"], company_pin)
    return VoicemailPlan(directory=str(data.get("directory", VoicemailPlan().directory)), smtp=smtp,
                         company=_settings(data, PinPolicy()), departments=levels["departments"],
                         extensions=levels["extensions"])
