"""``pbx budget set|show|recount``: budgets from the command line.

``set`` writes the limit into the dialplan (``budgets.<kind>s.<name>``, in
the file that holds the budgets; validated, atomic) and asks the running
server to reload: a raise lets the next call through at once. ``show``
lists each budget's spend in a period from the store; ``recount`` counts
it again from the CDRs (after the store was lost or restored).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from pbx.cli.cdr import open_database
from pbx.cli.defaults import DEFAULT_PID_FILE
from pbx.cli.group import tell_server
from pbx.cli.report import DB, period_arg, plan_of
from pbx.routing.budgets import SECTION_OF, BudgetKind, Period, budget_uses, period_of
from pbx.routing.dialplan import Dialplan

KINDS: dict[str, BudgetKind] = {"extension": "extension", "department": "department", "project": "project",
                                "code": "account_code"}
DIALPLAN = click.option("--dialplan", "dialplan", required=True,
                        type=click.Path(path_type=Path, exists=True, dir_okay=False), help="the dialplan file")
PERIOD = click.option("--period", help="2026-12, 2026-W51 or 2026-12-24 (default: the current period).")


@click.group()
def budget() -> None:
    """Budgets per extension, department, project and account code."""


@budget.command("set")
@click.argument("kind", type=click.Choice(sorted(KINDS)))
@click.argument("name")
@click.argument("amount")
@DIALPLAN
@click.option("--pid-file", type=click.Path(path_type=Path), default=DEFAULT_PID_FILE, show_default=True,
              help="the pid file of `pbx serve`, to ask it to reload")
def set_budget(kind: str, name: str, amount: str, dialplan: Path, pid_file: Path) -> None:
    """Give KIND NAME (e.g. department sales) a limit of AMOUNT per period,
    in the plan's currency ('0' to stop all its paid calls)."""
    from pbx.routing.plan_edit import PlanEditError, set_value
    from pbx.routing.tariffs import MoneyError, parse_money

    plan = plan_of(dialplan)
    assert plan is not None
    try:
        parse_money(amount, plan.billing.minor_unit)
    except MoneyError as error:
        raise click.BadParameter(str(error), param_hint="AMOUNT") from None
    value: object = int(amount) if amount.isdigit() else amount
    try:
        written = set_value(dialplan, ("budgets", SECTION_OF[KINDS[kind]], name), value)
    except PlanEditError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        click.echo(f"pbx budget: {error}", err=True)
        sys.exit(1)
    click.echo(f"budget {kind} {name}: {plan.billing.money(parse_money(amount, plan.billing.minor_unit))}"
               f" per {plan.budgets.period}, written to {written}")
    tell_server(pid_file)


def _plan_and_period(dialplan: Path, period: str | None) -> tuple[Dialplan, Period]:
    """The plan, and ``period`` in its time zone (default: the budgets' current one)."""
    plan = plan_of(dialplan)
    assert plan is not None
    if period is not None:
        return plan, period_arg(period, plan.timezone)
    return plan, period_of(datetime.now(UTC), plan.budgets.period, plan.timezone)


@budget.command("show")
@PERIOD
@DB
@DIALPLAN
def show(period: str | None, db_url: str, dialplan: Path) -> None:
    """Each budget's limit, spend and share used in a period."""
    from pbx.store.budgets import read_spend

    plan, span = _plan_and_period(dialplan, period)
    label = span.label
    engine = open_database(db_url, "budget_spend")
    try:
        with engine.connect() as conn:
            spent, warned = read_spend(label, conn)
    except SQLAlchemyError as error:
        raise click.ClickException(f"cannot read budget spend: {type(error).__name__}") from None
    finally:
        engine.dispose()
    settings, billing = plan.budgets, plan.billing
    if not settings.budgets:
        click.echo("no budgets in the dialplan", err=True)
        return
    click.echo(f"period {label} (warn at {settings.warn_percent} %)")
    for use in budget_uses(settings, spent, warned, label):
        state = "EXHAUSTED" if use.state == "exhausted" else use.state
        click.echo(f"{use.budget.rule:<36} {billing.money(use.spent):>18} of {billing.money(use.budget.limit):>18}"
                   f" {use.percent:6.1f} %  {state}")


@budget.command("recount")
@PERIOD
@DB
@DIALPLAN
def recount_command(period: str | None, db_url: str, dialplan: Path) -> None:
    """Count each budget's spend in a period again from the CDRs."""
    from pbx.store.budgets import recount

    plan, span = _plan_and_period(dialplan, period)
    engine = open_database(db_url, "budget_spend")
    try:
        with engine.begin() as conn:
            counted = recount(list(plan.budgets.budgets.values()), span, datetime.now(UTC), conn)
    except SQLAlchemyError as error:
        raise click.ClickException(f"cannot recount budget spend: {type(error).__name__}") from None
    finally:
        engine.dispose()
    for key, total in counted.items():
        click.echo(f"{key:<36} {plan.billing.money(total)}")
