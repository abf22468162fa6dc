"""Shared fixtures of the end-to-end tests: a real `pbx serve` on free ports
with the test module's dialplan, and pjsua2 phones.

A test module sets its dialplan by defining a ``dialplan`` fixture that
returns the YAML text (a module's fixture overrides the one here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import RunningServer

from .harness import Agents, Pbx, open_agents, start_pbx
from .phone import PhoneFactory, open_phones


@pytest.fixture
def dialplan() -> str:
    raise NotImplementedError("the test module must define a 'dialplan' fixture returning YAML text")


@pytest.fixture
def pbx(tmp_path: Path, dialplan: str) -> Iterator[Pbx]:
    with start_pbx(tmp_path / "pbx", dialplan) as running:
        yield running


@pytest.fixture
def server(pbx: Pbx) -> RunningServer:
    return pbx.server


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[PhoneFactory]:
    with open_phones(tmp_path / "phones") as factory:
        yield factory


@pytest.fixture
def agents(pbx: Pbx) -> Iterator[Agents]:
    """Alice (2001) and Bob (2002) as registered raw UAs; the module's
    dialplan must include ``harness.AGENT_EXTENSIONS``."""
    with open_agents(pbx) as both:
        yield both
