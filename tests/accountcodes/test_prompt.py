"""The code prompt machine, driven with a hand-held clock: barge-in, # and
*, both timeouts, retries then goodbye, not allowed, locked, and a CDR
path that never holds the digits."""

from __future__ import annotations

from pbx.accountcodes.prompt import Accepted, CheckCode, Checked, CodePrompt, PromptAction, PromptEvent
from pbx.ivr.menu import CollectDigits, Hangup, Play, StopPlayback, Timeout
from pbx.media.events import Digit, DigitSource, PlaybackFinished

ENTER = Play(("enter_account_code",))
AGAIN = Play(("invalid_code", "enter_account_code"))


def key(digit: str, now: float) -> Digit:
    return Digit(digit=digit, source=DigitSource.RFC4733, time=now)


def played(now: float) -> PlaybackFinished:
    return PlaybackFinished(playback_id=0, completed=True, time=now)


def keys(prompt: CodePrompt, digits: str, start: float) -> list[PromptAction]:
    actions: list[PromptAction] = []
    for offset, digit in enumerate(digits):
        actions = prompt.handle(key(digit, start + offset * 0.5), start + offset * 0.5)
    return actions


def feed(prompt: CodePrompt, event: PromptEvent, now: float) -> list[PromptAction]:
    return prompt.handle(event, now)


def test_a_right_code_after_the_prompt() -> None:
    prompt = CodePrompt(first_digit_timeout=8, digit_timeout=4)
    assert prompt.start(0.0) == [ENTER]
    assert feed(prompt, played(3.0), 3.0) == [CollectDigits(until=11.0, max_digits=16)]
    assert keys(prompt, "4839", 4.0) == [CollectDigits(until=5.5 + 4, max_digits=16)]
    actions = keys(prompt, "48#", 6.0)
    assert actions == [CheckCode("483948")]
    assert "483948" not in repr(actions[0])
    assert feed(prompt, key("5", 7.5), 7.5) == []  # keying ahead while it is checked: ignored
    assert feed(prompt, Checked("valid"), 8.0) == [Accepted()]
    assert prompt.path == "account_code[(secret)]"


def test_a_key_stops_the_prompt_and_star_starts_again() -> None:
    prompt = CodePrompt()
    prompt.start(0.0)
    first = feed(prompt, key("9", 1.0), 1.0)
    assert first[0] == StopPlayback()
    assert feed(prompt, key("*", 1.5), 1.5) == [CollectDigits(until=9.5, max_digits=16)]
    assert keys(prompt, "602826#", 2.0) == [CheckCode("602826")]


def test_the_inter_digit_timeout_checks_what_was_keyed() -> None:
    prompt = CodePrompt(digit_timeout=4)
    prompt.start(0.0)
    feed(prompt, played(2.0), 2.0)
    keys(prompt, "602", 3.0)
    assert feed(prompt, Timeout(5.0), 5.0) == []  # not yet
    assert feed(prompt, Timeout(8.0), 8.0) == [CheckCode("602")]


def test_wrong_codes_are_retried_then_goodbye() -> None:
    prompt = CodePrompt(attempts=3)
    prompt.start(0.0)
    outcomes = []
    for attempt in range(3):
        assert keys(prompt, "111222#", 10.0 * attempt + 1) == [CheckCode("111222")]
        outcomes.append(feed(prompt, Checked("invalid"), 10.0 * attempt + 5))
    assert outcomes == [[AGAIN], [AGAIN], [Play(("invalid_code", "goodbye"))]]
    assert feed(prompt, played(40.0), 40.0) == [Hangup("auth_failed")]
    assert prompt.path == "account_code[(secret)|(secret)|(secret)]"
    assert prompt.wrong_codes == 3


def test_silence_counts_as_a_failed_entry() -> None:
    prompt = CodePrompt(attempts=2, first_digit_timeout=5)
    prompt.start(0.0)
    feed(prompt, played(2.0), 2.0)
    assert feed(prompt, Timeout(7.0), 7.0) == [AGAIN]
    feed(prompt, played(10.0), 10.0)
    assert feed(prompt, Timeout(15.0), 15.0) == [Play(("invalid_code", "goodbye"))]
    assert feed(prompt, played(17.0), 17.0) == [Hangup("no_code")]
    assert prompt.path == "account_code[no input|no input]"


def test_not_allowed_and_locked_end_with_their_own_words() -> None:
    for outcome, prompt_name, reason in (("not_allowed", "not_allowed", "not_allowed"),
                                         ("locked", "code_locked", "locked")):
        prompt = CodePrompt()
        prompt.start(0.0)
        keys(prompt, "602826#", 1.0)
        assert feed(prompt, Checked(outcome), 5.0) == [Play((prompt_name,))]  # type: ignore[arg-type]
        assert feed(prompt, key("1", 5.5), 5.5) == []
        assert feed(prompt, played(8.0), 8.0) == [Hangup(reason)]


def test_sixteen_keys_end_the_entry() -> None:
    prompt = CodePrompt()
    prompt.start(0.0)
    assert keys(prompt, "1" * 16, 1.0) == [CheckCode("1" * 16)]
