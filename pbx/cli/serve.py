"""``pbx serve``: run the PBX."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pbx.cli.defaults import DEFAULT_DB, DEFAULT_LISTEN, DEFAULT_PID_FILE


def parse_listen(value: str) -> tuple[str, str, int]:
    """``udp:HOST:PORT`` → ("udp", host, port); IPv6 hosts in brackets."""
    transport, sep, rest = value.partition(":")
    transport = transport.lower()
    host, colon, port_text = rest.rpartition(":")
    if not sep or not colon or transport not in ("udp", "tcp", "tls", "ws", "wss") or not port_text.isdigit():
        raise click.BadParameter(f"{value!r}: expected udp:, tcp:, tls:, ws: or wss:HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise click.BadParameter(f"{value!r}: port out of range")
    return transport, host.strip("[]") or "0.0.0.0", port


def parse_http(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets) for --http."""
    host, colon, port_text = value.rpartition(":")
    if not colon or not port_text.isdigit() or int(port_text) > 65535:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080", param_hint="--http")
    return host.strip("[]") or "127.0.0.1", int(port_text)


@click.command()
@click.option("--dialplan", "dialplan", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--listen", "listens", multiple=True,
              help="udp:HOST:PORT, tcp:…, tls:…, ws:… or wss:… (repeatable; ws/wss: SIP over WebSocket)")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help="SQLAlchemy database URL")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE, show_default=True,
              help="where to write the process id, for `pbx reload`")
@click.option("--advertise", metavar="HOST",
              help="address put in Via and Contact (the public address when behind NAT); "
                   "default: the listen address, or this host's address when listening on 0.0.0.0")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate for tls: listeners, leaf first then its chain")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key of --tls-cert")
@click.option("--http", "http_address", metavar="HOST:PORT",
              help="also serve the web console, the API under /api/ and /metrics here (e.g. 127.0.0.1:8080)")
@click.option("--http-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="certificate (PEM) to serve --http over HTTPS")
@click.option("--http-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="private key (PEM) of --http-cert")
@click.option("--http-insecure-cookies", is_flag=True,
              help="session cookies without Secure, for plain HTTP beyond this host (not recommended)")
@click.option("--metrics-open-on-loopback", is_flag=True,
              help="let a Prometheus scraper on this machine (127.0.0.1, ::1) read /metrics without a token; "
                   "everyone else still needs an admin's session or API token")
def serve(dialplan: Path, listens: tuple[str, ...], db_url: str, log_format: str, log_level: str,
          pid_file: Path, advertise: str | None, tls_cert: Path | None, tls_key: Path | None,
          http_address: str | None, http_cert: Path | None, http_key: Path | None,
          http_insecure_cookies: bool, metrics_open_on_loopback: bool) -> None:
    """Run the PBX. SIGHUP, `pbx reload` or a change to the dialplan's files
    reloads the dialplan; an invalid file is reported and not used. The TLS
    certificate is read again the same ways (new connections get it)."""
    from pbx import log
    from pbx.routing.loader import DialplanError
    from pbx.server.app import run_server
    from pbx.store.code_key import CodeKeyError

    addresses = [parse_listen(v) for v in (listens or DEFAULT_LISTEN)]
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if any(t in ("tls", "wss") for t, _, _ in addresses) and tls_cert is None:
        raise click.UsageError("--listen tls:... (and wss:...) needs --tls-cert and --tls-key")
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    http = None
    if http_address is not None:
        from pbx.web.serve import HttpOptions

        if (http_cert is None) != (http_key is None):
            raise click.BadParameter("give --http-cert and --http-key together", param_hint="--http-cert")
        host, port = parse_http(http_address)
        http = HttpOptions(host=host, port=port, secure_cookies=not http_insecure_cookies, certificate=http_cert,
                           key=http_key, metrics_open_on_loopback=metrics_open_on_loopback)
    log.configure(json=None if log_format == "auto" else log_format == "json", level=log_level)
    try:
        run_server(dialplan, addresses, db_url, pid_file, advertise, tls, http)
    except DialplanError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    except (OSError, CodeKeyError) as err:
        click.echo(f"pbx: cannot start: {err}", err=True)
        sys.exit(1)
