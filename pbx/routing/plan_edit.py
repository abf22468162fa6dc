"""Changing one value of a dialplan from the command line, safely.

``pbx ext suspend`` and ``pbx budget set`` change one key: the file that
holds it (the root file or an included one) is edited as YAML round-trip,
so comments, order and quoting elsewhere survive; written to a temporary
file and renamed over the old one, so a server polling it never reads
half a file; then the whole plan is validated, and the old file is put
back if the change made it invalid. Changes at once are serialised by a
lock on the file's folder (as :mod:`pbx.routing.members_file` does for
members files, with the same helpers).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Final

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from pbx.routing.loader import Problem, read_dialplan

DELETE: Final = object()
"""A value for :func:`set_value`: take the key out."""


class PlanEditError(Exception):
    """The change was not made; the message (and problems) say why."""

    def __init__(self, message: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def round_trip_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # entries stay on their lines, never re-wrapped
    return yaml


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (flock on the directory itself,
    so no lock file appears among the dialplan's files)."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _file_of(dialplan: Path, rule: str) -> Path:
    """The file that holds ``rule`` (a dotted path such as ``extensions.1001``),
    or the nearest section of it; the root file when none is written yet."""
    result = read_dialplan(dialplan)
    if result.dialplan is None:
        raise PlanEditError(f"{dialplan} has errors; fix them first", result.errors)
    where = result.dialplan.place(rule)
    if where is None:
        return dialplan
    return Path(where.rsplit(":", 2)[0])


def key_in(data: CommentedMap, key: str) -> object | None:
    # A hand-written `1001:` is an int to YAML; the dialplan reads keys as
    # their source text, so compare that way too.
    for found in data:
        if str(found) == key:
            existing: object = found
            return existing
    return None


def set_value(dialplan: Path, path: tuple[str, ...], value: object) -> Path:
    """Set the key at ``path`` (creating the mappings above it) to ``value``,
    or remove it with :data:`DELETE`; returns the file changed."""
    file = _file_of(dialplan, ".".join(path))
    with locked(file.parent):
        old_text = file.read_text(encoding="utf-8")
        data = round_trip_yaml().load(old_text)
        if not isinstance(data, CommentedMap):
            raise PlanEditError(f"{file}: expected a mapping at the top")
        here = data
        for part in path[:-1]:
            key = key_in(here, part)
            if key is None:
                if value is DELETE:
                    return file
                here[part] = CommentedMap()
                key = part
            child = here[key]
            if not isinstance(child, CommentedMap):
                raise PlanEditError(f"{file}: {'.'.join(path[:-1])} is not a mapping")
            here = child
        last = key_in(here, path[-1])
        if value is DELETE:
            if last is None:
                return file
            del here[last]
        else:
            here[last if last is not None else path[-1]] = value
        buffer = StringIO()
        round_trip_yaml().dump(data, buffer)
        write_atomically(file, buffer.getvalue())
        result = read_dialplan(dialplan)
        if result.dialplan is None:
            write_atomically(file, old_text)
            raise PlanEditError("the change would make the dialplan invalid; nothing was changed", result.errors)
    return file
