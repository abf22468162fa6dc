"""The auto attendant's state machine (pbx.ivr.menu) with a hand-held clock:
greeting and barge-in, options and dial-by-extension, timeouts, retries,
fallback, menus within menus, the CDR path."""

from __future__ import annotations

import pytest

from pbx.ivr.menu import (
    MAX_MENUS,
    CollectDigits,
    Hangup,
    MenuAction,
    MenuRun,
    Play,
    StopPlayback,
    Timeout,
    Transfer,
)
from pbx.media.events import Digit, DigitSource, PlaybackFinished
from pbx.routing.ivr import HANGUP, Destination, IvrMenu

EXTENSIONS = ("1001", "1002", "1099")
SALES = Destination("extension", "1002")
RECEPTION = Destination("extension", "1099")
MAIN = IvrMenu(key="main", number="800", options={"1": SALES, "0": RECEPTION, "5": Destination("menu", "help"),
                                                   "9": HANGUP},
               dial_by_extension=True, timeout=5.0, digit_timeout=2.0, retries=2, fallback=RECEPTION)
HELP = IvrMenu(key="help", greeting="please_hold", options={"1": Destination("menu", "main")}, retries=0,
               timeout=3.0)
MENUS = {"main": MAIN, "help": HELP}


class Caller:
    """A caller in the menu: the machine and a clock."""

    def __init__(self, menu: IvrMenu = MAIN, menus: dict[str, IvrMenu] = MENUS) -> None:
        self.now = 100.0
        self.run = MenuRun(menus, menu, extensions=EXTENSIONS)
        self.actions = self.run.start(self.now)

    def key(self, digit: str, after: float = 0.1) -> list[MenuAction]:
        self.now += after
        return self.run.handle(Digit(digit=digit, source=DigitSource.RFC4733, time=self.now), self.now)

    def played(self, after: float = 3.0) -> list[MenuAction]:
        self.now += after
        return self.run.handle(PlaybackFinished(playback_id=1, completed=True, time=self.now), self.now)

    def wait(self) -> list[MenuAction]:
        """Let the clock run to the machine's deadline."""
        due = self.run.deadline()
        assert due is not None
        self.now = due
        return self.run.handle(Timeout(self.now), self.now)


def test_greeting_then_keys_wanted_until_the_timeout() -> None:
    caller = Caller()
    assert caller.actions == [Play(("welcome",))]
    assert caller.run.deadline() is None  # no timeout runs while the greeting plays
    assert caller.played() == [CollectDigits(until=108.0, max_digits=4)]


def test_a_key_that_begins_an_extension_waits_for_more_then_means_the_option() -> None:
    caller = Caller()
    caller.played()
    assert caller.key("1") == [CollectDigits(until=105.1, max_digits=4)]
    assert caller.wait() == [Transfer(SALES, MAIN, "ivr_menus.main.options.1")]
    assert caller.run.path == "main[1]"


def test_hash_ends_an_entry_at_once() -> None:
    caller = Caller()
    caller.played()
    caller.key("1")
    assert caller.key("#") == [Transfer(SALES, MAIN, "ivr_menus.main.options.1")]


def test_an_option_nothing_longer_begins_with_acts_at_once_even_during_the_greeting() -> None:
    caller = Caller()
    assert caller.key("0") == [StopPlayback(), Transfer(RECEPTION, MAIN, "ivr_menus.main.options.0")]


def test_dial_by_extension() -> None:
    caller = Caller()
    caller.played()
    for digit in "100":
        assert isinstance(caller.key(digit)[-1], CollectDigits)
    assert caller.key("1") == [Transfer(Destination("extension", "1001"), MAIN, "ivr_menus.main.dial_by_extension")]
    assert caller.run.path == "main[1001]"


