"""Code strength, generation, the keyed hash and when a stored code may be used."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from pbx.accountcodes.codes import (StoredCode, WeakCode, check_chosen, code_digest, generate, guessable,
                                    unusable_because)

KEY = bytes(range(32))
NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("digits", "why"), [
    ("111111", "one digit repeated"),
    ("123456", "a run of consecutive digits"),
    ("987654", "a run of consecutive digits"),
    ("890123", "a run of consecutive digits"),   # wraps past 9
    ("121212", "a short block repeated"),
    ("123123", "a short block repeated"),
    ("483948", None),
    ("602826", None),
])
def test_guessable_codes(digits: str, why: str | None) -> None:
    assert guessable(digits) == why


@pytest.mark.parametrize(("digits", "message"), [
    ("1234", "at least 6 digits"),
    ("111111", "too easy to guess"),
    ("12a456", "digits 0-9 only"),
    ("12#456", "digits 0-9 only"),
    ("1" * 17, "at most 16"),
    ("٤٨٣٩٤٨", "digits 0-9 only"),   # Arabic-Indic digits pass str.isdigit
])
def test_chosen_codes_are_refused_with_a_reason(digits: str, message: str) -> None:
    with pytest.raises(WeakCode, match=message) as error:
        check_chosen(digits, 6)
    assert digits not in str(error.value)


def test_a_good_chosen_code_passes() -> None:
    check_chosen("48213907", 6)


def test_generated_codes_have_the_length_and_are_not_guessable() -> None:
    rng = random.Random(7)
    made = [generate(6, rng) for _ in range(2000)]
    assert all(len(code) == 6 and code.isdigit() and guessable(code) is None for code in made)
    assert len(set(made)) > 1990


def test_the_digest_is_keyed() -> None:
    assert code_digest(KEY, "483948") == code_digest(KEY, "483948")
    assert code_digest(KEY, "483948") != code_digest(bytes(32), "483948")
    assert code_digest(KEY, "483948") != code_digest(KEY, "483949")
    assert len(code_digest(KEY, "483948")) == 64
    with pytest.raises(ValueError):
        code_digest(b"short", "483948")


def stored(**changes: object) -> StoredCode:
    values: dict[str, object] = dict(id=1, owner="An", employee_id=None, department=None,
                                     class_of_service="management", status="active", valid_from=None,
                                     valid_until=None)
    values.update(changes)
    return StoredCode(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "why"), [
    ({}, None),
    ({"status": "disabled"}, "disabled"),
    ({"valid_until": NOW}, "expired"),
    ({"valid_until": NOW + timedelta(seconds=1)}, None),
    ({"valid_from": NOW + timedelta(days=1)}, "not_yet_valid"),
    ({"valid_from": NOW}, None),
])
def test_when_a_stored_code_may_be_used(changes: dict[str, object], why: str | None) -> None:
    assert unusable_because(stored(**changes), NOW) == why


def test_a_secrets_fingerprint_tells_secrets_apart() -> None:
    from pbx.accountcodes.codes import secret_fingerprint

    one, other = bytes(range(32)), bytes(32)
    assert secret_fingerprint(one) == secret_fingerprint(bytes(range(32)))
    assert secret_fingerprint(one) != secret_fingerprint(other)
    assert len(secret_fingerprint(one)) == 64 and one.hex() not in secret_fingerprint(one)
