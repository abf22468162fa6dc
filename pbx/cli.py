"""The ``pbx`` command line (click)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pbx import __version__

DEFAULT_DB = "sqlite:///var/pbx.sqlite3"
DEFAULT_LISTEN = ("udp:0.0.0.0:5060", "tcp:0.0.0.0:5060")
DEFAULT_PID_FILE = Path("var/pbx.pid")


def parse_listen(value: str) -> tuple[str, str, int]:
    """``udp:HOST:PORT`` → ("udp", host, port); IPv6 hosts in brackets."""
    transport, sep, rest = value.partition(":")
    transport = transport.lower()
    host, colon, port_text = rest.rpartition(":")
    if not sep or not colon or transport not in ("udp", "tcp") or not port_text.isdigit():
        raise click.BadParameter(f"{value!r}: expected udp:HOST:PORT or tcp:HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise click.BadParameter(f"{value!r}: port out of range")
    return transport, host.strip("[]") or "0.0.0.0", port


@click.group()
@click.version_option(__version__, prog_name="pbx")
def main() -> None:
    """An asyncio SIP softswitch / PBX core."""


@main.command()
@click.option("--dialplan", "dialplan", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--listen", "listens", multiple=True, help="udp:HOST:PORT or tcp:HOST:PORT (repeatable)")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help="SQLAlchemy database URL")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE, show_default=True,
              help="where to write the process id, for `pbx reload`")
@click.option("--advertise", metavar="HOST",
              help="address put in Via and Contact (the public address when behind NAT); "
                   "default: the listen address, or this host's address when listening on 0.0.0.0")
def serve(dialplan: Path, listens: tuple[str, ...], db_url: str, log_format: str, log_level: str,
          pid_file: Path, advertise: str | None) -> None:
    """Run the PBX. SIGHUP, `pbx reload` or a change to the dialplan's files
    reloads the dialplan; an invalid file is reported and not used."""
    from pbx import log
    from pbx.app import run_server
    from pbx.routing.loader import DialplanError

    addresses = [parse_listen(v) for v in (listens or DEFAULT_LISTEN)]
    log.configure(json=None if log_format == "auto" else log_format == "json", level=log_level)
    try:
        run_server(dialplan, addresses, db_url, pid_file, advertise)
    except DialplanError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    except OSError as err:
        click.echo(f"pbx: cannot start: {err}", err=True)
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
def check(file: Path) -> None:
    """Validate a dialplan: problems as FILE:LINE:COLUMN: message."""
    from pbx.routing.loader import check_dialplan

    problems = check_dialplan(file)
    for problem in problems:
        click.echo(str(problem), err=problem.severity == "error")
    errors = sum(1 for p in problems if p.severity == "error")
    if errors:
        click.echo(f"{file}: {errors} error(s)", err=True)
        sys.exit(1)
    click.echo(f"{file}: ok")


@main.command()
@click.option("--from", "source", required=True, metavar="EXTENSION|trunk:KEY[/NUMBER]",
              help="the calling extension, or trunk:KEY for a call in from that trunk")
@click.option("--to", "dialled", required=True, metavar="NUMBER", help="the number dialled (the DID for a trunk)")
@click.option("--at", "at", metavar='"YYYY-MM-DD HH:MM"',
              help="when, in the dialplan's time zone (or ISO 8601 with an offset); default: now")
@click.option("--dialplan", "dialplan", type=click.Path(path_type=Path), default=Path("dialplans/example.yaml"),
              show_default=True)
def explain(source: str, dialled: str, at: str | None, dialplan: Path) -> None:
    """Show what the dialplan does with a call, and every rule behind it."""
    from datetime import datetime, timezone

    from pbx.routing.explain import ExplainError, explain_call, parse_at
    from pbx.routing.loader import read_dialplan

    result = read_dialplan(dialplan)
    if result.dialplan is None:
        for problem in result.errors:
            click.echo(str(problem), err=True)
        click.echo(f"{dialplan}: {len(result.errors)} error(s)", err=True)
        sys.exit(1)
    plan = result.dialplan
    try:
        moment = parse_at(at, plan.timezone) if at is not None else datetime.now(timezone.utc)
        click.echo(explain_call(plan, source, dialled, moment))
    except ExplainError as err:
        click.echo(f"pbx explain: {err}", err=True)
        sys.exit(2)


@main.command()
@click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE, show_default=True,
              help="the pid file `pbx serve` wrote")
@click.option("--dialplan", "dialplan", type=click.Path(path_type=Path),
              help="check this file first and do not signal the server if it has errors")
def reload(pid_file: Path, dialplan: Path | None) -> None:
    """Ask a running `pbx serve` to reload its dialplan (SIGHUP).

    The server validates the files itself and keeps its running plan if
    they have errors; its log says which (dialplan_reload_rejected)."""
    from pbx.control import ControlError, signal_reload

    if dialplan is not None:
        from pbx.routing.loader import check_dialplan

        problems = check_dialplan(dialplan)
        for problem in problems:
            click.echo(str(problem), err=True)
        if any(p.is_error for p in problems):
            click.echo(f"{dialplan}: has errors; the server was not asked to reload", err=True)
            sys.exit(1)
    try:
        pid = signal_reload(pid_file)
    except ControlError as err:
        click.echo(f"pbx reload: {err}", err=True)
        sys.exit(1)
    click.echo(f"asked pbx serve (pid {pid}) to reload its dialplan")


def _register_subcommands() -> None:
    from pbx.cdr.cli import cdr
    from pbx.group_cli import group

    main.add_command(cdr)
    main.add_command(group)


_register_subcommands()

if __name__ == "__main__":
    main()
