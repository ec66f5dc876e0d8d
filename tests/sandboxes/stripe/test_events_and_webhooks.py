"""Events (``/v1/events``), webhook endpoints and signed, retried deliveries."""

from __future__ import annotations

import pytest
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import FakeClock, Receiver


def _endpoint(
    client: stripe.StripeClient, receiver: Receiver, events: list[str] | None = None
) -> stripe.WebhookEndpoint:
    return client.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": events or ["*"]}  # type: ignore[typeddict-item]
    )


def test_creating_a_customer_records_a_customer_created_event(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    event = client.v1.events.list(params={"type": "customer.created"}).data[0]
    assert event.id.startswith("evt_")
    assert event.data.object["id"] == customer.id
    assert event.api_version == stripe.api_version
    assert event.request is not None
    assert str(event.request.id).startswith("req_")


def test_an_update_event_carries_previous_attributes(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    client.v1.customers.update(customer.id, params={"name": "Grace", "metadata": {"k": "v"}})
    event = client.v1.events.list(params={"type": "customer.updated"}).data[0]
    assert event.data.object["name"] == "Grace"
    previous = event.data.to_dict()["previous_attributes"]
    assert previous == {"name": "Ada", "metadata": {"k": None}}


def test_events_record_the_idempotency_key_of_the_request(client: stripe.StripeClient) -> None:
    client.v1.customers.create(options={"idempotency_key": "crm-op-42"})
    event = client.v1.events.list().data[0]
    assert event.request is not None
    assert event.request.idempotency_key == "crm-op-42"


def test_events_can_be_retrieved_and_filtered_by_types_and_wildcard(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    types = [e.type for e in client.v1.events.list(params={"types": ["price.created"]}).data]
    assert types == ["price.created"]
    wildcard = {e.type for e in client.v1.events.list(params={"type": "pr*"}).data}
    assert wildcard == {"price.created", "product.created"}
    one = client.v1.events.list().data[0]
    assert client.v1.events.retrieve(one.id).type == one.type


def test_events_can_be_filtered_by_created(client: stripe.StripeClient, clock: FakeClock) -> None:
    client.v1.customers.create()
    clock.advance(100)
    client.v1.customers.create()
    recent = client.v1.events.list(params={"created": {"gte": clock.value}}).data
    assert len(recent) == 1


def test_a_webhook_endpoint_secret_is_returned_only_on_create(
    client: stripe.StripeClient, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, receiver)
    assert endpoint.id.startswith("we_")
    assert str(endpoint.secret).startswith("whsec_")
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id).to_dict()


def test_webhook_endpoints_can_be_updated_listed_and_deleted(
    client: stripe.StripeClient, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, receiver)
    updated = client.v1.webhook_endpoints.update(
        endpoint.id, params={"enabled_events": ["invoice.paid"], "disabled": True}
    )
    assert updated.enabled_events == ["invoice.paid"]
    assert updated.status == "disabled"
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [endpoint.id]
    assert client.v1.webhook_endpoints.delete(endpoint.id).deleted is True
    assert client.v1.webhook_endpoints.list().data == []


def test_a_delivery_verifies_with_construct_event(
    sandbox: StripeSandbox, client: stripe.StripeClient, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, receiver)
    customer = client.v1.customers.create()
    assert sandbox.deliver_webhooks() == 1
    delivery = receiver.received[0]
    event = stripe.Webhook.construct_event(
        delivery.body, delivery.headers["Stripe-Signature"], str(endpoint.secret), tolerance=300
    )
    assert event.type == "customer.created"
    assert event.data.object["id"] == customer.id


def test_a_tampered_delivery_fails_signature_verification(
    sandbox: StripeSandbox, client: stripe.StripeClient, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, receiver)
    client.v1.customers.create()
    sandbox.deliver_webhooks()
    delivery = receiver.received[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            delivery.body.replace("customer", "kustomer"),
            delivery.headers["Stripe-Signature"],
            str(endpoint.secret),
        )


def test_enabled_events_filter_what_is_delivered(
    sandbox: StripeSandbox, client: stripe.StripeClient, receiver: Receiver
) -> None:
    _endpoint(client, receiver, ["customer.updated"])
    customer = client.v1.customers.create()
    client.v1.customers.update(customer.id, params={"name": "x"})
    sandbox.deliver_webhooks()
    assert receiver.types() == ["customer.updated"]


def test_a_disabled_endpoint_receives_nothing(
    sandbox: StripeSandbox, client: stripe.StripeClient, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, receiver)
    client.v1.webhook_endpoints.update(endpoint.id, params={"disabled": True})
    client.v1.customers.create()
    assert sandbox.deliver_webhooks() == 0
    assert receiver.received == []


def test_pending_webhooks_counts_undelivered_events(
    sandbox: StripeSandbox, client: stripe.StripeClient, receiver: Receiver
) -> None:
    _endpoint(client, receiver)
    client.v1.customers.create()
    assert sandbox.pending_webhooks() == 1
    assert client.v1.events.list().data[0].pending_webhooks == 1
    sandbox.deliver_webhooks()
    assert sandbox.pending_webhooks() == 0
    assert client.v1.events.list().data[0].pending_webhooks == 0


def test_a_failed_delivery_is_retried_with_exponential_backoff(
    sandbox: StripeSandbox, client: stripe.StripeClient, receiver: Receiver, clock: FakeClock
) -> None:
    _endpoint(client, receiver)
    client.v1.customers.create()
    receiver.statuses.extend([500, 503])
    assert sandbox.deliver_webhooks() == 1
    assert sandbox.deliver_webhooks() == 0  # not due yet
    clock.advance(3600)
    assert sandbox.deliver_webhooks() == 1  # first retry after 1 h, fails again
    clock.advance(7199)
    assert sandbox.deliver_webhooks() == 0  # second retry waits 2 h
    clock.advance(1)
    assert sandbox.deliver_webhooks() == 1
    assert [r.event["type"] for r in receiver.received] == ["customer.created"] * 3
    assert sandbox.pending_webhooks() == 0


def test_retries_stop_after_the_attempt_limit(
    sandbox: StripeSandbox, client: stripe.StripeClient, receiver: Receiver, clock: FakeClock
) -> None:
    _endpoint(client, receiver)
    client.v1.customers.create()
    receiver.statuses.extend([500] * 10)
    attempts = 0
    for _ in range(10):
        attempts += sandbox.deliver_webhooks()
        clock.advance(100_000)
    assert attempts == 4
    assert sandbox.pending_webhooks() == 0


def test_an_unreachable_endpoint_counts_as_a_failed_attempt(
    sandbox: StripeSandbox, client: stripe.StripeClient, clock: FakeClock
) -> None:
    client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/unreachable", "enabled_events": ["*"]}  # type: ignore[typeddict-item]
    )
    client.v1.customers.create()
    assert sandbox.deliver_webhooks() == 1
    assert sandbox.pending_webhooks() == 1
