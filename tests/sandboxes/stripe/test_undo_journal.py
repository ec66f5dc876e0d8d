"""A write request runs in an undo journal: a failed one leaves no partial write behind, a
declined payment keeps what it recorded, and a preview leaves the state as it found it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe

from sandboxes.stripe import StripeSandbox
from sandboxes.stripe.call import Call
from sandboxes.stripe.errors import StripeError
from tests.sandboxes.stripe.conftest import Receiver

UPDATE_CUSTOMER = "POST /v1/customers/:id"


def state_of(sandbox: StripeSandbox) -> tuple[str, int, int]:
    """Every object as JSON (private keys included), and the webhook deliveries queued."""
    state = sandbox.state
    objects = json.dumps(state.store.objects, sort_keys=True, default=str)
    return objects, len(state.deliveries), state.delivery_seq


def write_then(sandbox: StripeSandbox, failure: Exception) -> None:
    """Make the customer update write everything it writes (the customer, an event and its
    webhook delivery), then create a product, then fail with ``failure``."""
    update = sandbox.app.handlers[UPDATE_CUSTOMER]

    def failing(call: Call) -> dict[str, Any]:
        update(call)
        call.store.add({"id": "prod_partial", "object": "product", "created": 0, "name": "x"})
        raise failure

    sandbox.app.handlers[UPDATE_CUSTOMER] = failing


@pytest.fixture
def endpoint(client: stripe.StripeClient, receiver: Receiver) -> None:
    """A webhook endpoint, so each event also queues a delivery."""
    client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})


@pytest.mark.usefixtures("endpoint")
def test_a_request_failing_after_its_writes_leaves_no_partial_write(
    sandbox: StripeSandbox, client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    before = state_of(sandbox)
    write_then(sandbox, RuntimeError("a bug after the writes"))

    with pytest.raises(stripe.APIError):
        client.v1.customers.update(customer.id, params={"name": "Changed"})

    assert state_of(sandbox) == before
    assert client.v1.customers.retrieve(customer.id).name == "Ada"
    assert client.v1.events.list(params={"type": "customer.updated"}).data == []


@pytest.mark.usefixtures("endpoint")
def test_a_request_refused_after_its_writes_leaves_no_partial_write(
    sandbox: StripeSandbox, client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    before = state_of(sandbox)
    write_then(sandbox, StripeError(400, "Refused after writing.", param="name"))

    with pytest.raises(stripe.InvalidRequestError, match="Refused after writing"):
        client.v1.customers.update(customer.id, params={"name": "Changed"})

    assert state_of(sandbox) == before


@pytest.mark.usefixtures("endpoint")
def test_a_refusal_that_stripe_records_keeps_its_writes(
    sandbox: StripeSandbox, client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    write_then(sandbox, StripeError(402, "Your card was declined."))

    with pytest.raises(stripe.CardError):
        client.v1.customers.update(customer.id, params={"name": "Changed"})

    assert client.v1.customers.retrieve(customer.id).name == "Changed"
    assert "prod_partial" in sandbox.state.store.objects


@pytest.mark.usefixtures("endpoint")
def test_a_request_after_a_rolled_back_one_sees_and_changes_the_restored_objects(
    sandbox: StripeSandbox, client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    update = sandbox.app.handlers[UPDATE_CUSTOMER]
    write_then(sandbox, RuntimeError("a bug after the writes"))
    with pytest.raises(stripe.APIError):
        client.v1.customers.update(customer.id, params={"name": "Changed"})
    sandbox.app.handlers[UPDATE_CUSTOMER] = update

    client.v1.customers.update(customer.id, params={"name": "Grace"})

    assert client.v1.customers.retrieve(customer.id).name == "Grace"
    listed = client.v1.customers.list().data
    assert [c.id for c in listed] == [customer.id]
    assert listed[0].name == "Grace"


@pytest.mark.usefixtures("endpoint")
def test_a_preview_leaves_every_object_event_and_delivery_as_it_was(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    customer: stripe.Customer,
    recurring_price: stripe.Price,
) -> None:
    subscription = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": recurring_price.id}]}
    )
    before = state_of(sandbox)

    client.v1.invoices.create_preview(
        params={
            "customer": customer.id,
            "subscription": subscription.id,
            "subscription_details": {
                "items": [{"id": subscription["items"].data[0].id, "quantity": 3}],
                "proration_behavior": "always_invoice",
            },
        }
    )
    client.v1.invoices.create_preview(
        params={
            "customer": customer.id,
            "subscription_details": {"items": [{"price": recurring_price.id}]},
        }
    )

    assert state_of(sandbox) == before
