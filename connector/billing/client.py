"""The StripeClient dealbridge uses everywhere, built from configuration.

Only ``connector/billing`` talks to Stripe. Pointing ``stripe.api_base`` at a local
sandbox is the only difference between the demo and production.
"""

from __future__ import annotations

import stripe

from connector.config import Config

#: The client type, for code outside ``billing`` that holds one (the demo, its tests).
StripeClient = stripe.StripeClient


class StripeNotConfigured(RuntimeError):
    pass


def make_stripe_client(
    config: Config, *, max_network_retries: int | None = None
) -> stripe.StripeClient:
    key = config.secrets.stripe_api_key
    if key is None:
        raise StripeNotConfigured("STRIPE_API_KEY is not set")
    section = config.section("stripe")
    base = section["api_base"]
    kwargs: dict[str, object] = {}
    if base:
        kwargs["base_addresses"] = {"api": base, "files": base, "connect": base}
    return stripe.StripeClient(
        key.reveal(),
        max_network_retries=(
            section["max_network_retries"] if max_network_retries is None else max_network_retries
        ),
        http_client=stripe.RequestsClient(timeout=section["timeout_seconds"]),
        **kwargs,  # type: ignore[arg-type]
    )


def client_at(base_url: str, api_key: str) -> stripe.StripeClient:
    """A client of a Stripe stand-in at ``base_url`` (the local sandbox), with no retries: a
    sandbox answers at once, and a test must see its first answer."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base_url, "files": base_url},
        max_network_retries=0,
    )
