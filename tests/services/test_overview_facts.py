"""Stripe's own object shapes (API 2026-10-28) read into the metrics' facts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from connector.domain.metrics import Tier, subscription_mrr
from connector.services.overview import subscription_facts
from connector.services.subscription_sync import customer_apart

START = 1_780_000_000  # 2026-05-28


def _discount(coupon: Any, start: int = START, end: int | None = None) -> dict[str, Any]:
    return {
        "id": "di_1", "object": "discount", "start": start, "end": end,
        "source": {"coupon": coupon, "type": "coupon"}, "subscription": "sub_1",
    }  # fmt: skip


def _coupon(**fields: Any) -> dict[str, Any]:
    base = {"id": "co_1", "object": "coupon", "amount_off": None, "currency": None,
            "duration": "forever", "duration_in_months": None, "percent_off": None,
            "applies_to": None, "valid": True}  # fmt: skip
    return {**base, **fields}


def _price(**fields: Any) -> dict[str, Any]:
    base = {"id": "price_1", "object": "price", "currency": "eur", "billing_scheme": "per_unit",
            "unit_amount": 1000, "unit_amount_decimal": "1000", "tiers_mode": None,
            "transform_quantity": None, "product": "prod_1",
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed",
                          "meter": None}}  # fmt: skip
    return {**base, **fields}


def _sub(items: list[dict[str, Any]], discounts: list[Any] | None = None) -> dict[str, Any]:
    return {
        "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
        "currency": "eur", "start_date": START, "created": START, "ended_at": None,
        "trial_start": None, "trial_end": None, "pause_collection": None,
        "discounts": discounts or [],
        "items": {"object": "list", "data": [
            {"id": f"si_{n}", "object": "subscription_item", "discounts": [], **item}
            for n, item in enumerate(items)
        ]},
    }  # fmt: skip


NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_an_expanded_discount_source_coupon_is_read_with_its_dates() -> None:
    data = _sub(
        [{"price": _price(), "quantity": 2}],
        [_discount(_coupon(percent_off=25.5, duration="repeating", duration_in_months=12))],
    )
    facts = subscription_facts(data)
    (discount,) = facts.discounts
    assert discount.percent_off == Decimal("25.5")  # through its text, not a binary float
    assert discount.duration == "repeating" and discount.start is not None
    assert subscription_mrr(facts, NOW) == {"eur": 1490}


def test_the_customers_discount_is_read_from_the_expanded_customer() -> None:
    """A subscription fetched with its customer expanded keeps the customer's id and its
    discount apart (what the mirror stores); Stripe bills it where the subscription has
    no discount of its own."""
    data = _sub([{"price": _price(), "quantity": 2}])
    data["customer"] = {
        "id": "cus_1",
        "object": "customer",
        "discount": {**_discount(_coupon(percent_off=25)), "subscription": None},
    }
    mirrored = customer_apart(data)
    assert mirrored["customer"] == "cus_1"
    facts = subscription_facts(mirrored)
    assert [d.percent_off for d in facts.customer_discounts] == [Decimal("25")]
    assert subscription_mrr(facts, NOW) == {"eur": 1500}
    own = {**mirrored, "discounts": [_discount(_coupon(percent_off=10))]}
    assert subscription_mrr(subscription_facts(own), NOW) == {"eur": 1800}


def test_a_customer_without_a_discount_leaves_the_subscription_as_it_is() -> None:
    data = _sub([{"price": _price(), "quantity": 2}])
    data["customer"] = {"id": "cus_1", "object": "customer", "discount": None}
    facts = subscription_facts(customer_apart(data))
    assert facts.customer_discounts == () and facts.customer_id == "cus_1"
    assert subscription_mrr(facts, NOW) == {"eur": 2000}


def test_a_discount_left_as_an_id_is_reported_not_guessed() -> None:
    unread: list[str] = []
    facts = subscription_facts(_sub([{"price": _price(), "quantity": 1}], ["di_9"]), None, unread)
    assert facts.discounts == () and unread == ["di_9"]


def test_an_amount_off_in_the_coupons_currency_options_is_used_for_the_subscription() -> None:
    coupon = _coupon(amount_off=500, currency="usd", currency_options={"eur": {"amount_off": 450}})
    facts = subscription_facts(_sub([{"price": _price(), "quantity": 1}], [_discount(coupon)]))
    assert (facts.discounts[0].amount_off, facts.discounts[0].currency) == (450, "eur")
    assert subscription_mrr(facts, NOW) == {"eur": 550}


def test_decimal_tiered_metered_and_transformed_prices_are_read() -> None:
    tiers = [
        {"up_to": 5, "unit_amount": None, "unit_amount_decimal": "99.5",
         "flat_amount": 500, "flat_amount_decimal": "500"},
        {"up_to": None, "unit_amount": 80, "unit_amount_decimal": "80",
         "flat_amount": None, "flat_amount_decimal": None},
    ]  # fmt: skip
    data = _sub(
        [
            {"price": _price(unit_amount=None, unit_amount_decimal="0.25"), "quantity": 3},
            {"price": _price(billing_scheme="tiered", tiers_mode="graduated", tiers=tiers,
                             unit_amount=None, unit_amount_decimal=None), "quantity": 7},
            {"price": _price(recurring={"interval": "month", "interval_count": 1,
                                        "usage_type": "metered", "meter": "mtr_1"})},
            {"price": _price(transform_quantity={"divide_by": 10, "round": "up"}),
             "quantity": 11},
            {"price": _price(), "quantity": 0},
        ]
    )  # fmt: skip
    facts = subscription_facts(data)
    assert facts.items[0].price.unit_amount == Decimal("0.25")
    assert facts.items[1].price.tiers == (
        Tier(5, Fraction("99.5"), Fraction(500)),
        Tier(None, Fraction(80), Fraction(0)),
    )
    assert facts.items[2].quantity is None and facts.items[2].price.usage_type == "metered"
    assert facts.items[4].quantity == 0
    # 0.75 + (5 x 99.5 + 500 + 2 x 80) + 0 + 2 x 1000 + 0
    assert subscription_mrr(facts, NOW) == {"eur": 3158}  # 3158.25, rounded half-up once


def test_trial_and_paused_collection_are_read() -> None:
    data = _sub([{"price": _price(), "quantity": 1}])
    data.update(trial_start=START, trial_end=START + 86400, pause_collection={"behavior": "void"})
    facts = subscription_facts(data)
    assert facts.trial_end is not None and facts.collection_paused is True
