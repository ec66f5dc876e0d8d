"""Point a Stripe account's webhooks at dealbridge: one endpoint per URL, the handled events.

Run again for the same URL, it updates the existing endpoint's events instead of creating a
second one; Stripe then keeps the secret. Refusals come back as the gateway's classified
errors (``StripeRejected`` / ``StripeUnavailable``), like every other Stripe call.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import stripe
from stripe.params import WebhookEndpointCreateParams, WebhookEndpointUpdateParams

from connector.billing.gateway import classify


@dataclass(frozen=True)
class EndpointSetup:
    """What ``set_up_endpoint`` did. ``secret`` is the signing secret of a new endpoint:
    Stripe shows it only in the answer to its creation."""

    endpoint_id: str
    created: bool
    secret: str | None = None
    also_updated: list[str] = field(default_factory=list)


def set_up_endpoint(
    client: stripe.StripeClient,
    url: str,
    events: Collection[str],
    *,
    description: str,
    idempotency_key: str,
) -> EndpointSetup:
    """Create the endpoint for ``url``, or update every endpoint that already has it."""
    enabled: Any = sorted(events)  # the params type spells every event name as a Literal
    options: Any = {"idempotency_key": idempotency_key}
    try:
        page = client.v1.webhook_endpoints.list(params={"limit": 100})
        existing = [endpoint for endpoint in page.auto_paging_iter() if endpoint.url == url]
        if existing:
            for endpoint in existing:
                update: WebhookEndpointUpdateParams = {
                    "enabled_events": enabled,
                    "description": description,
                    "disabled": False,
                }
                client.v1.webhook_endpoints.update(
                    endpoint.id, params=update, options=options if endpoint is existing[0] else {}
                )
            return EndpointSetup(
                endpoint_id=existing[0].id,
                created=False,
                also_updated=[endpoint.id for endpoint in existing[1:]],
            )
        create: WebhookEndpointCreateParams = {
            "url": url,
            "enabled_events": enabled,
            "description": description,
        }
        created = client.v1.webhook_endpoints.create(params=create, options=options)
    except stripe.StripeError as exc:
        raise classify(exc) from exc
    return EndpointSetup(endpoint_id=created.id, created=True, secret=created.secret)
