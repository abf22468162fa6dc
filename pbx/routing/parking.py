"""Call park (``parking:``), as the dialplan describes it; pure data.

Whoever holds a call dials ``*70``: the held caller goes to a slot (the
first free of ``slots``, e.g. 701–720), hears music, and the parker hears
the slot's number. Dialling the slot from any extension picks the call up
(with the picker's rights from then on: rights follow whoever has the
call). A parked call nobody picks up within ``ring_back`` seconds rings the
parker back. The running of it is :mod:`pbx.calls.parking`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_RING_BACK: Final = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Parking:
    first: int
    last: int
    ring_back: int = DEFAULT_RING_BACK
    """Seconds a call may stay parked before the parker's phones ring."""

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(str(number) for number in range(self.first, self.last + 1))

    def holds(self, number: str) -> bool:
        """Is ``number`` one of the slots?"""
        return number.isdigit() and not number.startswith("0") and self.first <= int(number) <= self.last
