"""The mailbox menu, without a socket: log-in with a PIN, listening,
deleting, saving, calling back, the greeting and a new PIN, fed keys,
playback ends, timeouts and the store's answers by hand."""

from __future__ import annotations

import numpy as np

from pbx.ivr.menu import Play, StopPlayback, Timeout
from pbx.media.events import Digit, DigitSource, PlaybackFinished
from pbx.routing.voicemail import PinPolicy
from pbx.voicemail.menu import (CallBack, CheckPin, DeleteMessage, Hangup, ListenForGreeting, Loaded,
                                LoadMessages, MailboxAction, MailboxMenu, MarkHeard, MessageInfo, Phase, PinChecked,
                                PlayBeep, PlayMessage, SaveGreeting, SetPin)

MESSAGES = (MessageInfo(11, "2001", False), MessageInfo(12, "0912345678", False), MessageInfo(9, "", True))


def menu(mailbox: str | None = "2002", authenticated: bool = True) -> MailboxMenu:
    return MailboxMenu(mailbox=mailbox, authenticated=authenticated, pin_policy=lambda box: PinPolicy())


def finished(menu: MailboxMenu, at: float = 0.0) -> list[MailboxAction]:
    return menu.handle(PlaybackFinished(playback_id=1, completed=True, time=at), at)


def keys(menu: MailboxMenu, digits: str, at: float = 0.0) -> list[MailboxAction]:
    actions: list[MailboxAction] = []
    for digit in digits:
        actions += menu.handle(Digit(digit=digit, source=DigitSource.RFC4733, time=at), at)
    return actions


def logged_in(messages: tuple[MessageInfo, ...] = MESSAGES) -> MailboxMenu:
    box = menu()
    assert box.start(0.0) == [LoadMessages("2002")]
    actions = box.handle(Loaded(messages), 0.0)
    assert actions == [Play(("vm_you_have", "digit_2", "vm_new_messages", "vm_and", "digit_1",
                             "vm_saved_messages", "vm_main_menu"))] if messages == MESSAGES else actions
    finished(box)
    return box


def test_own_phone_lists_new_messages_first_and_marks_each_heard() -> None:
    box = logged_in()
    assert keys(box, "1") == [PlayMessage(11, ("vm_new_message",))]
    assert finished(box) == [MarkHeard(11), Play(("vm_message_menu",))]  # heard: the lamp may go out at once
    assert keys(box, "6") == [StopPlayback(), PlayMessage(12, ("vm_new_message",))]
    # A key during the message cuts it: it counts as heard, then the key acts.
    assert keys(box, "9") == [StopPlayback(), MarkHeard(12), PlayMessage(9, ("vm_message_saved", "vm_saved_message"))]
    assert keys(box, "6") == [StopPlayback(), Play(("vm_no_more_messages", "vm_main_menu"))]
    assert box.path == "voicemail[2002|listen|save]"


def test_delete_removes_the_message_and_plays_the_next() -> None:
    box = logged_in()
    keys(box, "1")
    finished(box)
    finished(box)  # the menu after the message, said to its end
    assert keys(box, "7") == [DeleteMessage(11), PlayMessage(12, ("vm_message_deleted", "vm_new_message"))]
    assert [m.id for m in box.messages] == [12, 9]


def test_call_back_hands_over_the_callers_number() -> None:
    box = logged_in()
    keys(box, "16")
    assert keys(box, "5") == [StopPlayback(), MarkHeard(12), CallBack("0912345678")]
    assert box.phase is Phase.DONE


def test_a_message_without_a_number_cannot_be_called_back() -> None:
    box = logged_in((MessageInfo(9, "", False),))
    keys(box, "1")
    assert keys(box, "5") == [StopPlayback(), MarkHeard(9), Play(("not_available", "vm_message_menu"))]


def test_login_from_another_phone_asks_mailbox_and_pin() -> None:
    box = menu(mailbox=None, authenticated=False)
    assert box.start(0.0) == [Play(("vm_enter_mailbox",))]
    finished(box)
    assert keys(box, "2002#", 1.0) == [Play(("vm_enter_pin",))]
    finished(box, 2.0)
    assert keys(box, "1357#", 3.0) == [CheckPin("2002", "1357")]
    assert "1357" not in repr(CheckPin("2002", "1357")) and "1357" not in box.path
    assert keys(box, "9", 3.5) == []  # keyed ahead while the PIN is checked: kept (see below)
    assert box.handle(PinChecked("valid"), 4.0) == [LoadMessages("2002")]
    assert box.path == "voicemail[2002|pin_ok]"


def test_keys_pressed_while_the_store_answers_are_taken_after() -> None:
    """A caller types ahead: a PIN again at once after a wrong one, ``1``
    (listen) before the greeting has started."""
    box = menu(mailbox="2002", authenticated=False)
    box.start(0.0)
    finished(box)
    assert keys(box, "0000#", 1.0) == [CheckPin("2002", "0000")]
    assert keys(box, "13", 1.2) == []
    # The kept "13" begins the next entry: keys cut what would play, so
    # "wrong PIN, enter your PIN" is not started at all.
    assert box.handle(PinChecked("invalid"), 1.5) == []
    assert box.path == "voicemail[2002|pin_wrong]"
    assert keys(box, "57#", 2.0) == [CheckPin("2002", "1357")]
    assert keys(box, "1", 2.1) == []
    assert box.handle(PinChecked("valid"), 2.5) == [LoadMessages("2002")]
    assert keys(box, "*", 2.6) == [] and box.phase is Phase.LOADING
    assert box.handle(Loaded(MESSAGES), 3.0) == [
        PlayMessage(11, ("vm_new_message",)),                   # "1": listen (the counts never started)
        StopPlayback(), MarkHeard(11),                          # "*": heard, back to the menu
        Play(("vm_you_have", "digit_1", "vm_new_messages", "vm_and", "digit_2", "vm_saved_messages", "vm_main_menu")),
    ]
    assert box.path == "voicemail[2002|pin_wrong|pin_ok|listen]"


