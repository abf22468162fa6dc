"""Number patterns as PBX admins write them, and what can be proved about them.

Two notations, both matched against the *whole* dialled number:

* **Dial patterns** (Asterisk style): digits, ``*``, ``#`` and ``+`` stand
  for themselves; ``X`` is any digit 0-9, ``Z`` is 1-9, ``N`` is 2-9;
  ``[137]`` and ``[1-5]`` are one character out of a set; a final ``.``
  means "one or more further digits" and a final ``!`` "zero or more".
  The open tail takes digits only, never ``*``, ``#`` or ``+``: a number
  such as ``00*53...`` must not be taken for an international number by
  ``00 .`` (toll fraud); a pattern that wants those characters names them.
  Spaces are ignored, so ``"1900 XXXX"`` reads like a printed number.
* **Regular expressions**: a pattern starting with ``^`` is a Python
  regular expression. It is anchored at both ends whether or not it ends
  in ``$`` (it must match the whole number, never a part of it).

Dial patterns form a tiny regular language — a fixed row of character sets
plus an optional open tail — so whether one pattern matches every number
another one does (:meth:`Pattern.covers`, used to warn about rules that
can never match) or any number at all in common (:meth:`Pattern.overlaps`)
is decided exactly. For regular expressions the answer is ``None``:
unknown, and the loader stays quiet rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import product
from typing import Final, Literal

ALPHABET: Final = frozenset("0123456789*#+")
"""Characters a dialled number may hold (what a keypad or E.164 can send)."""

_DIGITS: Final = "0123456789"
_CLASSES: Final = {
    "X": frozenset(_DIGITS),
    "Z": frozenset(_DIGITS[1:]),
    "N": frozenset(_DIGITS[2:]),
}
_TAILS: Final = {".": "+", "!": "*"}
TAIL_SET: Final = frozenset(_DIGITS)
"""What an open tail (``.`` or ``!``) matches at each of its positions."""

Tail = Literal["", ".", "!"]


class PatternError(ValueError):
    """A pattern that cannot be read; ``offset`` is the 0-based character."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed pattern; build one with :func:`parse_pattern`."""

    text: str
    """As written in the dialplan."""
    regex: re.Pattern[str] = field(repr=False, compare=False)
    positions: tuple[frozenset[str], ...] | None = field(repr=False, compare=False)
    """Character set of each fixed position; None for a regular expression."""
    tail: Tail = field(default="", repr=False, compare=False)

    def matches(self, number: str) -> bool:
        """True if the whole of ``number`` matches."""
        return self.regex.fullmatch(number) is not None

    @property
    def is_regex(self) -> bool:
        return self.positions is None

    @property
    def literal(self) -> str | None:
        """The one number this pattern matches, if it matches exactly one."""
        if self.positions is None or self.tail:
            return None
        if all(len(chars) == 1 for chars in self.positions):
            return "".join(next(iter(chars)) for chars in self.positions)
        return None

    def numbers(self, limit: int = 100) -> tuple[str, ...] | None:
        """Every number this pattern matches, if they are at most ``limit``
        (a pattern such as ``11[345]``); None when open-ended or too many."""
        if self.positions is None or self.tail:
            return None
        count = 1
        for chars in self.positions:
            count *= len(chars)
            if count > limit:
                return None
        return tuple("".join(chars) for chars in product(*(sorted(p) for p in self.positions)))

    def _set_at(self, index: int) -> frozenset[str]:
        assert self.positions is not None
        return self.positions[index] if index < len(self.positions) else TAIL_SET

    def _allows_length(self, length: int) -> bool:
        assert self.positions is not None
        fixed = len(self.positions)
        if self.tail == ".":
            return length > fixed
        if self.tail == "!":
            return length >= fixed
        return length == fixed

    def _lengths_to_check(self, other: Pattern) -> range:
        # Past both fixed parts every position is "any digit" on both
        # sides (or the length is impossible), so one length beyond the
        # longer fixed part decides every longer one too.
        assert self.positions is not None and other.positions is not None
        return range(0, max(len(self.positions), len(other.positions)) + 2)

    def covers(self, other: Pattern) -> bool | None:
        """True if every number ``other`` matches, this pattern matches too
        (so a rule with ``other`` placed after one with ``self`` never fires).
        None when either is a regular expression."""
        if self.positions is None or other.positions is None:
            return None
        for length in self._lengths_to_check(other):
            if not other._allows_length(length):
                continue
            if not self._allows_length(length):
                return False
            if any(not other._set_at(i) <= self._set_at(i) for i in range(length)):
                return False
        return True

    def could_extend(self, number: str) -> bool | None:
        """True if ``number`` followed by one or more characters matches:
        the number is a proper prefix of one this pattern matches (it is
        incomplete rather than wrong). None for a regular expression."""
        if self.positions is None:
            return None
        length = len(number)
        longer = bool(self.tail) or len(self.positions) > length
        return longer and all(char in self._set_at(index) for index, char in enumerate(number))

    def overlaps(self, other: Pattern) -> bool | None:
        """True if some number matches both; None for regular expressions."""
        if self.positions is None or other.positions is None:
            return None
        for length in self._lengths_to_check(other):
            if not (self._allows_length(length) and other._allows_length(length)):
                continue
            if all(self._set_at(i) & other._set_at(i) for i in range(length)):
                return True
        return False


