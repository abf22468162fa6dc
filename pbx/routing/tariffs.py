"""What an outside call costs: the ``billing:`` section of a dialplan.

Money is integers of the currency's minor unit (đồng for VND, cents for
USD): a price written ``"1100"`` or ``"0.35"`` is read exactly, never
through a float, and a price with more decimals than the currency has is
an error, not a rounding.

A tariff prices the calls of a trunk and/or of call classes, and may narrow
to destinations by E.164 prefix. The tariff of a call is the one whose
conditions all hold with the longest prefix; among equal prefixes, one that
names a trunk beats one that does not, then one that names classes; then
the first in the file. So a table reads like a provider's price list: a
default per class, exceptions by prefix.

The cost of ``billsec`` seconds (:meth:`Tariff.cost`):

* 0 s costs nothing, set-up charge included (nothing was billable);
* otherwise the seconds are rounded up to the billing increment: the first
  ``first`` seconds are billed whole, then each started block of ``next``
  seconds (``60/60`` per started minute, ``30/6``, ``1/1`` per second);
* cost = set-up + billed seconds × price per minute / 60, rounded up to a
  whole minor unit (providers round in their favour; so do we, so the bill
  never comes out above the budget's count).

Pure data: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

CURRENCY: Final = re.compile(r"[A-Z]{3}")
"""An ISO 4217 alphabetic code."""
MAX_MINOR_UNIT: Final = 4
_MONEY: Final = re.compile(r"[0-9]{1,15}(\.[0-9]{1,8})?")
_INCREMENT: Final = re.compile(r"([0-9]{1,4})/([0-9]{1,4})")


class MoneyError(ValueError):
    """A price or an amount that is not money in this currency."""


def parse_money(text: str, minor_unit: int) -> int:
    """``text`` (``"1100"``, ``"12.50"``) in minor units of a currency with
    ``minor_unit`` decimals. Exact; more decimals than the currency has is
    an error."""
    if not isinstance(text, str) or _MONEY.fullmatch(text) is None:
        raise MoneyError(f"{text!r} is not an amount (digits, optionally a point and decimals)")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise MoneyError(f"{text!r} is not an amount") from None
    scaled = value.scaleb(minor_unit)
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{text!r} has more than {minor_unit} decimal"
                         f"{'s' if minor_unit != 1 else ''}, the currency's minor unit")
    return int(scaled)


def format_money(minor: int, minor_unit: int, currency: str | None = None) -> str:
    """``minor`` units as a decimal amount (``1210`` with 2 decimals: ``12.10``),
    thousands separated by a comma, with the currency code after it."""
    sign = "-" if minor < 0 else ""
    whole, part = divmod(abs(minor), 10 ** minor_unit)
    text = f"{sign}{whole:,}" + (f".{part:0{minor_unit}d}" if minor_unit else "")
    return f"{text} {currency}" if currency else text


def to_decimal(minor: int, minor_unit: int) -> Decimal:
    """``minor`` units as an exact Decimal amount (for the CDR's ``cost``)."""
    return Decimal(minor).scaleb(-minor_unit)


@dataclass(frozen=True, slots=True)
class Increment:
    """Billing increment ``first/next`` in seconds: the first ``first``
    seconds are billed whole, then each started ``next`` seconds."""

    first: int
    next: int

    def __post_init__(self) -> None:
        if self.first < 1 or self.next < 1:
            raise ValueError("billing increments must be at least 1 second")

    @classmethod
    def parse(cls, text: str) -> Increment:
        found = _INCREMENT.fullmatch(text) if isinstance(text, str) else None
        if found is None:
            raise ValueError(f"increment {text!r} must be FIRST/NEXT in seconds, e.g. 60/60, 30/6, 1/1")
        return cls(int(found.group(1)), int(found.group(2)))

    def billed(self, seconds: int) -> int:
        """Seconds billed for a call of ``seconds`` (0 for none)."""
        if seconds <= 0:
            return 0
        if seconds <= self.first:
            return self.first
        blocks = -(-(seconds - self.first) // self.next)
        return self.first + blocks * self.next

    def __str__(self) -> str:
        return f"{self.first}/{self.next}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tariff:
    """One row of ``billing.tariffs``."""

    id: str
    """Stable name, written on each CDR the tariff priced."""
    per_minute: int
    """Minor units per minute."""
    setup: int = 0
    """Minor units charged once for an answered call."""
    increment: Increment = Increment(60, 60)
    trunk: str | None = None
    classes: frozenset[str] | None = None
    prefixes: tuple[str, ...] = ()
    """E.164 prefixes (``+8490``); empty: any destination."""
    rule: str = ""
    """``billing.tariffs[3]``."""

    def __post_init__(self) -> None:
        if self.per_minute < 0 or self.setup < 0:
            raise ValueError(f"tariff {self.id!r}: prices must not be negative")

    @property
    def free(self) -> bool:
        return self.per_minute == 0 and self.setup == 0

    def cost(self, billsec: int) -> int:
        """Minor units for an answered call of ``billsec`` seconds."""
        billed = self.increment.billed(billsec)
        if billed == 0:
            return 0
        return self.setup + -(-(billed * self.per_minute) // 60)

    def prefix_for(self, number: str | None) -> str | None:
        """The longest of this tariff's prefixes ``number`` starts with; ""
        when the tariff has none; None when it has some and none fits."""
        if not self.prefixes:
            return ""
        if number is None:
            return None
        fits = [prefix for prefix in self.prefixes if number.startswith(prefix)]
        return max(fits, key=len) if fits else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """The tariff a call is priced by, in its currency."""

    tariff: Tariff
    currency: str
    minor_unit: int

    def money(self, minor: int) -> str:
        return format_money(minor, self.minor_unit, self.currency)


@dataclass(frozen=True, slots=True, kw_only=True)
class Billing:
    """The ``billing:`` section: one currency and the tariffs in it."""

    currency: str = "VND"
    minor_unit: int = 0
    """Decimals of the currency (ISO 4217: VND 0, USD 2, TWD 2)."""
    tariffs: tuple[Tariff, ...] = ()

    def __post_init__(self) -> None:
        if CURRENCY.fullmatch(self.currency) is None:
            raise ValueError(f"currency {self.currency!r} must be an ISO 4217 code such as VND")
        if not 0 <= self.minor_unit <= MAX_MINOR_UNIT:
            raise ValueError(f"minor_unit must be 0 to {MAX_MINOR_UNIT}")
        ids = [tariff.id for tariff in self.tariffs]
        if len(set(ids)) != len(ids):
            raise ValueError("tariff ids must be unique")

    def tariff_for(self, trunk: str, call_class: str | None, number: str | None) -> Tariff | None:
        """The tariff of a call through ``trunk`` of ``call_class`` to
        ``number`` (E.164 when known), or None when no tariff applies."""
        return best_tariff(self.tariffs, trunk, call_class, number)

    def rate_for(self, trunk: str, call_class: str | None, number: str | None) -> Rate | None:
        """:meth:`tariff_for` with the currency, as a call keeps it: a
        reload changes prices for new calls only."""
        tariff = self.tariff_for(trunk, call_class, number)
        return None if tariff is None else Rate(tariff=tariff, currency=self.currency, minor_unit=self.minor_unit)

    def money(self, minor: int) -> str:
        return format_money(minor, self.minor_unit, self.currency)


def best_tariff(tariffs: Iterable[Tariff], trunk: str, call_class: str | None,
                number: str | None) -> Tariff | None:
    best: Tariff | None = None
    best_rank = (-1, False, False)
    for tariff in tariffs:
        if tariff.trunk is not None and tariff.trunk != trunk:
            continue
        if tariff.classes is not None and call_class not in tariff.classes:
            continue
        prefix = tariff.prefix_for(number)
        if prefix is None:
            continue
        rank = (len(prefix), tariff.trunk is not None, tariff.classes is not None)
        if rank > best_rank:  # strictly: the first in the file wins a tie
            best, best_rank = tariff, rank
    return best
