"""``pbx tls``: certificates for the TLS listener."""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from pathlib import Path

import click

DEFAULT_CERT = Path("var/tls/pbx.crt")
DEFAULT_KEY = Path("var/tls/pbx.key")


@click.group()
def tls() -> None:
    """Certificates for `pbx serve --listen tls:...`."""


@tls.command("self-signed")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CERT, show_default=True)
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_KEY, show_default=True)
@click.option("--name", "names", multiple=True,
              help="host name or IP address the certificate is for (repeatable); default: this host's "
                   "name, localhost and 127.0.0.1")
@click.option("--if-missing", is_flag=True, help="do nothing when both files exist already")
def self_signed(cert: Path, key: Path, names: tuple[str, ...], if_missing: bool) -> None:
    """Write a self-signed certificate and its key, for trying TLS out."""
    from pbx.transport.self_signed import write_self_signed

    if if_missing and cert.exists() and key.exists():
        click.echo(f"TLS certificate: {cert} (key {key})")
        return
    chosen = list(names) or [socket.gethostname(), "localhost", "127.0.0.1"]
    write_self_signed(cert, key, chosen, datetime.now(timezone.utc))
    click.echo(f"TLS certificate: wrote a self-signed certificate for {', '.join(chosen)} to {cert} (key {key}).")
    click.echo("  Phones must be told to trust it. To replace it, put your CA-issued certificate chain and key")
    click.echo(f"  in {cert} and {key} (or pass --tls-cert/--tls-key): the running server reads them again")
    click.echo("  when they change or on SIGHUP (`pbx reload`).")
