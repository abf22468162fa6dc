"""``pbx ext``: commands about one extension, each in its own module
(``forward`` in :mod:`pbx.cli.forward`)."""

from __future__ import annotations

import click

from pbx.cli.forward import forward


@click.group()
def ext() -> None:
    """One extension's settings kept in the store."""


ext.add_command(forward)
