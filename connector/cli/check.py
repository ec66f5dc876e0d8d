"""`dealbridge check`: every configuration and mapping problem at once, before deploying.

``--online`` goes on, once the offline checks pass, to ask the CRM itself: the runtime's
CRM adapter checks that every mapped object, field, relationship and key exists there
(``CrmAdapter.check_schema``).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from connector.cli.state import CliState, pass_state
from connector.config import Config, ConfigError, load_config
from connector.crm.base import CrmError
from connector.mappings import MappingError, load_mapping
from connector.runtime import Runtime
from connector.services.subscribers import subscriber_problems


@click.command()
@click.option(
    "--online",
    is_flag=True,
    help="Also check the mapping against the CRM itself (needs its credentials and network).",
)
@pass_state
def check(state: CliState, online: bool) -> None:
    """Validate config and mappings; exit 0 when all is well, 2 with every problem listed."""
    problems: list[str] = []
    config = None
    try:
        config = load_config(state.config_path)
        # Secrets are checked by loading; the event names each subscriber wants are not.
        problems.extend(subscriber_problems(config))
    except ConfigError as exc:
        problems.extend(exc.problems)
        try:  # still validate the mapping the config names, if the rest parses
            config = load_config(state.config_path, require_secrets=False)
        except ConfigError:
            config = None
    if config is not None:
        try:
            load_mapping(config.mapping_path, config.crm_kind)
        except MappingError as exc:
            problems.extend(exc.problems)
    if problems:
        _fail(problems)
    assert config is not None
    click.echo(f"ok: configuration and {config.mapping_path.name} are valid")
    if online:
        _check_online(config)


def _check_online(config: Config) -> None:
    runtime = Runtime(config)
    try:
        problems = runtime.crm.check_schema()
    except CrmError as exc:
        _fail([f"crm: could not check the mapping against the CRM: {exc}"])
    finally:
        runtime.close()
    if problems:
        _fail(problems)
    click.echo(f"ok: the CRM has every object and field {config.mapping_path.name} maps")


def _fail(problems: list[str]) -> NoReturn:
    click.echo(f"{len(problems)} problem(s) found:", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(2)


COMMANDS = [check]
