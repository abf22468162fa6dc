"""Numbers in E.164: what a number plan knows about its country's dialling,
and the one form black lists, white lists and trunks are checked in.

People dial the way their country does: ``0912 345 678``, ``00 81 3…``,
Taiwan's ``002 81 3…`` or ``005 81 3…``, a local ``3822 1234`` without its
area code. One destination has many dialled forms, so a list written in one
of them misses the others (``00 53 .`` does not see ``002 53…`` from Taipei)
or hits another country (``00 252 .`` is Somalia from Ho Chi Minh City but
002 + 52, Mexico, from Taipei). So every outside number is first turned
into E.164 (ITU-T E.164: ``+``, the country code, the national significant
number; at most 15 digits, the first not 0) with the facts of the caller's
number plan (:class:`Numbering`), and lists match on that.

:func:`to_e164` applies the first rule that fits:

1. a number that begins with ``+`` is in E.164 already;
2. one that begins with an international prefix (the longest that fits):
   ``+`` and what follows it;
3. one that begins with the national (trunk) prefix: ``+``, the country
   code, and what follows the prefix;
4. a number of class ``local`` (dialled without its area code): ``+``, the
   country code, the plan's area code, the number;
5. anything else (service numbers such as ``1900 xxxx``): ``+``, the country
   code, the number.

What comes out must be well-formed E.164, or the number is refused:
``00 00053…`` would be ``+00053…``, which is no number at all. (Callers
leave emergency numbers alone: no list applies to them.)

Pure: no I/O; the loader and the routing engine use it alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from pbx.routing.patterns import TAIL_SET, Pattern, PatternError, Tail, parse_pattern, pattern_of

E164: Final = re.compile(r"\+[1-9][0-9]{0,14}")
"""A well-formed E.164 number: ``+``, 1 to 15 digits, the first not 0."""
NATIONAL: Final = re.compile(r"[0-9]{1,20}")
"""A number in a country's own dialling form, as a trunk may take it:
digits only (room for carrier prefixes such as Taiwan's ``005``)."""
COUNTRY_CODE: Final = re.compile(r"[1-9][0-9]{0,2}")
_DIGITS: Final = re.compile(r"[0-9]+")
_NOT_ZERO: Final = frozenset("123456789")

Fact = Literal["", "international_prefixes", "national_prefix", "area_code", "country_code"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Numbering:
    """How numbers are dialled where a number plan applies (its facts)."""

    country_code: str
    """``84`` for Vietnam, ``886`` for Taiwan: 1 to 3 digits, not 0 first."""
    national_prefix: str = ""
    """The trunk prefix before an area or mobile code (``0``); "" for none."""
    international_prefixes: tuple[str, ...] = ()
    """What precedes a country code when dialling abroad (``00``; Taiwan has
    one per carrier: ``002``, ``005`` …)."""
    area_code: str = ""
    """Put before numbers of class ``local`` (``28``, Ho Chi Minh City)."""

    def __post_init__(self) -> None:
        if COUNTRY_CODE.fullmatch(self.country_code) is None:
            raise ValueError(f"country code {self.country_code!r} must be 1 to 3 digits, not starting with 0")
        for prefix in (self.national_prefix, self.area_code):
            if prefix and _DIGITS.fullmatch(prefix) is None:
                raise ValueError(f"{prefix!r} must be digits")
        if any(_DIGITS.fullmatch(prefix) is None for prefix in self.international_prefixes):
            raise ValueError("international prefixes must be digits")

    def longest_first(self) -> tuple[str, ...]:
        return tuple(sorted(self.international_prefixes, key=len, reverse=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class InE164:
    """A number's E.164 form and how it was found."""

    number: str
    how: str
    """In words, for ``pbx explain``: ``international prefix 002 dropped``."""
    fact: Fact
    """The :class:`Numbering` key the rule used ("" for rule 1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed:
    """No E.164 number can be made of what was dialled."""

    why: str


def dialled_form(number: str, numbering: Numbering) -> str | None:
    """A number a phone dialled in E.164 (``+84912345678``, what a
    softphone's address book holds) as the plan's users would dial it:
    ``0912345678`` at home, ``00…`` (the first international prefix)
    abroad. None when ``number`` is not E.164 or the plan has no
    international prefix to dial it with."""
    if not is_e164(number):
        return None
    digits = number[1:]
    if digits.startswith(numbering.country_code):
        return numbering.national_prefix + digits[len(numbering.country_code):]
    if not numbering.international_prefixes:
        return None
    return numbering.international_prefixes[0] + digits


def is_e164(number: str) -> bool:
    return E164.fullmatch(number) is not None


def sendable(number: str) -> bool:
    """True if a trunk may be sent ``number``: well-formed E.164, or a
    national number of digits only. Never ``*``, ``#``, a ``+`` inside, or
    URI syntax: what leaves must be what the checks saw."""
    return is_e164(number) or NATIONAL.fullmatch(number) is not None


def to_e164(number: str, numbering: Numbering, *, local: bool = False) -> InE164 | Malformed:
    """The E.164 form of ``number``, or why there is none; ``local``: the
    plan classified it ``local`` (dialled without its area code)."""
    if number.startswith("+"):
        return _checked(number, number, "it is in E.164 already", "")
    for prefix in numbering.longest_first():
        if number.startswith(prefix):
            rest = number[len(prefix):]
            return _checked(number, "+" + rest, f"international prefix {prefix} dropped", "international_prefixes")
    cc = numbering.country_code
    national = numbering.national_prefix
    if national and number.startswith(national):
        rest = number[len(national):]
        return _checked(number, f"+{cc}{rest}", f"national prefix {national} replaced by +{cc}", "national_prefix")
    if local and numbering.area_code:
        return _checked(number, f"+{cc}{numbering.area_code}{number}",
                        f"a local number: +{cc} and area code {numbering.area_code} put in front", "area_code")
    return _checked(number, f"+{cc}{number}", f"+{cc} put in front", "country_code")


def _checked(dialled: str, made: str, how: str, fact: Fact) -> InE164 | Malformed:
    if is_e164(made):
        return InE164(number=made, how=how, fact=fact)
    digits = made[1:]
    if not digits:
        why = "nothing follows the prefix"
    elif _DIGITS.fullmatch(digits) is None:
        odd = next(char for char in digits if not char.isdigit())
        why = f"{odd!r} is not a digit"
    elif digits.startswith("0"):
        why = "no country code begins with 0"
    else:
        why = f"{len(digits)} digits, E.164 allows at most 15"
    return Malformed(why=f"{dialled} would be {made} in E.164 ({how}), which is no number: {why}")


# ---------------------------------------------------------------- lists


class NotE164(PatternError):
    """A list entry written the way some plan dials, not in E.164."""


def list_entry(text: str) -> Pattern:
    """A number-list entry: a pattern of E.164 numbers (``+84 28 3822 XXXX``,
    ``+882 .``), a bare country code meaning every number in it (``+53``:
    no real number is that short, so this reading is unambiguous), or a
    regular expression beginning ``^\\+``, matched against the E.164 form.

    Raises :class:`~pbx.routing.patterns.PatternError`, or
    :class:`NotE164` for a dial pattern that does not begin with ``+``.
    """
    pattern = parse_pattern(text)
    if pattern.positions is None:
        # A regex that does not begin with the '+' would quietly never
        # match (a black list entry "^00…" carried over from a dialled form).
        if not text.startswith(("^\\+", "^[+]")):
            raise NotE164("a regular expression in a list is matched against the number in E.164,"
                          " so it must begin with ^\\+", 0)
        return pattern
    if not pattern.positions or pattern.positions[0] != frozenset("+"):
        raise NotE164("list entries are matched against the number in E.164 (+ and the country code),"
                      " whatever prefix the caller dialled", 0)
    literal = pattern.literal
    if literal is not None and COUNTRY_CODE.fullmatch(literal[1:]) is not None:
        return pattern_of(pattern.positions, ".", text)
    return pattern


def e164_images(pattern: Pattern, numbering: Numbering, *, local: bool = False) -> tuple[Pattern, ...] | None:
    """Patterns covering every E.164 number :func:`to_e164` makes of the
    numbers ``pattern`` matches (more, never fewer); None for a regular
    expression."""
    positions, tail = pattern.positions, pattern.tail
    if positions is None:
        return None
    images: list[Pattern] = []
    cc = tuple(frozenset(c) for c in "+" + numbering.country_code)
    national = (numbering.national_prefix,) if numbering.national_prefix else ()
    for prefix, head in (("+", ()), *((p, (frozenset("+"),)) for p in numbering.longest_first()),
                         *((p, cc) for p in national)):
        fits = _starts(positions, tail, prefix)
        if fits == "never":
            continue
        rest, rest_tail = _after(positions, tail, len(prefix))
        if head == cc:
            images.append(pattern_of(head + rest, rest_tail))
        else:  # "+" or an international prefix: a country code follows
            image = _country_first(rest, rest_tail)
            if image is not None:
                images.append(image)
        if fits == "always":
            return tuple(images)
    area = tuple(frozenset(c) for c in numbering.area_code) if local else ()
    images.append(pattern_of(cc + area + positions, tail))
    return tuple(images)


def _starts(positions: tuple[frozenset[str], ...], tail: Tail, prefix: str) -> str:
    """Whether the numbers a pattern matches begin with ``prefix``:
    ``always``, ``sometimes`` or ``never``."""
    answer = "always"
    for index, char in enumerate(prefix):
        if index < len(positions):
            chars = positions[index]
        elif tail:
            chars, answer = TAIL_SET, "sometimes"  # the tail may be shorter, or other digits
        else:
            return "never"
        if char not in chars:
            return "never"
        if chars != frozenset(char):
            answer = "sometimes"
    return answer


def _country_first(rest: tuple[frozenset[str], ...], tail: Tail) -> Pattern | None:
    """``+`` and ``rest``, keeping only what E.164 allows first (1-9)."""
    plus = frozenset("+")
    if rest:
        first = rest[0] & _NOT_ZERO
        return pattern_of((plus, first, *rest[1:]), tail) if first else None
    return pattern_of((plus, _NOT_ZERO), "!") if tail else None


def _after(positions: tuple[frozenset[str], ...], tail: Tail, size: int) -> tuple[tuple[frozenset[str], ...], Tail]:
    if size <= len(positions):
        return positions[size:], tail
    return (), "!"  # the prefix ran into the tail: any digits may follow
