"""Coupons, promotion codes and discounts; tax rates; the customer balance on invoices."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import WITH_CARD, make_client


def _invoice(
    client: stripe.StripeClient,
    customer: stripe.Customer,
    amounts: list[int],
    **params: Any,
) -> stripe.Invoice:
    """A finalized invoice of one line per amount; ``params`` go to the invoice."""
    for amount in amounts:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "amount": amount, "currency": "usd"}
        )
    draft = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "pending_invoice_items_behavior": "include",
            "collection_method": "send_invoice",
            "days_until_due": 30,
            **params,
        }
    )
    return client.v1.invoices.finalize_invoice(draft.id)


def _coupon(client: stripe.StripeClient, **params: Any) -> stripe.Coupon:
    return client.v1.coupons.create(params=params)  # type: ignore[arg-type]


# -- coupons and promotion codes ----------------------------------------------------------------


def test_a_coupon_is_created_listed_updated_and_deleted(client: stripe.StripeClient) -> None:
    coupon = _coupon(client, percent_off="12.5", duration="repeating", duration_in_months=3)
    assert (coupon.percent_off, coupon.duration, coupon.duration_in_months) == (
        12.5,
        "repeating",
        3,
    )
    assert coupon.valid is True
    assert [c.id for c in client.v1.coupons.list().data] == [coupon.id]
    assert client.v1.coupons.update(coupon.id, params={"name": "Launch"}).name == "Launch"
    assert client.v1.coupons.delete(coupon.id).deleted is True


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"percent_off": "10", "amount_off": 500, "currency": "usd"}, "amount_off"),
        ({"amount_off": 500}, "currency"),
        ({"percent_off": "10", "duration": "repeating"}, "duration_in_months"),
        ({"percent_off": "120"}, "percent_off"),
    ],
)
def test_inconsistent_coupons_are_refused(
    client: stripe.StripeClient, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        _coupon(client, **params)
    assert raised.value.param == param


def test_a_promotion_code_names_its_coupon(client: stripe.StripeClient) -> None:
    coupon = _coupon(client, percent_off="20")
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "SPRING"}
    )
    assert (promo.code, promo.active, promo.promotion.coupon) == ("SPRING", True, coupon.id)
    listed = client.v1.promotion_codes.list(params={"code": "spring"}).data
    assert [p.id for p in listed] == [promo.id]


# -- discounts on invoices ----------------------------------------------------------------------


def test_a_percent_off_discount_rounds_half_up_on_each_line(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    coupon = _coupon(client, percent_off="15")
    invoice = _invoice(client, customer, [43, 484], discounts=[{"coupon": coupon.id}])
    # 15% of 0.43 is 0.0645 -> 0.06 and of 4.84 is 0.726 -> 0.73 (Stripe's rounding page)
    lines = sorted(invoice.lines.data, key=lambda line: line.amount)
    assert [line.discount_amounts[0].amount for line in lines] == [6, 73]
    assert invoice.subtotal == 527
    assert invoice.total_discount_amounts[0].amount == 79
    assert (invoice.total, invoice.amount_due) == (448, 448)


def test_an_amount_off_discount_is_split_across_lines_in_proportion(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    coupon = _coupon(client, amount_off=100, currency="usd")
    invoice = _invoice(client, customer, [1000, 2000], discounts=[{"coupon": coupon.id}])
    shares = sorted(line.discount_amounts[0].amount for line in invoice.lines.data)
    assert shares == [33, 67]
    assert invoice.total == 2900


def test_an_amount_off_discount_never_exceeds_the_invoice(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    coupon = _coupon(client, amount_off=5000, currency="usd")
    invoice = _invoice(client, customer, [1200], discounts=[{"coupon": coupon.id}])
    assert (invoice.total, invoice.amount_due, invoice.status) == (0, 0, "paid")


def test_a_promotion_code_discounts_and_counts_a_redemption(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    coupon = _coupon(client, percent_off="50")
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "max_redemptions": 1}
    )
    invoice = _invoice(client, customer, [1000], discounts=[{"promotion_code": promo.id}])
    assert invoice.total == 500
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    with pytest.raises(stripe.InvalidRequestError):
        _invoice(client, customer, [1000], discounts=[{"promotion_code": promo.id}])


def test_invoice_discounts_can_be_expanded(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    coupon = _coupon(client, percent_off="10")
    invoice = _invoice(client, customer, [1000], discounts=[{"coupon": coupon.id}])
    expanded = client.v1.invoices.retrieve(invoice.id, params={"expand": ["discounts"]})
    discount = expanded.discounts[0]
    assert isinstance(discount, stripe.Discount)
    assert discount.source.coupon == coupon.id


def test_a_subscription_discount_repeats_for_its_months_then_stops(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_767_225_600})
    customer = client.v1.customers.create(params={"test_clock": clock.id, **WITH_CARD})
    coupon = _coupon(client, percent_off="25", duration="repeating", duration_in_months=2)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": recurring_price.id}],
            "discounts": [{"coupon": coupon.id}],
        }
    )
    client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": 1_767_225_600 + 95 * 86_400}
    )
    totals = [
        i.total for i in reversed(client.v1.invoices.list(params={"subscription": sub.id}).data)
    ]
    assert totals == [1500, 1500, 2000, 2000]


def test_a_once_customer_discount_applies_to_one_invoice_only(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    coupon = _coupon(client, percent_off="10", duration="once")
    # ``coupon`` on customers exists only in API versions before 2025-09-30.
    pinned = make_client(sandbox.url, stripe_version="2025-08-27.basil")
    customer = pinned.v1.customers.create(params={"coupon": coupon.id})  # type: ignore[typeddict-unknown-key]
    assert customer.discount is not None
    first = _invoice(client, customer, [1000])
    second = _invoice(client, customer, [1000])
    assert (first.total, second.total) == (900, 1000)
    assert client.v1.customers.retrieve(customer.id).discount is None


def test_the_coupon_parameter_is_gone_in_the_current_version(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    coupon = _coupon(client, percent_off="10")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.update(customer.id, params={"coupon": coupon.id})  # type: ignore[typeddict-unknown-key]
    assert raised.value.code == "parameter_unknown"


# -- tax rates ----------------------------------------------------------------------------------


def _rate(client: stripe.StripeClient, percentage: str, *, inclusive: bool) -> stripe.TaxRate:
    return client.v1.tax_rates.create(
        params={"display_name": "VAT", "percentage": percentage, "inclusive": inclusive}
    )


def test_an_exclusive_tax_rate_is_added_on_top(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    rate = _rate(client, "15", inclusive=False)
    invoice = _invoice(client, customer, [43, 484], default_tax_rates=[rate.id])
    assert (invoice.subtotal, invoice.total_excluding_tax) == (527, 527)
    assert invoice.total_taxes is not None
    assert [(t.amount, t.taxable_amount) for t in invoice.total_taxes] == [(79, 527)]
    assert invoice.total == 606


def test_an_inclusive_tax_rate_is_contained_in_the_amount(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    rate = _rate(client, "20", inclusive=True)
    invoice = _invoice(client, customer, [1200], default_tax_rates=[rate.id])
    assert invoice.total_taxes is not None
    assert invoice.total_taxes[0].amount == 200
    assert invoice.total_taxes[0].tax_behavior == "inclusive"
    assert (invoice.subtotal, invoice.total, invoice.total_excluding_tax) == (1200, 1200, 1000)


def test_tax_is_computed_after_discounts(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    rate = _rate(client, "10", inclusive=False)
    coupon = _coupon(client, percent_off="50")
    invoice = _invoice(
        client, customer, [1000], default_tax_rates=[rate.id], discounts=[{"coupon": coupon.id}]
    )
    assert invoice.total_taxes is not None
    assert invoice.total_taxes[0].amount == 50
    assert invoice.total == 550


def test_an_invoice_items_own_tax_rate_wins_over_the_invoice_default(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    standard = _rate(client, "20", inclusive=False)
    reduced = _rate(client, "5", inclusive=False)
    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "amount": 1000,
            "currency": "usd",
            "tax_rates": [reduced.id],
        }
    )
    draft = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "pending_invoice_items_behavior": "include",
            "default_tax_rates": [standard.id],
        }
    )
    assert draft.total == 1050


# -- customer balance ---------------------------------------------------------------------------


def test_a_customer_credit_balance_is_applied_to_the_next_invoice(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    client.v1.customers.update(customer.id, params={"balance": -700})
    invoice = _invoice(client, customer, [1000])
    assert (invoice.total, invoice.starting_balance, invoice.ending_balance) == (1000, -700, 0)
    assert invoice.amount_due == 300
    assert client.v1.customers.retrieve(customer.id).balance == 0
    txn = client.v1.customers.balance_transactions.list(customer.id).data[0]
    assert (txn.type, txn.amount, txn.invoice) == ("applied_to_invoice", 700, invoice.id)


def test_a_credit_larger_than_the_invoice_leaves_the_rest(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    client.v1.customers.update(customer.id, params={"balance": -5000})
    invoice = _invoice(client, customer, [1000])
    assert (invoice.amount_due, invoice.status, invoice.ending_balance) == (0, "paid", -4000)
    assert client.v1.customers.retrieve(customer.id).balance == -4000


def test_a_debit_balance_is_added_to_the_next_invoice(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    client.v1.customers.update(customer.id, params={"balance": 250})
    invoice = _invoice(client, customer, [1000])
    assert (invoice.total, invoice.amount_due) == (1000, 1250)
