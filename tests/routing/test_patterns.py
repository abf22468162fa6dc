"""Dial patterns and anchored regular expressions: matching, errors with the
offending character, and the exact cover/overlap answers the loader's
"can never match" warnings rely on (checked against brute force)."""

from __future__ import annotations

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.routing.patterns import PatternError, is_dialable, parse_pattern


@pytest.mark.parametrize(
    ("pattern", "number", "expected"),
    [
        ("113", "113", True),
        ("113", "1130", False),
        ("11[345]", "114", True),
        ("11[345]", "116", False),
        ("[1-5]", "3", True),
        ("[1-35]", "4", False),
        ("[1-35]", "5", True),
        ("X", "0", True),
        ("Z", "0", False),
        ("Z", "1", True),
        ("N", "1", False),
        ("N", "2", True),
        ("n", "9", True),  # letters in either case
        ("0ZXXXXXXXX.", "02873000000", True),
        ("0ZXXXXXXXX.", "0287300000", False),  # '.' needs at least one more
        ("0ZXXXXXXXX!", "0287300000", True),  # '!' takes none as well
        ("00.", "00", False),
        ("00.", "0081", True),
        ("1900 XXXX", "19001234", True),  # spaces are only for reading
        ("1900 XXXX", "1900 1234", False),
        ("+84 X.", "+84912345678", True),
        ("*97", "*97", True),
        ("#", "#", True),
        (".", "12345", True),
        ("!", "", True),
        ("^\\+84[0-9]{9}$", "+84912345678", True),
        ("^\\+84[0-9]{9}", "+849123456789", False),  # anchored at both ends anyway
        ("^(113|114|115)", "115", True),
        ("^0[35789]", "0912345678", False),  # a regex never matches a part
    ],
)
def test_matching(pattern: str, number: str, expected: bool) -> None:
    assert parse_pattern(pattern).matches(number) is expected


@pytest.mark.parametrize(
    ("pattern", "message", "offset"),
    [
        ("0[35", "'[' is never closed", 1),
        ("12a", "'a' is not allowed; use digits, * # +, X Z N, [..], a final . or !,"
                " or start with ^ for a regular expression", 2),
        ("1.2", "'.' may only end a pattern", 1),
        ("1!.", "'!' may only end a pattern", 1),
        ("[]", "'[]' matches nothing", 0),
        ("[9-1]", "range 9-1 must go from a digit up to a digit", 1),
        ("[a]", "'a' is not allowed inside [...]", 1),
        ("12]", "']' without '['", 2),
        ("^(1", "regular expression error: missing ), unterminated subpattern", 1),
        ("   ", "pattern is empty", 0),
    ],
)
def test_errors_name_the_character(pattern: str, message: str, offset: int) -> None:
    with pytest.raises(PatternError) as caught:
        parse_pattern(pattern)
    assert (caught.value.message, caught.value.offset) == (message, offset)


def test_literal_and_numbers() -> None:
    assert parse_pattern("1080").literal == "1080"
    assert parse_pattern("11[345]").literal is None
    assert parse_pattern("11[345]").numbers() == ("113", "114", "115")
    assert parse_pattern("1900XXXX").numbers() is None  # 10,000 numbers: too many to list
    assert parse_pattern("00.").numbers() is None
    assert parse_pattern("^113$").numbers() is None


@pytest.mark.parametrize(
    ("wide", "narrow", "covers"),
    [
        ("0[2-8]XXXXXXX!", "0204XXXXXX", True),  # why 0204 must come before national
        ("0204XXXXXX", "0[2-8]XXXXXXX!", False),
        ("00.", "00870.", True),
        ("00870.", "00.", False),
        ("0ZXXXXXXXX.", "0912345678", False),  # mobile numbers are one digit short
        ("X.", "0!", False),  # '0!' also matches '0', which 'X.' (two or more) does not
        ("X!", "0.", True),
        (".", "!", False),  # '!' matches the empty number
        ("!", ".", True),
        ("11[2345]", "113", True),
        ("11[345]", "112", False),
    ],
)
def test_covers(wide: str, narrow: str, covers: bool) -> None:
    assert parse_pattern(wide).covers(parse_pattern(narrow)) is covers


def test_regular_expressions_give_no_proof() -> None:
    regex, dial = parse_pattern("^11[345]$"), parse_pattern("113")
    assert regex.covers(dial) is None and dial.covers(regex) is None
    assert regex.overlaps(dial) is None


_SMALL = ["0", "1", "X", "Z", "[01]", "[12]"]
_TAILS = ["", ".", "!"]
_SMALL_PATTERNS = sorted({"".join(body) + tail for n in range(3) for body in product(_SMALL, repeat=n)
                          for tail in _TAILS if body or tail})


def _brute(text: str) -> set[str]:
    """Every string of up to 4 characters over 0 1 2 3 + the pattern matches."""
    pattern = parse_pattern(text)
    return {"".join(chars) for n in range(5) for chars in product("0123+", repeat=n)
            if pattern.matches("".join(chars))}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_SMALL_PATTERNS), st.sampled_from(_SMALL_PATTERNS))
def test_covers_and_overlaps_agree_with_brute_force(first: str, second: str) -> None:
    a, b = parse_pattern(first), parse_pattern(second)
    matched_a, matched_b = _brute(first), _brute(second)
    # This alphabet tells every set used apart (X and Z at 0, [12] and Z at
    # 3, a digit and an open tail at +), and length 4 is past every fixed
    # part, so these finite sets are exact witnesses for such short patterns.
    assert a.covers(b) is (matched_b <= matched_a)
    assert a.overlaps(b) is bool(matched_a & matched_b)


@pytest.mark.parametrize(
    ("number", "expected"),
    [("0912345678", True), ("+84912345678", True), ("*97", True), ("", False), ("12a", False), ("1 2", False)],
)
def test_is_dialable(number: str, expected: bool) -> None:
    assert is_dialable(number) is expected
