"""The pure rules of presence and chat: Expires (RFC 6665), Event and
Accept, the one-NOTIFY-in-flight machine, the registry's limits and
expiry, the bodies (parsed back with the stdlib), visibility, chat relay
outcomes, and the call layer's ringing count."""

from __future__ import annotations

from dataclasses import replace
from xml.etree import ElementTree

import pytest

from pbx.calls.presence import Presence
from pbx.presence.bodies import ExtensionState, dialog_info, pidf
from pbx.presence.chat import ChatRelay, refusal, storable
from pbx.presence.subscription import (BadExpires, EventHeader, Subscription, Subscriptions, SubscriptionState,
                                       TooBrief, accepts, granted_expires, may_watch, parse_event)
from pbx.routing.dialplan import Department, Dialplan, Extension, FeatureSettings
from pbx.sip.address import Peer
from pbx.sip.dialog import Dialog

PIDF = "{urn:ietf:params:xml:ns:pidf}"
DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
RPID = "{urn:ietf:params:xml:ns:pidf:rpid}"
DI = "{urn:ietf:params:xml:ns:dialog-info}"


@pytest.mark.parametrize(("header", "expected"), [
    (None, 3600), ("0", 0), ("60", 60), ("59", TooBrief(60)), ("99999", 7200), ("soon", BadExpires()),
    (" 120 ", 120),
])
def test_expires(header: str | None, expected: object) -> None:
    assert granted_expires(header, minimum=60, maximum=7200) == expected


def test_default_is_shortened_to_the_maximum() -> None:
    assert granted_expires(None, minimum=1, maximum=600) == 600


@pytest.mark.parametrize(("header", "expected"), [
    ("dialog", EventHeader("dialog")), ("Presence ; id=7", EventHeader("presence", "7")),
    ("", None), (None, None),
])
def test_event(header: str | None, expected: EventHeader | None) -> None:
    assert parse_event(header) == expected


def test_accept() -> None:
    assert accepts([], "application/pidf+xml")
    assert accepts(["application/pidf+xml, application/xpidf+xml"], "application/pidf+xml")
    assert accepts(["application/*"], "application/dialog-info+xml")
    assert not accepts(["text/plain"], "application/dialog-info+xml")


def subscription(target: str = "2002", watcher: str = "2001", expires_at: float = 100.0) -> Subscription:
    dialog = Dialog(call_id=f"{watcher}-{target}-{expires_at}", local_tag="t", remote_tag="r", local_uri="<sip:a>",
                    remote_uri="<sip:b>", remote_target="sip:b@127.0.0.1")
    return Subscription(event=EventHeader("dialog"), watcher=watcher, target=target, dialog=dialog,
                        dest=Peer("udp", "127.0.0.1", 5060), expires_at=expires_at)


def test_one_notify_in_flight_and_changes_folded() -> None:
    sub = subscription()
    idle, busy = ExtensionState(True), ExtensionState(True, calls=1)
    assert sub.should_notify(idle, force=True)
    assert sub.sent(idle) == 0
    assert not sub.should_notify(busy, force=False)  # waits for the answer
    assert sub.answered(200)  # ... then goes
    assert sub.should_notify(busy, force=False) and sub.sent(busy) == 1
    assert sub.answered(200) is False
    assert not sub.should_notify(busy, force=False)  # nothing new
    assert sub.state_header(40.2) == "active;expires=60"


def test_a_failed_notify_ends_the_subscription() -> None:
    sub = subscription()
    sub.sent(ExtensionState(False))
    assert sub.answered(481) is False and sub.state is SubscriptionState.TERMINATED
    assert not sub.should_notify(ExtensionState(True), force=True)


def test_unsubscribe_sends_one_terminated_notify() -> None:
    sub = subscription()
    sub.sent(ExtensionState(False))
    sub.refresh(0, 50.0)
    assert not sub.should_notify(ExtensionState(False), force=True)  # one still in flight
    assert sub.answered(200)  # the terminated one is owed
    assert sub.should_notify(ExtensionState(False), force=False)
    assert sub.state_header(50.0) == "terminated;reason=timeout"
    sub.sent(ExtensionState(False))
    assert sub.state is SubscriptionState.TERMINATED


def test_registry_limits_and_expiry() -> None:
    subs = Subscriptions(max_per_watcher=2)
    first, second = subscription(expires_at=10.0), subscription(target="2003", expires_at=20.0)
    subs.add(first)
    assert not subs.full("2001")
    subs.add(second)
    assert subs.full("2001") and not subs.full("2004") and len(subs) == 2
    assert subs.watching("2002") == [first] and subs.watched("2003")
    first.refresh(30, 5.0)  # now due at 35
    subs.rescheduled(first)
    assert subs.next_deadline() == 20.0
    assert subs.expired(25.0) == [second] and second.end_reason == "timeout"
    subs.remove(second)
    assert not subs.full("2001") and not subs.watched("2003")
    assert subs.next_deadline() == 35.0 and subs.expired(34.9) == []
    assert subs.get(*first.dialog_id) is first


