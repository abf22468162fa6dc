"""The ``pbx`` command line (click): the root group, with the commands of
the other modules of :mod:`pbx.cli` added to it.

The commands are imported when one is run, not all at start: between them
they pull in the web console, the store and the media code, seconds of
imports that `pbx ext show` or `pbx reload` do not need (and every test that
runs the command line pays them). `pbx --help` still imports them all, to
show each one's summary.
"""

from __future__ import annotations

import importlib

import click

from pbx import __version__

# Command name -> the module of pbx.cli that defines it (under the same name).
COMMANDS: dict[str, str] = {
    "serve": "serve",
    "check": "check",
    "explain": "explain",
    "reload": "reload",
    "cdr": "cdr",
    "group": "group",
    "hunt": "hunt",
    "security": "security",
    "hours": "hours",
    "ext": "ext",
    "tls": "tls",
    "codes": "codes",
    "report": "report",
    "budget": "budget",
    "ldap": "ldap",
    "voicemail": "voicemail",
    "recordings": "recordings",
}


class LazyGroup(click.Group):
    """A group whose commands (`COMMANDS`) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return super().get_command(ctx, cmd_name)
        command = getattr(importlib.import_module(f"pbx.cli.{module}"), cmd_name)
        if not isinstance(command, click.Command):
            raise TypeError(f"pbx.cli.{module}.{cmd_name} is not a click command")
        return command


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="pbx")
def main() -> None:
    """An asyncio SIP softswitch / PBX core."""


if __name__ == "__main__":
    main()
