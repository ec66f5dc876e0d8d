"""`dealbridge stripe webhook-setup --url URL`: point Stripe's webhooks at dealbridge.

Creates the webhook endpoint with exactly the events dealbridge handles and prints its
signing secret once (stdout only; never logged). Run again for the same URL, it updates the
existing endpoint's events instead of creating a second one; Stripe then keeps the secret.
"""

from __future__ import annotations

import sys
import uuid
from urllib.parse import urlsplit

import click

from connector.billing.client import make_stripe_client
from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.billing.gateway import StripeGatewayError, StripeRejected
from connector.billing.webhook_endpoints import set_up_endpoint
from connector.cli.state import CliState, pass_state

DESCRIPTION = "dealbridge: Stripe billing events for the CRM connector"
WEBHOOK_PATH = "/webhooks/stripe"


@click.group("stripe")
def stripe_group() -> None:
    """Stripe account setup."""


@stripe_group.command("webhook-setup")
@click.option(
    "--url",
    required=True,
    help="dealbridge's public Stripe webhook URL, e.g. https://db.example.com/webhooks/stripe",
)
@click.option("--description", default=DESCRIPTION, show_default=True)
@pass_state
def webhook_setup(state: CliState, url: str, description: str) -> None:
    """Register (or update) the Stripe webhook endpoint; needs only STRIPE_API_KEY."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        click.echo(f"--url {url!r} must be an https:// URL", err=True)
        sys.exit(2)
    config = state.config(require_secrets=False)
    if config.secrets.stripe_api_key is None:
        click.echo("STRIPE_API_KEY is not set; set it to your Stripe secret key", err=True)
        sys.exit(2)
    if parts.path.rstrip("/") != WEBHOOK_PATH:
        click.echo(f"note: dealbridge receives Stripe events at {WEBHOOK_PATH}", err=True)
    client = make_stripe_client(config)
    try:
        # One key per run: stripe-python's own network retries of this call reuse it.
        setup = set_up_endpoint(
            client,
            url,
            HANDLED_STRIPE_EVENTS,
            description=description,
            idempotency_key=f"dealbridge-webhook-setup-{uuid.uuid4().hex}",
        )
    except StripeGatewayError as exc:
        click.echo(f"Stripe refused: {exc}" if isinstance(exc, StripeRejected) else exc, err=True)
        sys.exit(1)
    events = len(HANDLED_STRIPE_EVENTS)
    if not setup.created:
        click.echo(
            f"Updated webhook endpoint {setup.endpoint_id} for {url}: {events} events enabled."
        )
        if setup.also_updated:
            others = ", ".join(setup.also_updated)
            click.echo(f"Also updated other endpoints with the same URL: {others}.")
        click.echo("Its signing secret is unchanged; keep STRIPE_WEBHOOK_SECRET as it is.")
        return
    click.echo(f"Created webhook endpoint {setup.endpoint_id} for {url}: {events} events enabled.")
    click.echo("Set its signing secret in dealbridge's environment (Stripe shows it only now):")
    click.echo("")
    click.echo(f"    STRIPE_WEBHOOK_SECRET={setup.secret}")
    click.echo("")
    click.echo(
        "While rotating, list the new and the old secret comma-separated; then restart dealbridge."
    )


COMMANDS = [stripe_group]