def test_pidf_parses_with_the_state() -> None:
    root = ElementTree.fromstring(pidf("sip:2002@pbx.example.com", ExtensionState(True, calls=1)))
    assert root.tag == f"{PIDF}presence" and root.get("entity") == "sip:2002@pbx.example.com"
    assert root.findtext(f"{PIDF}tuple/{PIDF}status/{PIDF}basic") == "open"
    activities = root.find(f"{DM}person/{RPID}activities")
    assert activities is not None and [a.tag for a in activities] == [f"{RPID}busy", f"{RPID}on-the-phone"]
    offline = ElementTree.fromstring(pidf("sip:2003@pbx.example.com", ExtensionState(False)))
    assert offline.findtext(f"{PIDF}tuple/{PIDF}status/{PIDF}basic") == "closed"
    assert offline.find(f"{DM}person/{RPID}activities") is None
    assert offline.findtext(f"{DM}person/{DM}note") == "Offline"


def test_dialog_info_parses_with_one_dialog_per_call_and_ringing_phone() -> None:
    root = ElementTree.fromstring(dialog_info("sip:2002@x", ExtensionState(True, calls=1, ringing=2), 7))
    assert root.tag == f"{DI}dialog-info"
    assert (root.get("version"), root.get("state"), root.get("entity")) == ("7", "full", "sip:2002@x")
    dialogs = root.findall(f"{DI}dialog")
    assert [d.findtext(f"{DI}state") for d in dialogs] == ["confirmed", "early", "early"]
    assert len({d.get("id") for d in dialogs}) == 3
    assert [d.get("direction") for d in dialogs] == [None, "recipient", "recipient"]


def test_entity_is_escaped() -> None:
    root = ElementTree.fromstring(dialog_info('sip:"<&>"@x', ExtensionState(False), 0))
    assert root.get("entity") == 'sip:"<&>"@x'


def test_visibility() -> None:
    plan = Dialplan(domain="x", departments={"ops": Department(key="ops", name="Ops"),
                                             "sales": Department(key="sales", name="Sales")},
                    extensions={n: Extension(number=n, name=n, department=d, password="pw")
                                for n, d in (("2001", "ops"), ("2002", "ops"), ("3001", "sales"))})
    alice, bob, sam = (plan.extensions[n] for n in ("2001", "2002", "3001"))
    assert may_watch(plan, alice, sam)
    narrow = replace(plan, features=FeatureSettings(presence_visibility="department"))
    assert may_watch(narrow, alice, bob) and not may_watch(narrow, alice, sam)


def test_chat_refusals() -> None:
    assert refusal("text/plain", b"x" * 11, 10) == (413, "Request Entity Too Large")
    assert refusal(None, b"hi", 10) == (415, "Unsupported Media Type")
    assert refusal("text/plain", b"", 10) == (400, "Empty Message")
    assert refusal("text/plain", b"hi", 10) is None
    assert storable("text/plain") and not storable("application/im-iscomposing+xml; charset=utf-8")


def test_chat_relay_outcomes() -> None:
    relay = ChatRelay(sender="2001", recipient="2002", content_type="text/plain", body=b"hi", waiting=2, due=8.0)
    assert relay.answered(480) is None
    assert relay.answered(200) == "delivered"
    assert relay.answered(200) is None  # once
    failed = ChatRelay(sender="2001", recipient="2002", content_type="text/plain", body=b"hi", waiting=2, due=8.0)
    assert failed.answered(404) is None and failed.answered(408) == "undelivered"
    slow = ChatRelay(sender="2001", recipient="2002", content_type="text/plain", body=b"hi", waiting=1, due=8.0)
    assert slow.on_timer(7.9) is None and slow.on_timer(8.0) == "undelivered" and slow.answered(200) is None


def test_call_layer_counts_ringing_and_reports_changes() -> None:
    presence, changes = Presence(), list[str]()
    presence.listener = changes.append
    stop = presence.ring("2002")
    other = presence.ring("2002")
    assert presence.ringing("2002") == 2
    stop()
    stop()  # once only
    assert presence.ringing("2002") == 1
    other()
    held = presence.hold((), "2002")
    presence.release(held)
    assert presence.ringing("2002") == 0 and presence.calls("2002") == 0
    assert changes == ["2002"] * 6
