"""The StripeClient dealbridge uses everywhere, built from configuration.

Only ``connector/billing`` talks to Stripe. Pointing ``stripe.api_base`` at a local
sandbox is the only difference between the demo and production.
"""

from __future__ import annotations

import stripe

from connector.config import Config


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