def parse_pattern(text: str) -> Pattern:
    """Read a dial pattern or an anchored regular expression.

    Raises :class:`PatternError` naming the offending character.
    """
    if not text.strip():
        raise PatternError("pattern is empty", 0)
    if text.startswith("^"):
        return _parse_regex(text)
    positions: list[frozenset[str]] = []
    tail: Tail = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == " ":
            index += 1
            continue
        if tail:
            raise PatternError(f"{tail!r} may only end a pattern", index - 1)
        upper = char.upper()
        if char in ALPHABET:
            positions.append(frozenset(char))
        elif upper in _CLASSES:
            positions.append(_CLASSES[upper])
        elif char == "[":
            chars, index = _parse_set(text, index)
            positions.append(chars)
            continue
        elif char in _TAILS:
            tail = "." if char == "." else "!"
        elif char == "]":
            raise PatternError("']' without '['", index)
        else:
            raise PatternError(
                f"{char!r} is not allowed; use digits, * # +, X Z N, [..], a final . or !,"
                " or start with ^ for a regular expression",
                index,
            )
        index += 1
    return pattern_of(tuple(positions), tail, text)


def pattern_of(positions: tuple[frozenset[str], ...], tail: Tail, text: str | None = None) -> Pattern:
    """The dial pattern with these fixed positions and open tail; ``text``
    defaults to a written form of it (see :func:`written`)."""
    body = "".join(_set_regex(chars) for chars in positions)
    if tail:
        body += "[0-9]" + _TAILS[tail]
    return Pattern(written(positions, tail) if text is None else text, re.compile(body), positions, tail)


def written(positions: tuple[frozenset[str], ...], tail: Tail) -> str:
    """How a person would write these positions: ``X`` ``Z`` ``N`` for
    their sets, ``[...]`` for others, then the tail after a space."""
    names = {chars: name for name, chars in _CLASSES.items()}
    out = []
    for chars in positions:
        if len(chars) == 1:
            out.append(next(iter(chars)))
        elif chars in names:
            out.append(names[chars])
        else:
            out.append("[" + "".join(sorted(chars)) + "]")
    return " ".join(part for part in ("".join(out), tail) if part)


def _parse_set(text: str, start: int) -> tuple[frozenset[str], int]:
    """``[...]`` starting at ``start``; returns the set and the index after ']'."""
    chars: set[str] = set()
    index = start + 1
    while index < len(text) and text[index] != "]":
        char = text[index]
        if char == " ":
            index += 1
            continue
        if char not in ALPHABET:
            raise PatternError(f"{char!r} is not allowed inside [...]", index)
        if index + 2 < len(text) and text[index + 1] == "-" and text[index + 2] != "]":
            end = text[index + 2]
            if not (char.isdigit() and end.isdigit()) or end < char:
                raise PatternError(f"range {char}-{end} must go from a digit up to a digit", index)
            chars.update(_DIGITS[int(char) : int(end) + 1])
            index += 3
            continue
        chars.add(char)
        index += 1
    if index >= len(text):
        raise PatternError("'[' is never closed", start)
    if not chars:
        raise PatternError("'[]' matches nothing", start)
    return frozenset(chars), index + 1


def _set_regex(chars: frozenset[str]) -> str:
    if len(chars) == 1:
        return re.escape(next(iter(chars)))
    if chars == _CLASSES["X"]:
        return "[0-9]"
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


def _parse_regex(text: str) -> Pattern:
    try:
        compiled = re.compile(text)
    except re.error as error:
        offset = error.pos if error.pos is not None else 0
        raise PatternError(f"regular expression error: {error.msg}", offset) from None
    return Pattern(text, compiled, None, "")


def is_dialable(number: str) -> bool:
    """True if ``number`` is non-empty and only uses keypad/E.164 characters."""
    return bool(number) and all(char in ALPHABET for char in number)
