"""Where each rule of a dialplan is written: ``rule name -> file:line:col``.

A plan keeps the place of every node of its files for ``pbx explain`` and
the editing commands: some 100,000 for 20,000 extensions. As a dict of
strings that was most of what a reload's child sends back (70 % of the
pickled bytes) and a tenth of a second to build. :class:`RulePlaces` keeps
them as one string of the names and arrays of numbers instead, so it is
built, pickled, unpickled and compared in a few calls into C; the lookup
table is made on the first :meth:`~RulePlaces.get` (explain, an edit),
which a running server never asks for.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any


class RulePlaces:
    """Rule name (``extensions.1001.name``, ``routes[0]``) -> ``file:line:col``.

    Built from rows in file order; a name given twice keeps the later
    place, as a dict would. Two are equal when they map the same names to
    the same places.
    """

    __slots__ = ("_files", "_names", "_lengths", "_file", "_line", "_column", "_index")

    def __init__(self, files: tuple[str, ...] = (), names: str = "", lengths: array[int] | None = None,
                 file: array[int] | None = None, line: array[int] | None = None,
                 column: array[int] | None = None) -> None:
        self._files = files
        self._names = names
        self._lengths = lengths if lengths is not None else array("I")
        self._file = file if file is not None else array("I")
        self._line = line if line is not None else array("I")
        self._column = column if column is not None else array("I")
        self._index: dict[str, int] | None = None

    @classmethod
    def of(cls, names: Sequence[str], files: Sequence[str], lines: Iterable[int],
           columns: Iterable[int]) -> RulePlaces:
        """The places of ``names[i]``: ``files[i]:lines[i]:columns[i]``."""
        numbers = {path: number for number, path in enumerate(dict.fromkeys(files))}
        return cls(tuple(numbers), "".join(names), array("I", map(len, names)),
                   array("I", map(numbers.__getitem__, files)), array("I", lines), array("I", columns))

    def get(self, rule: str) -> str | None:
        """``file:line:col`` of ``rule``, or None if no node has that name."""
        if self._index is None:
            ends = list(accumulate(self._lengths))
            text = self._names
            self._index = {text[end - length:end]: number
                           for number, (end, length) in enumerate(zip(ends, self._lengths))}
        number = self._index.get(rule)
        if number is None:
            return None
        return f"{self._files[self._file[number]]}:{self._line[number]}:{self._column[number]}"

    def _as_dict(self) -> dict[str, str]:
        self.get("")
        assert self._index is not None
        return {rule: f"{self._files[self._file[n]]}:{self._line[n]}:{self._column[n]}"
                for rule, n in self._index.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RulePlaces):
            return NotImplemented
        if (self._names == other._names and self._lengths == other._lengths and self._files == other._files
                and self._file == other._file and self._line == other._line and self._column == other._column):
            return True
        # Written differently (rows in another order, a name twice): compare what they map.
        return self._as_dict() == other._as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RulePlaces: {len(self._lengths)} rules in {len(self._files)} files>"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The lookup table is not sent: the receiver rebuilds it if it asks.
        return RulePlaces, (self._files, self._names, self._lengths, self._file, self._line, self._column)
