"""Auth, error envelopes, request counting, fault injection and idempotency."""

from __future__ import annotations

import pytest
import requests
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import make_client


def test_a_missing_api_key_is_refused_with_401(sandbox: StripeSandbox) -> None:
    response = requests.get(f"{sandbox.url}/v1/customers", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "You did not provide an API key" in response.json()["error"]["message"]


def test_a_live_or_malformed_key_raises_authentication_error(sandbox: StripeSandbox) -> None:
    live_key = "sk_" + "live_123456789"  # a live-mode key, built so no scanner mistakes it
    client = make_client(sandbox.url, api_key=live_key)
    with pytest.raises(stripe.AuthenticationError) as raised:
        client.v1.customers.list()
    assert raised.value.http_status == 401
    assert "Invalid API Key provided" in str(raised.value.user_message)


def test_any_test_secret_key_is_accepted(sandbox: StripeSandbox) -> None:
    assert make_client(sandbox.url, "sk_test_anything").v1.customers.list().data == []


def test_an_unknown_object_is_a_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.retrieve("cus_missing")
    error = raised.value
    assert error.http_status == 404
    assert error.code == "resource_missing"
    assert error.param == "id"
    assert error.user_message == "No such customer: 'cus_missing'"


def test_an_unknown_parameter_is_refused_with_its_name(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.create(params={"emial": "x@example.com"})  # type: ignore[typeddict-unknown-key]
    assert raised.value.code == "parameter_unknown"
    assert raised.value.param == "emial"
    assert raised.value.user_message == "Received unknown parameter: emial"


def test_a_missing_required_parameter_names_the_parameter(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.products.create(params={})  # type: ignore[typeddict-item]
    assert raised.value.code == "parameter_missing"
    assert raised.value.param == "name"
    assert raised.value.user_message == "Missing required param: name."


def test_an_invalid_integer_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.list(params={"limit": 101})
    assert raised.value.param == "limit"


def test_an_unrecognized_url_is_a_404_in_stripes_envelope(sandbox: StripeSandbox) -> None:
    response = requests.get(
        f"{sandbox.url}/v1/nothing", headers={"Authorization": "Bearer sk_test_x"}, timeout=5
    )
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unrecognized request URL (GET: ")


def test_responses_carry_a_request_id_and_the_api_version(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    response = customer.last_response
    assert response is not None
    assert response.headers["Request-Id"].startswith("req_")
    assert response.headers["Stripe-Version"] == stripe.api_version


def test_requests_are_counted_per_method_and_path_template(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create()
    client.v1.customers.retrieve(customer.id)
    client.v1.customers.retrieve(customer.id)
    counts = sandbox.request_counts()
    assert counts[("POST", "/v1/customers")] == 1
    assert counts[("GET", "/v1/customers/:id")] == 2


def test_request_counts_are_readable_over_http_and_resettable(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    client.v1.customers.list()
    body = requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).json()
    assert {"method": "GET", "path": "/v1/customers", "count": 1} in body["requests"]
    sandbox.reset_request_counts()
    assert sandbox.request_counts() == {}


def test_an_injected_429_raises_rate_limit_error_and_creates_nothing(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    sandbox.inject_faults("/v1/customers", [429])
    with pytest.raises(stripe.RateLimitError) as raised:
        client.v1.customers.create(params={"email": "x@example.com"})
    assert raised.value.error is not None
    assert raised.value.error.code == "rate_limit"
    assert client.v1.customers.list().data == []
    assert client.v1.customers.create().object == "customer"


def test_an_injected_500_is_an_api_error(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    sandbox.inject_faults("/v1/invoices/:id", [500])
    with pytest.raises(stripe.APIError) as raised:
        client.v1.invoices.retrieve("in_whatever")
    assert raised.value.http_status == 500
    assert raised.value.error is not None
    assert raised.value.error.type == "api_error"


def test_injected_faults_are_consumed_in_order(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    sandbox.inject_faults("/v1/customers", [429, 500])
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list()
    with pytest.raises(stripe.APIError):
        client.v1.customers.list()
    assert client.v1.customers.list().data == []


def test_a_client_with_retries_recovers_from_an_injected_fault(
    sandbox: StripeSandbox,
) -> None:
    sandbox.inject_faults("/v1/customers", [500])
    url = sandbox.url
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": url}, max_network_retries=1)
    stripe.default_http_client = None
    customer = client.v1.customers.create(
        params={"email": "retry@example.com"}, options={"idempotency_key": "retry-1"}
    )
    assert customer.email == "retry@example.com"
    assert len(client.v1.customers.list().data) == 1


def test_a_repeated_idempotency_key_replays_the_original_response(
    client: stripe.StripeClient,
) -> None:
    first = client.v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "op-1"}
    )
    second = client.v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "op-1"}
    )
    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(client.v1.customers.list().data) == 1


def test_an_idempotency_key_reused_with_other_parameters_is_an_idempotency_error(
    client: stripe.StripeClient,
) -> None:
    client.v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "op-2"}
    )
    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.customers.create(
            params={"email": "b@example.com"}, options={"idempotency_key": "op-2"}
        )
    assert raised.value.http_status == 400
    assert raised.value.error is not None
    assert raised.value.error.type == "idempotency_error"
    assert "same parameters" in str(raised.value.user_message)


def test_an_idempotency_key_reused_on_another_endpoint_is_an_idempotency_error(
    client: stripe.StripeClient,
) -> None:
    client.v1.customers.create(options={"idempotency_key": "op-3"})
    with pytest.raises(stripe.IdempotencyError):
        client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "op-3"})


def test_idempotency_keys_are_scoped_per_api_key(sandbox: StripeSandbox) -> None:
    one = make_client(sandbox.url, "sk_test_one")
    two = make_client(sandbox.url, "sk_test_two")
    first = one.v1.customers.create(params={"email": "a@x.com"}, options={"idempotency_key": "k"})
    other = two.v1.customers.create(params={"email": "b@x.com"}, options={"idempotency_key": "k"})
    assert other.id != first.id


def test_a_request_that_failed_validation_can_be_retried_with_the_same_key(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.create(params={}, options={"idempotency_key": "k2"})  # type: ignore[typeddict-item]
    product = client.v1.products.create(params={"name": "ok"}, options={"idempotency_key": "k2"})
    assert product.name == "ok"


def test_expand_replaces_an_id_with_the_object(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    price = client.v1.prices.retrieve(recurring_price.id, params={"expand": ["product"]})
    assert isinstance(price.product, stripe.Product)
    assert price.product.name == "Gold plan"


def test_a_per_unit_price_expanded_for_its_tiers_has_none(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    price = client.v1.prices.retrieve(recurring_price.id, params={"expand": ["tiers"]})
    assert price.tiers is None


def test_expanding_a_non_expandable_field_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.retrieve(customer.id, params={"expand": ["email"]})
    assert raised.value.user_message == "This property cannot be expanded (email)."


def test_the_sandbox_refuses_to_bind_a_non_loopback_address() -> None:
    from sandboxes._server import NonLoopbackBindRefused

    with pytest.raises(NonLoopbackBindRefused):
        StripeSandbox().start(host="192.0.2.1")


def test_demo_mode_starts_and_stops_cleanly() -> None:
    sandbox = StripeSandbox().start(auto_deliver=True)
    assert sandbox.url.startswith("http://127.0.0.1:")
    sandbox.stop()


def test_a_refused_request_leaves_no_trace(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(
            customer.id,
            params={"name": "Changed", "tax_exempt": "sometimes"},  # type: ignore[typeddict-item]
        )
    assert client.v1.customers.retrieve(customer.id).name == "Ada"
    assert client.v1.events.list(params={"type": "customer.updated"}).data == []
