"""Reconciliation lists Stripe's events of every handled type, whatever their number."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import stripe

from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.billing.gateway import EVENT_TYPES_PER_LIST, StripeGateway
from sandboxes.stripe import StripeSandbox


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    sandbox = StripeSandbox().start()
    yield sandbox
    threading.Thread(target=sandbox.stop, daemon=True).start()


def gateway(sandbox: StripeSandbox) -> StripeGateway:
    client = stripe.StripeClient(
        "sk_test_reconcile0123", base_addresses={"api": sandbox.url}, max_network_retries=0
    )
    return StripeGateway(client, dashboard_url="https://dashboard.stripe.com/test")


def test_dealbridge_handles_more_types_than_one_listing_takes() -> None:
    assert len(HANDLED_STRIPE_EVENTS) > EVENT_TYPES_PER_LIST  # else the test below proves less


def test_events_of_every_handled_type_are_listed_in_passes_stripe_accepts(
    sandbox: StripeSandbox,
) -> None:
    client = gateway(sandbox).client
    customer = client.v1.customers.create(params={"email": "ap@acme.example"})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 5_000, "currency": "usd"}
    )
    draft = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    client.v1.invoices.finalize_invoice(str(draft.id))
    client.v1.invoices.void_invoice(str(draft.id))

    types = sorted(HANDLED_STRIPE_EVENTS)
    listed = {event.type for event in gateway(sandbox).iter_events(0, types)}

    assert "invoice.voided" in types[EVENT_TYPES_PER_LIST:]  # only a second pass lists it
    assert {"invoice.created", "invoice.finalized", "invoice.voided"} <= listed
    assert listed <= HANDLED_STRIPE_EVENTS
    passes = -(-len(types) // EVENT_TYPES_PER_LIST)
    assert sandbox.request_counts()[("GET", "/v1/events")] == passes
