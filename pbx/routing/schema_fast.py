"""The dialplan schema compiled to Python, to pass a valid plan quickly.

jsonschema walks the schema for every value, about 1.2 s of CPU for a plan
of 20,000 extensions here. fastjsonschema turns the schema into Python code
once (about 0.07 s, then kept compiled beside the module) that then checks those 20,000 extensions in about
0.1 s. It only says whether the data is valid: the loader asks jsonschema
for the errors of data it refuses, so every message stays as it was.

That split is safe only if the compiled check never passes what jsonschema
refuses (tests/routing/test_schema_fast.py holds the two against each
other). Four things keep it so:

- fastjsonschema follows drafts 6 and 7 in ignoring the keywords beside a
  ``$ref``; Draft 2020-12 applies them, so such a ``$ref`` moves into an
  ``allOf`` first;
- ``const`` becomes a one-value ``enum`` (the same test in 2020-12):
  fastjsonschema 2.22 fails to generate ``const`` without detailed
  exceptions;
- a keyword it would ignore where 2020-12 validates (``prefixItems``,
  ``unevaluatedProperties``, ``dependentRequired``, ...) stops the compiling;
- it reads ``$`` in a ``pattern`` as the end of the text, where jsonschema's
  ``re.search`` also lets a final newline through: it refuses more, never less.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any, Final

import fastjsonschema

_ROOT_FUNCTION: Final = re.compile(r"^def (\w+)\(", re.MULTILINE)


def compile_validator(schema: dict[str, Any], *, cache: Path | None = None) -> Callable[[Any], bool]:
    """A function telling whether data is valid against ``schema`` (Draft 2020-12
    as far as the dialplan schema uses it).

    With a ``cache`` folder, the compiled code is kept there (marshalled, as
    Python keeps a module's bytecode in ``__pycache__``, and under the same
    rules: not written with ``PYTHONDONTWRITEBYTECODE``, a folder it cannot
    write only costs the compiling) and named by a hash of the schema,
    fastjsonschema's version, this module's source and Python's version:
    each new reload child then loads it in half a millisecond instead of
    generating and compiling it again (0.07 s).
    """
    name, code = _cached(schema, cache) if cache is not None else _generated(schema)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # what fastjsonschema.compile does
    check: Callable[[Any], object] = namespace[name]

    def valid(data: Any) -> bool:
        try:
            check(data)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return valid


def _generated(schema: dict[str, Any]) -> tuple[str, CodeType]:
    """The name of the root check function and the compiled module defining it."""
    code = fastjsonschema.compile_to_code(
        _as_draft_7(schema), use_default=False, use_formats=False, detailed_exceptions=False)
    # Each call into a $ref'd part formats its path for the error message with
    # .format(**locals()), copying the caller's locals: a third of the time for
    # 20,000 extensions. The message is never read, so the path stays unformatted.
    code = code.replace(".format(**locals())", "")
    root = _ROOT_FUNCTION.search(code)
    if root is None:
        raise ValueError("fastjsonschema generated no validation function")
    return root.group(1), compile(code, "<compiled dialplan schema>", "exec")


def _cached(schema: dict[str, Any], folder: Path) -> tuple[str, CodeType]:
    key = hashlib.sha256(b"\0".join([
        json.dumps(schema, sort_keys=True).encode(), fastjsonschema.VERSION.encode(),
        Path(__file__).read_bytes(), sys.version.encode(),
    ])).hexdigest()[:32]
    file = folder / f"{_CACHE_PREFIX}{key}.marshal"
    try:
        name, code = marshal.loads(file.read_bytes())
        if isinstance(name, str) and isinstance(code, CodeType):
            return name, code
    except (OSError, ValueError, EOFError, TypeError):  # none yet, or not ours: compile again
        pass
    name, code = _generated(schema)
    if not sys.dont_write_bytecode:
        try:
            folder.mkdir(exist_ok=True)
            for old in folder.glob(f"{_CACHE_PREFIX}*.marshal"):
                old.unlink(missing_ok=True)
            partial = file.with_name(f"{file.name}.{os.getpid()}")
            partial.write_bytes(marshal.dumps((name, code)))
            os.replace(partial, file)  # whole or not at all, whoever reads it
        except OSError:
            pass
    return name, code


_CACHE_PREFIX: Final = "dialplan-schema."


_SUBSCHEMA: Final = frozenset({"items", "additionalProperties", "propertyNames", "not", "if", "then", "else"})
_SUBSCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf"})
_SUBSCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "$defs"})
_ASSERTIONS: Final = frozenset({
    "type", "enum", "const", "required", "minProperties", "maxProperties", "minItems", "maxItems", "uniqueItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
    "pattern", "$ref",
})
_ANNOTATIONS: Final = frozenset({"$schema", "$id", "$comment", "title", "description", "default", "examples",
                                 "format"})
"""Keywords that do not validate: ``format`` is not asserted by jsonschema's
validator as the loader builds it, nor here (``use_formats=False``)."""


def _as_draft_7(schema: Any) -> Any:
    """``schema`` with a ``$ref`` beside other keywords moved into an ``allOf``
    and ``const`` written as ``enum``: the same meaning, read alike by both.
    A keyword fastjsonschema does not know as 2020-12 does (``prefixItems``,
    ``unevaluatedProperties``, ...) is refused rather than ignored."""
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):
        raise ValueError(f"a schema must be a mapping or a boolean, not {schema!r}")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SUBSCHEMA:
            if key == "items" and isinstance(value, list):
                raise ValueError("'items' as a list means other things in drafts 7 and 2020-12")
            out[key] = _as_draft_7(value)
        elif key in _SUBSCHEMA_LISTS:
            out[key] = [_as_draft_7(item) for item in value]
        elif key in _SUBSCHEMA_MAPS:
            out[key] = {name: _as_draft_7(item) for name, item in value.items()}
        elif key in _ASSERTIONS or key in _ANNOTATIONS or key.startswith("x-"):
            out[key] = value
        else:
            raise ValueError(f"schema keyword {key!r} is not checked by the compiled validator")
    if "$ref" in out and len(out.keys() - _ANNOTATIONS) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}, *out.get("allOf", [])]
    if "const" in out and "enum" not in out:
        out["enum"] = [out.pop("const")]
    return out
