"""`dealbridge db upgrade`: apply migrations (the Procfile's release phase runs it)."""

from __future__ import annotations

import click

from connector.cli.state import CliState, pass_state
from connector.store.migrate import current_revision, upgrade


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_state
def db_upgrade(state: CliState, revision: str) -> None:
    """Migrate the store to the latest schema (idempotent)."""
    config = state.config(require_secrets=False)
    upgrade(config.database_url, revision)
    click.echo(f"database at revision {current_revision(config.database_url)}")


COMMANDS = [db]
