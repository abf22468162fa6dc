"""Feature codes confirmed by voice, with a real softphone (pjsua2) through
`pbx serve`: each of ``*72``N, ``*73``, ``*90``N, ``*92``N, ``*78`` and
``*79`` answers with early media saying what was done (the shipped
prompt, found in the phone's recording), then a 480 whose reason phrase
says it too. The busy and no-answer forwards set from the phone then
send Alice's calls to Carol."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import Pbx
from .phone import Phone, PhoneFactory
from .prompt_match import heard_prompt, recorded
from .test_transfer import DIALPLAN, registered, uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture
def dialplan() -> str:
    return "voicemail: {enabled: false}\n" + DIALPLAN.replace(
        "password: bob-secret-2002}", "password: bob-secret-2002, ring_timeout: 2}")


def dial_code(phone: Phone, code: str, pbx: Pbx, folder: Path) -> tuple[str, dict[str, float]]:
    """Dial ``code``: the final's reason phrase and how well the
    confirmation was heard, per prompt name (see :func:`heard_prompt`)."""
    call = phone.call(uri(code, pbx))
    phone.wait_for("media_state", 10.0, call=call, status="active")
    heard = folder / f"{code.replace('*', 'star')}.wav"
    phone.record(heard, call)
    end = phone.wait_call_state("DISCONNECTED", call, timeout=15.0)
    phone.wait_for("record_done", 5.0, call=call)
    assert end["code"] == 480, end
    return str(end["reason"]), {name: heard_prompt(recorded(heard), name)
                                for name in ("forwarding_on", "forwarding_off", "dnd_on", "dnd_off")}


def test_each_code_is_confirmed_by_voice_and_the_forwards_work(pbx: Pbx, phones: PhoneFactory,
                                                                tmp_path: Path) -> None:
    bob = registered(phones, pbx, "2002")
    for code, phrase, prompt in (("*722003", "Forwarding always On 2003", "forwarding_on"),
                                 ("*73", "Forwarding always Off", "forwarding_off"),
                                 ("*78", "Do Not Disturb On", "dnd_on"),
                                 ("*79", "Do Not Disturb Off", "dnd_off"),
                                 ("*902003", "Forwarding busy On 2003", "forwarding_on"),
                                 ("*922003", "Forwarding no_answer On 2003", "forwarding_on")):
        reason, scores = dial_code(bob, code, pbx, tmp_path)
        assert reason == phrase
        assert scores[prompt] > 0.5, (code, scores)
        others = [score for name, score in scores.items() if name != prompt and name[:3] != prompt[:3]]
        assert all(score < scores[prompt] for score in others), (code, scores)
    alice = registered(phones, pbx, "2001")
    carol = registered(phones, pbx, "2003", auto_answer=200)
    # Bob does not answer (rings 2 s): the no-answer forward.
    call = alice.call(uri("2002", pbx))
    bob.wait_for("incoming_call", 10.0)
    alice.wait_call_state("CONFIRMED", call, timeout=15.0)
    carol_call = int(carol.wait_call_state("CONFIRMED", timeout=10.0)["call"])
    alice.hangup(call)
    carol.wait_call_state("DISCONNECTED", carol_call, timeout=10.0)
    assert pbx.cdr_for("2001", "2002")["transfer"] == "forward no_answer 2002 -> 2003"
    # Bob's phone says busy: the busy forward.
    bob.command({"cmd": "set", "auto_answer": 486})
    call = alice.call(uri("2002", pbx))
    alice.wait_call_state("CONFIRMED", call, timeout=15.0)
    carol_call = int(carol.wait_call_state("CONFIRMED", timeout=10.0)["call"])
    alice.hangup(call)
    carol.wait_call_state("DISCONNECTED", carol_call, timeout=10.0)
    assert pbx.cdr_for("2001", "2002", nth=2)["transfer"] == "forward busy 2002 -> 2003"