def test_without_dial_by_extension_an_extension_number_is_invalid() -> None:
    menu = IvrMenu(key="main", options={"1": SALES}, retries=1)
    caller = Caller(menu, {"main": menu})
    caller.played()
    caller.key("1")  # acts at once: nothing longer begins with 1
    caller = Caller(menu, {"main": menu})
    caller.played()
    assert caller.key("2") == [Play(("invalid_option", "welcome"))]


def test_invalid_keys_and_silence_are_retried_then_the_fallback() -> None:
    caller = Caller()
    caller.played()
    assert caller.key("7") == [Play(("invalid_option", "welcome"))]  # nothing begins with 7
    assert caller.run.deadline() is None
    caller.played()
    assert caller.wait() == [Play(("welcome",))]  # no input: the greeting again
    caller.played()
    assert caller.wait() == [Transfer(RECEPTION, MAIN, "ivr_menus.main.fallback")]
    assert caller.run.path == "main[7 invalid|no input|no input]"


def test_a_key_during_a_replayed_greeting_counts() -> None:
    caller = Caller()
    caller.played()
    caller.key("7")
    assert caller.key("0") == [StopPlayback(), Transfer(RECEPTION, MAIN, "ivr_menus.main.options.0")]


def test_an_entry_that_can_match_nothing_is_invalid_without_waiting() -> None:
    caller = Caller()
    caller.played()
    caller.key("1")
    assert caller.key("5") == [Play(("invalid_option", "welcome"))]  # 15... is no extension
    assert caller.run.path == "main[15 invalid]"


def test_hang_up_says_goodbye_first() -> None:
    caller = Caller()
    assert caller.key("9") == [StopPlayback(), Play(("goodbye",))]
    assert caller.key("1") == []  # keys no longer count
    assert caller.played() == [Hangup("menu_hangup")]
    assert caller.run.handle(Timeout(caller.now + 100), caller.now + 100) == []


def test_another_menu_starts_afresh_and_can_lead_back() -> None:
    caller = Caller()
    caller.key("5")
    assert caller.run.menu is HELP
    caller.played()
    assert caller.wait() == [Play(("goodbye",))]  # help: no retries, falls back to hanging up
    caller = Caller()
    caller.key("5")
    assert caller.key("1") == [StopPlayback(), Play(("welcome",))]
    assert caller.run.path == "main[5]>help[1]>main[]"


def test_a_loop_of_menus_ends_the_call() -> None:
    loop = IvrMenu(key="loop", options={"1": Destination("menu", "loop")})
    caller = Caller(loop, {"loop": loop})
    for _ in range(MAX_MENUS - 1):
        assert caller.key("1")[-1] == Play(("welcome",))
    assert caller.key("1") == [StopPlayback(), Hangup("menu_loop")]


def test_a_stopped_playback_is_not_the_end_of_the_greeting() -> None:
    caller = Caller()
    stopped = PlaybackFinished(playback_id=1, completed=False, time=caller.now)
    assert caller.run.handle(stopped, caller.now) == []
    assert caller.run.deadline() is None


def test_an_early_timeout_is_ignored() -> None:
    caller = Caller()
    caller.played()
    assert caller.run.handle(Timeout(caller.now + 1), caller.now + 1) == []


def test_the_closed_hours_menu_answers_for_a_menu_entered_by_key() -> None:
    closed = IvrMenu(key="closed", greeting="closed")
    menus = {**MENUS, "closed": closed}
    run = MenuRun(menus, MAIN, extensions=EXTENSIONS, enter=lambda menu: closed if menu is HELP else menu)
    run.start(0.0)
    assert run.handle(Digit(digit="5", source=DigitSource.INFO, time=0.5), 0.5) == [StopPlayback(),
                                                                                    Play(("closed",))]
    assert run.path == "main[5]>closed[]"


@pytest.mark.parametrize("secret", [True, False])
def test_a_secret_entry_never_shows_its_keys(secret: bool) -> None:
    from pbx.ivr.menu import Entry, Visit

    visit = Visit("code", [Entry("4711", secret=secret)])
    assert ("4711" in visit.text()) is not secret
