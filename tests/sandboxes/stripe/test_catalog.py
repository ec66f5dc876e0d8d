"""``/v1/products`` and ``/v1/prices``."""

from __future__ import annotations

import pytest
import stripe


def test_a_product_is_created_and_archived(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Seats", "metadata": {"sku": "S"}})
    assert product.id.startswith("prod_")
    archived = client.v1.products.update(product.id, params={"active": False})
    assert archived.active is False
    listed = client.v1.products.list(params={"active": True}).data
    assert product.id not in [p.id for p in listed]


def test_a_recurring_price_has_stripes_shape(recurring_price: stripe.Price) -> None:
    assert recurring_price.id.startswith("price_")
    assert recurring_price.type == "recurring"
    assert recurring_price.unit_amount == 2000
    assert str(recurring_price.unit_amount_decimal) == "2000"
    assert recurring_price.recurring is not None
    assert recurring_price.recurring.interval == "month"
    assert recurring_price.recurring.interval_count == 1
    assert str(recurring_price.product).startswith("prod_")


def test_a_price_without_recurring_is_one_time(one_time_price: stripe.Price) -> None:
    assert one_time_price.type == "one_time"
    assert one_time_price.recurring is None


def test_prices_are_immutable_except_active_metadata_and_lookup_key(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.prices.update(recurring_price.id, params={"unit_amount": 1})  # type: ignore[typeddict-unknown-key]
    assert raised.value.code == "parameter_unknown"
    updated = client.v1.prices.update(
        recurring_price.id, params={"active": False, "lookup_key": "gold", "metadata": {"a": "b"}}
    )
    assert (updated.active, updated.lookup_key) == (False, "gold")
    assert updated.metadata.to_dict() == {"a": "b"}


def test_a_lookup_key_in_use_is_refused_unless_transferred(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    client.v1.prices.update(recurring_price.id, params={"lookup_key": "gold_monthly"})
    params: stripe.params.PriceCreateParams = {
        "currency": "usd",
        "unit_amount": 2500,
        "recurring": {"interval": "month"},
        "product": str(recurring_price.product),
        "lookup_key": "gold_monthly",
    }
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.prices.create(params=params)
    assert "already uses that lookup key" in str(raised.value.user_message)
    moved = client.v1.prices.create(params={**params, "transfer_lookup_key": True})
    assert moved.lookup_key == "gold_monthly"
    assert client.v1.prices.retrieve(recurring_price.id).lookup_key is None


def test_prices_list_filters_by_lookup_keys(
    client: stripe.StripeClient, recurring_price: stripe.Price, one_time_price: stripe.Price
) -> None:
    client.v1.prices.update(recurring_price.id, params={"lookup_key": "gold"})
    found = client.v1.prices.list(params={"lookup_keys": ["gold", "silver"]}).data
    assert [p.id for p in found] == [recurring_price.id]


def test_prices_list_filters_by_type_product_and_active(
    client: stripe.StripeClient, recurring_price: stripe.Price, one_time_price: stripe.Price
) -> None:
    product = str(recurring_price.product)
    one_time = client.v1.prices.list(params={"type": "one_time", "product": product}).data
    assert [p.id for p in one_time] == [one_time_price.id]
    client.v1.prices.update(one_time_price.id, params={"active": False})
    active = client.v1.prices.list(params={"active": True}).data
    assert [p.id for p in active] == [recurring_price.id]


def test_prices_list_can_expand_each_product(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    page = client.v1.prices.list(params={"expand": ["data.product"]})
    product = page.data[0].product
    assert isinstance(product, stripe.Product)
    assert product.name == "Gold plan"


def test_a_price_for_a_missing_product_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.prices.create(
            params={"currency": "usd", "unit_amount": 1, "product": "prod_missing"}
        )
    assert raised.value.code == "resource_missing"
    assert raised.value.param == "product"
    assert raised.value.http_status == 400