def test_keys_kept_ahead_are_bounded_and_die_with_the_call() -> None:
    box = menu(mailbox="2002", authenticated=False)
    box.start(0.0)
    finished(box)
    keys(box, "0000#")
    keys(box, "1" * 40)  # a key held down: only MAX_ENTRY + 1 of them are kept
    # Twelve fill an entry (checked at once), the thirteenth waits again ...
    assert box.handle(PinChecked("invalid"), 1.0) == [CheckPin("2002", "1" * 12)]
    # ... and begins the next entry; nothing more was kept to submit.
    assert box.handle(PinChecked("invalid"), 2.0) == []
    assert (box.phase, box.deadline()) == (Phase.PIN, 7.0)
    keys(box, "#", 3.0)
    assert box.handle(PinChecked("locked"), 4.0) == [Play(("vm_locked", "goodbye"))]
    keys(box, "2468#", 4.5)  # while the last words play: not kept for anything
    assert finished(box) == [Hangup("voicemail_locked")] and box.phase is Phase.DONE


def test_wrong_pins_end_in_goodbye_and_a_locked_box_says_so() -> None:
    box = menu(mailbox="2002", authenticated=False)
    assert box.start(0.0) == [Play(("vm_enter_pin",))]
    for attempt in range(2):
        finished(box)
        assert keys(box, "0000#") == [CheckPin("2002", "0000")]
        assert box.handle(PinChecked("invalid"), 1.0) == [Play(("vm_wrong_pin", "vm_enter_pin"))]
    finished(box)
    keys(box, "0000#")
    assert box.handle(PinChecked("invalid"), 2.0) == [Play(("vm_wrong_pin", "goodbye"))]
    assert finished(box) == [Hangup("voicemail_auth_failed")]

    locked = menu(mailbox="2002", authenticated=False)
    locked.start(0.0)
    finished(locked)
    keys(locked, "1357#")
    assert locked.handle(PinChecked("locked"), 1.0) == [Play(("vm_locked", "goodbye"))]
    assert finished(locked) == [Hangup("voicemail_locked")]


def test_a_pin_entry_ends_on_the_digit_timeout() -> None:
    box = menu(mailbox="2002", authenticated=False)
    box.start(0.0)
    finished(box, 0.0)
    assert box.deadline() == 10.0
    keys(box, "1357", 1.0)
    assert box.deadline() == 6.0
    assert box.handle(Timeout(6.0), 6.0) == [CheckPin("2002", "1357")]


def test_silence_repeats_the_menu_then_says_goodbye() -> None:
    box = logged_in()
    assert box.deadline() == 8.0
    assert box.handle(Timeout(8.0), 8.0) == [Play(("vm_main_menu",))]
    finished(box, 10.0)
    assert box.handle(Timeout(18.0), 18.0) == [Play(("vm_main_menu",))]
    finished(box, 20.0)
    assert box.handle(Timeout(28.0), 28.0) == [Play(("goodbye",))]
    assert finished(box) == [Hangup("voicemail_no_input")]


def test_a_new_pin_is_asked_twice_and_held_to_the_policy() -> None:
    box = logged_in()
    assert keys(box, "0") == [Play(("vm_options_menu",))]
    assert keys(box, "2") == [StopPlayback(), Play(("vm_new_pin",))]
    assert keys(box, "1111#") == [StopPlayback(), Play(("vm_repeat_pin",))]
    assert keys(box, "1111#") == [StopPlayback(), Play(("vm_pin_rejected", "vm_options_menu"))]  # one digit
    keys(box, "2")
    keys(box, "2468#")
    assert keys(box, "2469#") == [StopPlayback(), Play(("vm_pin_rejected", "vm_options_menu"))]  # no match
    keys(box, "2")
    keys(box, "2468#")
    assert keys(box, "2468#") == [StopPlayback(), SetPin("2468"), Play(("vm_pin_changed", "vm_options_menu"))]
    assert "2468" not in box.path and box.path.endswith("pin_refused|pin_refused|pin_changed]")


def test_the_greeting_is_recorded_after_the_beep_until_hash() -> None:
    box = logged_in()
    keys(box, "0")
    assert keys(box, "1") == [StopPlayback(), PlayBeep(("vm_record_greeting",))]
    assert keys(box, "5") == []  # the instruction and beep play out
    assert finished(box, 5.0) == [ListenForGreeting()]
    speech = (np.sin(np.arange(16000) * 0.2) * 4000).astype("<i2").tobytes()
    for start in range(0, len(speech), 320):
        assert box.heard(speech[start:start + 320]) == []
    actions = keys(box, "#", 7.0)
    assert isinstance(actions[0], SaveGreeting) and len(actions[0].audio) == 32000 - 4000  # the key's tail cut
    assert actions[1:] == [Play(("vm_greeting_saved", "vm_options_menu"))]
    assert box.heard(speech) == []


def test_a_silent_greeting_is_not_kept() -> None:
    box = logged_in()
    keys(box, "01")
    finished(box, 5.0)
    assert box.heard(bytes(2 * 8000 * 4)) == [Play(("vm_options_menu",))]
