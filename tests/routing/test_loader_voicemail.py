"""The dialplan's ``voicemail:`` settings: the extension's own over its
department's over the company's, and their mistakes with line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.accountcodes.lockout import LockoutPolicy
from pbx.routing.loader import check_dialplan, load_dialplan
from pbx.routing.voicemail import MailboxSettings, PinPolicy, SmtpSettings

PLAN = """\
domain: pbx.example.com
voicemail:
  directory: /srv/voicemail
  smtp: {host: mail.example.com, port: 587, sender: pbx@example.com}
  max_message_seconds: 90
  pin: {min_length: 6, lockout: {failures: 4}}
departments:
  ops: {name: Ops, voicemail: {email_messages: true, retention_days: 60}}
  lobby: {name: Lobby, voicemail: {enabled: false}}
extensions:
  2001: {name: Alice, department: ops, password: alice-secret-2001, email: alice@example.com}
  2002: {name: Bob, department: ops, password: bob-secret-2002, voicemail: {ring_seconds: 12, email: b@example.com}}
  2003: {name: Lobby, department: lobby, password: lobby-secret-2003}
  2004: {name: Dan, department: lobby, password: dan-secret-2004, voicemail: {enabled: true}}
"""


def test_each_setting_comes_from_the_nearest_level(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    plan = load_dialplan(tmp_path / "plan.yaml")
    voicemail = plan.voicemail
    assert voicemail.directory == "/srv/voicemail"
    assert voicemail.smtp == SmtpSettings(host="mail.example.com", port=587, sender="pbx@example.com")
    pin = PinPolicy(min_length=6, lockout=LockoutPolicy(failures=4, window=600, lock_seconds=900))
    alice = voicemail.for_extension(plan.extensions["2001"])
    assert alice == MailboxSettings(max_message_seconds=90, email="alice@example.com", email_messages=True,
                                    retention_days=60, pin=pin)
    bob = voicemail.for_extension(plan.extensions["2002"])
    assert (bob.ring_seconds, bob.email, bob.retention_days) == (12, "b@example.com", 60)
    assert voicemail.for_extension(plan.extensions["2003"]).enabled is False
    assert voicemail.for_extension(plan.extensions["2004"]).enabled is True


def test_without_a_section_every_extension_has_a_mailbox(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN.split("voicemail:")[0] + "extensions:\n"
                                        "  2001: {name: Alice, department: ops, password: alice-secret-2001}\n"
                                        "departments:\n  ops: {name: Ops}\n")
    plan = load_dialplan(tmp_path / "plan.yaml")
    assert plan.voicemail.smtp is None and plan.voicemail.directory == "var/voicemail"
    assert plan.voicemail.for_extension(plan.extensions["2001"]) == MailboxSettings()


@pytest.mark.parametrize(("extra", "expected"), [
    ("voicemail: {pin: {min_length: 8, max_length: 6}}\n",
     ["plan.yaml:6:13: voicemail pin min_length (8) must not exceed max_length (6)"]),
    ("voicemail: {max_message_seconds: 2, email: nobody}\n",
     ["plan.yaml:6:34: 'voicemail.max_message_seconds' must be at least 5, not 2",
      "plan.yaml:6:44: 'voicemail.email' 'nobody' must be an e-mail address"]),
    ("voicemail: {smtp: {port: 25}, greeting: loud}\n",
     ["plan.yaml:6:13: 'voicemail.smtp' is missing required key 'host'",
      "plan.yaml:6:31: unknown key 'greeting' in 'voicemail' (expected one of: directory, smtp, enabled,"
      " max_message_seconds, ring_seconds, email, email_messages, retention_days, silence_seconds, pin)"]),
])
def test_mistakes_are_reported_with_their_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str,
                                                expected: list[str]) -> None:
    base = ("domain: pbx.example.com\ndepartments:\n  ops: {name: Ops}\nextensions:\n"
            "  2001: {name: Alice, department: ops, password: alice-secret-2001}\n")
    (tmp_path / "plan.yaml").write_text(base + extra)
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_dialplan("plan.yaml")] == expected
