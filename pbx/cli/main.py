"""The ``pbx`` command line (click): the root group, with the commands of
the other modules of :mod:`pbx.cli` added to it."""

from __future__ import annotations

import click

from pbx import __version__
from pbx.cli.budget import budget
from pbx.cli.cdr import cdr
from pbx.cli.check import check
from pbx.cli.codes import codes
from pbx.cli.explain import explain
from pbx.cli.ext import ext
from pbx.cli.group import group
from pbx.cli.hunt import hunt
from pbx.cli.hours import hours
from pbx.cli.ldap import ldap
from pbx.cli.recordings import recordings
from pbx.cli.reload import reload
from pbx.cli.report import report
from pbx.cli.security import security
from pbx.cli.serve import serve
from pbx.cli.tls import tls
from pbx.cli.voicemail import voicemail


@click.group()
@click.version_option(__version__, prog_name="pbx")
def main() -> None:
    """An asyncio SIP softswitch / PBX core."""


main.add_command(serve)
main.add_command(check)
main.add_command(explain)
main.add_command(reload)
main.add_command(cdr)
main.add_command(group)
main.add_command(hunt)
main.add_command(security)
main.add_command(hours)
main.add_command(ext)
main.add_command(tls)
main.add_command(codes)
main.add_command(report)
main.add_command(budget)
main.add_command(ldap)
main.add_command(voicemail)
main.add_command(recordings)

if __name__ == "__main__":
    main()
