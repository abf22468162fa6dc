"""The ``nat`` key of an extension: loaded, defaulted, refused with its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.routing.dialplan import Extension
from pbx.routing.loader import check_dialplan, load_dialplan

PLAN = """\
domain: pbx.example.com
departments:
  sales: {name: Sales}
extensions:
  1001:
    name: An
    department: sales
    password: "correct horse"
    nat: force
  1002: {name: Binh, department: sales, password: "battery staple", nat: never}
  1003: {name: Chi, department: sales, password: "staple horse"}
"""


def test_nat_is_loaded_and_defaults_to_auto(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    plan = load_dialplan(path)
    assert [plan.extensions[n].nat for n in ("1001", "1002", "1003")] == ["force", "never", "auto"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("always", "plan.yaml:9:10: 'nat' of extension '1001' must be one of 'auto', 'force', 'never'"),
        ("yes", "plan.yaml:9:10: 'nat' of extension '1001' must be one of 'auto', 'force', 'never'"),
        ("3", "plan.yaml:9:10: 'nat' of extension '1001' must be one of 'auto', 'force', 'never'"),
    ],
)
def test_a_bad_nat_value_is_reported_at_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN.replace("nat: force", f"nat: {value}"))
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_dialplan("plan.yaml")] == [message]


def test_the_model_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="nat must be one of auto, force, never"):
        Extension(number="1001", name="An", department="sales", password="x" * 10,
                  nat="sometimes")  # type: ignore[arg-type]
