"""A caller's name, as other phones are shown it: whatever the name holds
(an extension named through the API, the console or a directory sync),
the From header of the leg stays one well-formed header line."""

from __future__ import annotations

import pytest

from pbx.calls.fork import ContactTarget
from pbx.calls.plan import Caller, Ring, plan_call
from pbx.registrar.bindings import Binding
from pbx.routing.dialplan import Department, Dialplan, Extension
from pbx.routing.engine import Ring as RingExtension
from pbx.sip.address import Peer
from pbx.sip.message import parse_name_addr

CALLEE = Extension(number="1004", name="Dung", department="sales", password="p" * 12)
PLAN = Dialplan(domain="pbx.example.com", departments={"sales": Department(key="sales", name="Sales")},
                extensions={"1004": CALLEE})
PHONE = Peer("udp", "127.0.0.1", 5062)


def _contacts(number: str) -> list[Binding]:
    return [Binding(aor=number, contact=f"sip:{number}@127.0.0.1:5062", expires_at=4e9, call_id="r", cseq=1,
                    source=PHONE)]


@pytest.mark.parametrize(("name", "shown"), [
    ("Mai\r\nX-Injected: yes", "Mai  X-Injected: yes"),
    ('Say "hi"\\', 'Say "hi"\\'),
    ("Nguyễn Thị Mai", "Nguyễn Thị Mai"),
])
def test_the_callers_name_never_breaks_the_from_header(name: str, shown: str) -> None:
    caller = Caller(number="1003", name=name, extension=None, from_trunk=None)
    action = plan_call(RingExtension(extension=CALLEE, rule="extensions.1004"), caller, PLAN, _contacts, "c1")
    assert isinstance(action, Ring)
    target = action.targets[0]
    assert isinstance(target, ContactTarget)
    assert "\r" not in target.from_uri and "\n" not in target.from_uri
    parsed = parse_name_addr(target.from_uri)
    assert (parsed.display, parsed.uri) == (shown, "sip:1003@pbx.example.com")
