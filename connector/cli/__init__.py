"""The `dealbridge` command line: thin wrappers over services, one module per group."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from connector import __version__
from connector.config import Config, ConfigError, load_config
from connector.logs import configure_logging


@dataclass
class CliState:
    config_path: str | None

    def config(self, *, require_secrets: bool = True) -> Config:
        """Load config or stop with every problem listed (exit 2)."""
        try:
            config = load_config(self.config_path, require_secrets=require_secrets)
        except ConfigError as exc:
            click.echo("dealbridge cannot start; fix these configuration problems:", err=True)
            for problem in exc.problems:
                click.echo(f"  - {problem}", err=True)
            sys.exit(2)
        configure_logging(
            config.raw["app"]["log_level"],
            config.raw["app"]["log_format"],
            config.secrets.all_values(),
        )
        return config


pass_state = click.make_pass_decorator(CliState)


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


def _register() -> None:
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
        sync,
    )

    for module in (run, check, db, sync, sandbox, events, plan, stripe_cmd, demo, import_cmd):
        for command in module.COMMANDS:
            main.add_command(command)
    from connector.cli import subscriptions

    for command in subscriptions.COMMANDS:
        main.add_command(command)


_register()
