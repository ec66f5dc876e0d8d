"""What every command shares: where the config lives, loaded once a command needs it."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

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
