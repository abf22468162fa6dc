"""``pbx report``: cost allocation and traffic from the CDRs.

``pbx report --by department --period 2026-12 [--csv]`` lists calls,
answered calls, minutes and cost per department (extension, account code,
call class, trunk or project) with a total; ``--extension 1003`` is one
person's own usage. ``pbx report traffic`` shows when calls come: per hour
of the day and weekday, the answer rate, the wait before an answer
(average and 90th percentile) and the busiest hour, and with ``--svg FILE``
a bar chart of the hours.

Periods (``2026``, ``2026-12``, ``2026-W51``, ``2026-12-24``) are read in
``--tz``, else the dialplan's time zone (``--dialplan``), else the
system's; money is written in the dialplan's currency, or the one the
CDRs name.
"""

from __future__ import annotations

import csv
import io
import sys
import zoneinfo
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TextIO

import click
from sqlalchemy.exc import SQLAlchemyError

from pbx.cdr.query import display_width, spreadsheet_safe
from pbx.cdr.reports import REPORT_BY, WEEKDAYS, ReportBy, UsageReport, traffic_report, traffic_svg, usage_report
from pbx.cli.cdr import open_database
from pbx.cli.defaults import DEFAULT_DB
from pbx.routing.budgets import Period, parse_period, period_of
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader_cost import MINOR_UNITS
from pbx.routing.tariffs import format_money

DB = click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, help="SQLAlchemy database URL.")
PERIOD = click.option("--period", help="2026, 2026-12, 2026-W51 or 2026-12-24 (default: this month).")
TZ = click.option("--tz", "tz_name", help="IANA time zone of the period and hours (default: the dialplan's,"
                  " else the system's), e.g. Asia/Ho_Chi_Minh.")
DIALPLAN = click.option("--dialplan", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                        help="the dialplan, for its time zone and currency")
EXTENSION = click.option("--extension", "-e", help="Only the calls this extension placed (someone's own usage).")


def plan_of(path: Path | None) -> Dialplan | None:
    if path is None:
        return None
    from pbx.routing.loader import read_dialplan

    result = read_dialplan(path)
    if result.dialplan is None:
        for problem in result.errors:
            click.echo(str(problem), err=True)
        raise click.ClickException(f"{path} has errors")
    return result.dialplan


def zone_arg(name: str | None, plan: Dialplan | None) -> tzinfo:
    if name is not None:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise click.BadParameter(f"unknown time zone {name!r}", param_hint="--tz") from None
    if plan is not None:
        return plan.timezone
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC


def period_arg(label: str | None, zone: tzinfo) -> Period:
    if label is None:
        return period_of(datetime.now(UTC), "month", zone)
    try:
        return parse_period(label, zone)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--period") from None


def _money_format(report: UsageReport, plan: Dialplan | None) -> tuple[int, str]:
    """(minor unit, currency) to write costs in."""
    if plan is not None:
        return plan.billing.minor_unit, plan.billing.currency
    if len(report.currencies) == 1:
        currency = report.currencies[0]
        return MINOR_UNITS.get(currency, 0), currency
    return 0, "minor units"


@click.group(invoke_without_command=True)
@click.option("--by", type=click.Choice(REPORT_BY), default="department", show_default=True,
              help="What each row is.")
@PERIOD
@TZ
@EXTENSION
@click.option("--csv", "as_csv", is_flag=True, help="CSV for a spreadsheet (UTF-8 with a BOM: Excel keeps"
              " Vietnamese and Chinese names intact).")
@click.option("--bom/--no-bom", default=True, show_default=True, help="Start the CSV with a byte order mark.")
@DB
@DIALPLAN
@click.pass_context
def report(ctx: click.Context, by: str, period: str | None, tz_name: str | None, extension: str | None,
           as_csv: bool, bom: bool, db_url: str, dialplan: Path | None) -> None:
    """Calls, answered, minutes and cost per department, extension, code,
    class, trunk or project, with a total; or `traffic`."""
    if ctx.invoked_subcommand is not None:
        return
    plan = plan_of(dialplan)
    zone = zone_arg(tz_name, plan)
    span = period_arg(period, zone)
    engine = open_database(db_url)
    try:
        found = usage_report(engine, _report_by(by), span, extension=extension)
    except SQLAlchemyError as error:
        raise click.ClickException(f"cannot read the CDRs: {type(error).__name__}") from None
    finally:
        engine.dispose()
    minor_unit, currency = _money_format(found, plan)
    if as_csv:
        sys.stdout.flush()
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8-sig" if bom else "utf-8", newline="")
        try:
            write_usage_csv(found, out, minor_unit, currency)
            out.flush()
        finally:
            out.detach()
        return
    for line in usage_table(found, minor_unit, currency, str(zone)):
        click.echo(line)


