"""The YAML files the loader's fast paths are held to, read as YAML 1.2.

Every ``*.yaml`` under dialplans/ and tests/, and their data as ruamel.yaml
reads it with keys as text (as the loader keeps them), for the tests that
compare a fast path with the one it stands in for (test_schema_fast.py,
test_yaml_fast.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).parents[2]
PLAN_FILES = sorted([*(ROOT / "dialplans").rglob("*.yaml"), *(ROOT / "tests").rglob("*.yaml")])


def plan_data(path: Path) -> Any:
    """The file's data, keys as text; None if ruamel.yaml cannot read it
    (the syntax-error test files)."""
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except Exception:  # the syntax-error test files
        return None
    return keys_as_text(data)


def keys_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): keys_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [keys_as_text(item) for item in value]
    return value
