"""`dealbridge plan suggest --file DEAL.json`: the plan a deal would get, as JSON."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from typing import IO

import click

from connector.cli.state import CliState, pass_state
from connector.config import ConfigError, load_config
from connector.domain.deal import InvalidDeal, parse_deal
from connector.domain.plan import (
    InvalidOverrides,
    PlanDefaults,
    overrides_from_json,
    plan_to_json,
    suggest_plan,
)


@click.group()
def plan() -> None:
    """Billing plans."""


@plan.command("suggest")
@click.option(
    "--file",
    "deal_file",
    type=click.File("r"),
    required=True,
    help="Canonical deal JSON (see docs/billing-rules.md); '-' reads standard input.",
)
@click.option("--overrides", type=click.File("r"), default=None, help="Overrides JSON file.")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Suggest as of this date (UTC); defaults to today.",
)
@pass_state
def suggest(
    state: CliState,
    deal_file: IO[str],
    overrides: IO[str] | None,
    today: datetime | None,
) -> None:
    """Print the suggested plan; exit 2 with one line per problem if the deal can't be used."""
    defaults = _defaults(state)
    try:
        data = json.load(deal_file)
    except json.JSONDecodeError as exc:
        click.echo(f"deal: not valid JSON ({exc})", err=True)
        sys.exit(2)
    if not isinstance(data, dict):
        click.echo("deal: must be a JSON object", err=True)
        sys.exit(2)
    as_of: date = today.date() if today else datetime.now(UTC).date()
    try:
        deal = parse_deal(data)
        changes = overrides_from_json(json.load(overrides)) if overrides else None
        result = suggest_plan(deal, defaults, as_of, changes)
    except (InvalidDeal, InvalidOverrides) as exc:
        for problem in exc.problems:
            click.echo(f"{problem.field}: {problem.message}", err=True)
        sys.exit(2)
    click.echo(json.dumps(plan_to_json(result), indent=2, sort_keys=True))


def _defaults(state: CliState) -> PlanDefaults:
    """Configured defaults when a config is given; the built-in ones otherwise."""
    if state.config_path is None:
        return PlanDefaults()
    try:
        config = load_config(state.config_path, require_secrets=False)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"config: {problem}", err=True)
        sys.exit(2)
    section = config.section("plans")
    return PlanDefaults(
        payment_method_types=tuple(section["default_payment_method_types"]),
        days_until_due=section["default_days_until_due"],
    )


COMMANDS = [plan]
