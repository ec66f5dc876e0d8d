"""`dealbridge sync --once`: one full round of all periodic work, then exit."""

from __future__ import annotations

import json

import click

from connector.cli.state import CliState, pass_state
from connector.jobs import default_registry
from connector.runtime import Runtime
from connector.store.migrate import upgrade


@click.command()
@click.option("--once", is_flag=True, required=True, help="Run one round and exit.")
@pass_state
def sync(state: CliState, once: bool) -> None:
    """Poll, reconcile and drain every queue once; prints what each job handled."""
    config = state.config()
    upgrade(config.database_url)
    runtime = Runtime(config)
    try:
        totals = default_registry().run_once(runtime)
    finally:
        runtime.close()
    click.echo(json.dumps(totals, sort_keys=True))


COMMANDS = [sync]
