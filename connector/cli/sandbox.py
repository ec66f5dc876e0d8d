"""`dealbridge sandbox stripe|salesforce`: run a local stand-in in the foreground."""

from __future__ import annotations

import click


@click.group()
def sandbox() -> None:
    """Local Stripe and Salesforce sandboxes speaking the real wire protocols."""


@sandbox.command("stripe")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12111, show_default=True)
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding beyond loopback.")
def stripe_sandbox(host: str, port: int, allow_non_loopback: bool) -> None:
    """Serve the Stripe sandbox until interrupted."""
    from connector.sandbox.stripe import serve_forever

    serve_forever(host, port, allow_non_loopback=allow_non_loopback)


@sandbox.command("salesforce")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12112, show_default=True)
@click.option("--seed", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding beyond loopback.")
def salesforce_sandbox(host: str, port: int, seed: str | None, allow_non_loopback: bool) -> None:
    """Serve the Salesforce sandbox (with the sample org unless --seed) until interrupted."""
    from connector.sandbox.salesforce import serve_forever

    serve_forever(host, port, seed=seed, allow_non_loopback=allow_non_loopback)


COMMANDS = [sandbox]
