"""Anchored calls in the call layer: the controller on the in-memory wire
with a stand-in anchor (what :class:`pbx.media.anchor.MediaAnchor` is to
the calls), so each leg's SDP, the re-INVITEs the anchor answers and the
CDR's recording are seen without sockets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from pbx.media.relay import Leg
from pbx.media.sdes import MediaEncryption
from pbx.recording.policy import CallRecording, RecordingMode, RecordingSettings
from pbx.routing.dialplan import CallSettings

from .harness import (
    ALICE,
    BOB,
    SDP,
    AnsweredCall,
    Harness,
    ack_text,
    from_alice,
    from_bob,
    place_call,
    requests,
    response_text,
    responses,
)

A_ANSWER = b"v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n"
B_OFFER = A_ANSWER.replace(b"20000", b"20002")
B_SDP = SDP.replace(b"40000", b"42000")
HOLD = B_SDP.replace(b"o=- 1 1", b"o=- 1 2") + b"a=sendonly\r\n"


@dataclass
class FakeAnchor:
    recording: CallRecording
    a_answer: bytes | None = None
    recorded: str | None = None
    accepted: list[bytes] = field(default_factory=list)
    answered: list[tuple[Leg, bytes]] = field(default_factory=list)
    holds: list[tuple[Leg, bool]] = field(default_factory=list)
    keys: list[tuple[Leg, str]] = field(default_factory=list)
    started: bool = False
    closed: bool = False

    def answer_a(self, offer: bytes, encryption: MediaEncryption) -> bytes:
        self.a_answer = A_ANSWER
        return A_ANSWER

    def offer_b(self, encryption: MediaEncryption) -> bytes:
        return B_OFFER

    def accept_b(self, answer: bytes) -> None:
        self.accepted.append(answer)

    def answer_leg(self, leg: Leg, offer: bytes, encryption: MediaEncryption, *, new_party: bool = False) -> bytes:
        self.answered.append((leg, offer))
        return B_OFFER if leg is Leg.B else A_ANSWER

    def offer_leg(self, leg: Leg, encryption: MediaEncryption) -> bytes:
        return B_OFFER

    def start(self) -> None:
        self.started = True
        if self.recording.mode is RecordingMode.ALWAYS:
            self.recorded = "0" * 32 + ".wav"

    def hold(self, leg: Leg, holding: bool, music: str | None) -> bool:
        self.holds.append((leg, holding))
        return True

    def key(self, leg: Leg, digit: str, at: float) -> None:
        self.keys.append((leg, digit))

    def close(self) -> str | None:
        self.closed = True
        return self.recorded


@dataclass
class FakeAnchors:
    opened: list[FakeAnchor] = field(default_factory=list)

    def open(self, call_uuid: str, recording: CallRecording, language: str) -> FakeAnchor:
        anchor = FakeAnchor(recording)
        self.opened.append(anchor)
        return anchor


def harness(recording: RecordingSettings) -> tuple[Harness, FakeAnchors]:
    h = Harness(CallSettings())
    h.plan = replace(h.plan, recording=recording)
    h.controller.use_plan(h.plan)
    anchors = FakeAnchors()
    h.controller.anchors = anchors
    return h, anchors


def answered(h: Harness) -> AnsweredCall:
    """Alice calls Bob, Bob rings with early media and answers, Alice ACKs."""
    a_invite = place_call(h)
    b_invite = requests(h.take(BOB), "INVITE")[0]
    h.deliver(response_text(b_invite, 180, to_tag="bob", body=B_SDP), BOB)
    early = [r for r in responses(h.take(ALICE), "INVITE") if r.status == 180][0]
    assert early.body == A_ANSWER                       # early media from the anchor too
    h.deliver(response_text(b_invite, 200, to_tag="bob", body=B_SDP, contact=BOB), BOB)
    ok = [r for r in responses(h.take(ALICE), "INVITE") if r.status == 200][0]
    assert ok.body == A_ANSWER
    call = AnsweredCall(a_invite, ok, b_invite)
    h.deliver(ack_text(call), ALICE)
    return call


def test_a_recorded_call_runs_through_the_anchor_and_its_cdr_names_the_file() -> None:
    h, anchors = harness(RecordingSettings(extensions={"2001": RecordingMode.ALWAYS}))
    call = answered(h)
    (anchor,) = anchors.opened
    assert call.b_invite.body == B_OFFER                  # Bob is offered the PBX's media
    assert anchor.accepted == [B_SDP, B_SDP]              # his 180's and 200's answers went to the anchor
    assert anchor.started and anchor.recording.why == "extensions.2001"
    h.deliver(from_bob("BYE", call.b_invite, 1), BOB)
    assert anchor.closed
    assert h.recorder.ended[0].recording_file == "0" * 32 + ".wav"


def test_a_hold_in_an_anchored_call_is_answered_for_that_leg_alone() -> None:
    h, anchors = harness(RecordingSettings(extensions={"2002": RecordingMode.ON_DEMAND}))
    call = answered(h)
    (anchor,) = anchors.opened
    h.take(ALICE)
    h.deliver(from_bob("INVITE", call.b_invite, 2, body=HOLD,
                       headers=["Content-Type: application/sdp", f"Contact: <sip:{BOB.host}:{BOB.port}>"]), BOB)
    ok = [r for r in responses(h.take(BOB), "INVITE") if r.status == 200]
    assert ok and ok[0].body == B_OFFER
    assert requests(h.take(ALICE), "INVITE") == []        # Alice's leg is not disturbed
    assert anchor.answered == [(Leg.B, HOLD)] and anchor.holds == [(Leg.B, True)]
    assert h.recorder.started and anchor.recording.togglers == frozenset({1})


@pytest.mark.parametrize("recording", [RecordingSettings(),
                                       RecordingSettings(extensions={"2001": RecordingMode.NEVER})])
def test_an_unrecorded_call_keeps_direct_media(recording: RecordingSettings) -> None:
    h, anchors = harness(recording)
    place_call(h)
    b_invite = requests(h.take(BOB), "INVITE")[0]
    assert b_invite.body == SDP and anchors.opened == []


def test_a_delayed_offer_is_not_anchored() -> None:
    h, anchors = harness(RecordingSettings(extensions={"2001": RecordingMode.ALWAYS}))
    place_call(h, body=b"")
    b_invite = requests(h.take(BOB), "INVITE")[0]
    assert b_invite.body == b"" and anchors.opened == []


def test_keys_in_sip_info_reach_the_anchor_and_the_other_side() -> None:
    h, anchors = harness(RecordingSettings(extensions={"2001": RecordingMode.ON_DEMAND}))
    call = answered(h)
    (anchor,) = anchors.opened
    for cseq, key in ((3, "*"), (4, "1")):
        h.deliver(from_alice("INFO", call.a_ok, cseq, headers=["Content-Type: application/dtmf-relay"],
                             body=f"Signal={key}\r\nDuration=160\r\n".encode()), ALICE)
    assert anchor.keys == [(Leg.A, "*"), (Leg.A, "1")]
    assert len(requests(h.take(BOB), "INFO")) == 2        # relayed as before