def _report_by(by: str) -> ReportBy:
    for choice in ("department", "extension", "code", "class", "trunk", "project"):
        if by == choice:
            return choice
    raise click.BadParameter(by, param_hint="--by")


def _label(key: str | None) -> str:
    return "(none)" if key is None else "".join(c if c.isprintable() else "?" for c in key)


def usage_table(found: UsageReport, minor_unit: int, currency: str, zone: str) -> list[str]:
    header = [found.by, "calls", "answered", "minutes", f"cost ({currency})"]
    lines = [[_label(row.key), str(row.calls), str(row.answered), f"{row.minutes:.1f}",
              format_money(row.cost, minor_unit)] for row in found.rows]
    total = found.total
    lines.append(["TOTAL", str(total.calls), str(total.answered), f"{total.minutes:.1f}",
                  format_money(total.cost, minor_unit)])
    widths = [max(display_width(line[i]) for line in [header, *lines]) for i in range(5)]

    def layout(cells: list[str]) -> str:
        first = cells[0] + " " * (widths[0] - display_width(cells[0]))
        rest = [" " * (w - display_width(c)) + c for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    title = f"period {found.period.label} ({zone})"
    return [title, layout(header), *(layout(line) for line in lines)]


def write_usage_csv(found: UsageReport, out: TextIO, minor_unit: int, currency: str) -> None:
    """One line per row and a TOTAL line; cost as a decimal number so a
    spreadsheet sums it, minutes with two decimals."""
    writer = csv.writer(out)
    writer.writerow([found.by, "calls", "answered", "minutes", "cost", "currency", "period"])
    for row in (*found.rows, found.total):
        key = "TOTAL" if row is found.total else ("" if row.key is None else spreadsheet_safe(row.key))
        writer.writerow([key, row.calls, row.answered, f"{row.minutes:.2f}",
                         format_money(row.cost, minor_unit).replace(",", ""), currency, found.period.label])


@report.command()
@PERIOD
@TZ
@EXTENSION
@click.option("--svg", "svg_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also draw calls per hour of the day into this SVG file.")
@DB
@DIALPLAN
def traffic(period: str | None, tz_name: str | None, extension: str | None, svg_path: Path | None, db_url: str,
            dialplan: Path | None) -> None:
    """Calls per hour of day and weekday, answer rate, wait before answer,
    the busiest hour."""
    plan = plan_of(dialplan)
    zone = zone_arg(tz_name, plan)
    span = period_arg(period, zone)
    engine = open_database(db_url)
    try:
        found = traffic_report(engine, span, zone, extension=extension)
    except SQLAlchemyError as error:
        raise click.ClickException(f"cannot read the CDRs: {type(error).__name__}") from None
    finally:
        engine.dispose()
    rate = found.answer_rate
    click.echo(f"period {span.label} ({zone}): {found.calls} calls, {found.answered} answered"
               + (f" ({rate:.1%})" if rate is not None else ""))
    average, p90 = found.average_wait, found.wait_percentile(0.9)
    if average is not None:
        click.echo(f"wait before answer: average {average:.1f} s, 90th percentile {p90} s")
    if found.busiest is not None:
        when, calls = found.busiest
        click.echo(f"busiest hour: {when:%Y-%m-%d %H:00} ({calls} calls); busiest hour of the day:"
                   f" {found.busiest_hour_of_day:02d}:00")
    click.echo("hour  calls  answered")
    for hour in range(24):
        click.echo(f"{hour:02d}    {found.by_hour[hour]:5d}  {found.answered_by_hour[hour]:8d}")
    click.echo("weekday  calls")
    for index, name in enumerate(WEEKDAYS):
        click.echo(f"{name}      {found.by_weekday[index]:5d}")
    if svg_path is not None:
        svg_path.write_text(traffic_svg(found, f"Calls per hour, {span.label}"), encoding="utf-8")
        click.echo(f"chart written to {svg_path}")
