"""The `dealbridge` command line: thin wrappers over services, one module per group."""

from __future__ import annotations

import click

from connector import __version__
from connector.cli import (
    check,
    db,
    demo,
    events,
    import_cmd,
    plan,
    run,
    sandbox,
    stripe_cmd,
    subscriptions,
    sync,
)
from connector.cli.state import CliState


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dealbridge")
@click.option(
    "--config",
    "config_path",
    envvar="DEALBRIDGE_CONFIG",
    type=click.Path(dir_okay=False),
    help="YAML config file (or DEALBRIDGE_CONFIG). Secrets come from the environment.",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """dealbridge: turn closed CRM deals into Stripe billing and keep both sides true."""
    ctx.obj = CliState(config_path=config_path)


def _add_commands(group: click.Group) -> None:
    for module in (run, check, db, sync, sandbox, events, plan, stripe_cmd, demo, import_cmd):
        for command in module.COMMANDS:
            group.add_command(command)
    for command in subscriptions.COMMANDS:
        group.add_command(command)


_add_commands(main)
