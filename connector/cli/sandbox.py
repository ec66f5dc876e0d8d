"""`dealbridge sandbox stripe|salesforce`: run a local stand-in in the foreground."""

from __future__ import annotations

import click

from connector.bundled import salesforce_metadata_dir
from connector.demo import SAMPLE_ORG
from sandboxes import salesforce as salesforce_emulator
from sandboxes import stripe as stripe_emulator


@click.group()
def sandbox() -> None:
    """Local Stripe and Salesforce sandboxes speaking the real wire protocols."""


@sandbox.command("stripe")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12111, show_default=True)
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding beyond loopback.")
def stripe_sandbox(host: str, port: int, allow_non_loopback: bool) -> None:
    """Serve the Stripe sandbox until interrupted."""
    stripe_emulator.serve_forever(host, port, allow_non_loopback=allow_non_loopback)


@sandbox.command("salesforce")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12112, show_default=True)
@click.option(
    "--seed",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A YAML/JSON seed to load instead of dealbridge's sample org.",
)
@click.option("--empty", is_flag=True, help="Start with no records (the schema only).")
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding beyond loopback.")
def salesforce_sandbox(
    host: str, port: int, seed: str | None, empty: bool, allow_non_loopback: bool
) -> None:
    """Serve the Salesforce sandbox until interrupted.

    dealbridge's custom objects and fields are deployed, and the sample org (the four demo
    deals) is loaded unless --seed or --empty says otherwise.
    """
    salesforce_emulator.serve_forever(
        host,
        port,
        seed=None if empty else (seed or SAMPLE_ORG),
        metadata_dir=salesforce_metadata_dir(),
        allow_non_loopback=allow_non_loopback,
    )


COMMANDS = [sandbox]
