"""Decimal, tiered and metered prices; trials; prorated changes; previews; schedules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import DAY, START, WITH_CARD, make_client

FEB_1 = START + 31 * DAY
JAN_16 = START + 15 * DAY


def _price(client: stripe.StripeClient, **params: Any) -> stripe.Price:
    base: dict[str, Any] = {
        "currency": "usd",
        "recurring": {"interval": "month"},
        "product_data": {"name": "Seats"},
    }
    return client.v1.prices.create(params={**base, **params})


@pytest.fixture
def test_clock(client: stripe.StripeClient) -> stripe.test_helpers.TestClock:
    return client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})


@pytest.fixture
def payer(
    client: stripe.StripeClient, test_clock: stripe.test_helpers.TestClock
) -> stripe.Customer:
    return client.v1.customers.create(params={"test_clock": test_clock.id, **WITH_CARD})


def _advance(
    client: stripe.StripeClient, test_clock: stripe.test_helpers.TestClock, to: int
) -> None:
    client.v1.test_helpers.test_clocks.advance(test_clock.id, params={"frozen_time": to})


def _invoices(client: stripe.StripeClient, sub_id: str) -> list[stripe.Invoice]:
    """The subscription's invoices, oldest first."""
    return list(reversed(client.v1.invoices.list(params={"subscription": sub_id}).data))


# -- prices -------------------------------------------------------------------------------------


def test_a_decimal_unit_amount_is_rounded_once_on_the_line(
    client: stripe.StripeClient, payer: stripe.Customer
) -> None:
    price = _price(client, unit_amount_decimal="0.125")
    assert (price.unit_amount, price.unit_amount_decimal) == (None, Decimal("0.125"))
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": price.id, "quantity": 1003}]}
    )
    # 1003 x 0.125 = 125.375 -> 125
    assert _invoices(client, sub.id)[0].total == 125


@pytest.mark.parametrize(
    ("mode", "quantity", "total"),
    [
        # graduated: 5 x 1000 + 5 x 800 + 2 x 500 + flat 300 of the last tier
        ("graduated", 12, 10_300),
        # volume: all 12 at the third tier's 500, plus its flat 300
        ("volume", 12, 6_300),
        ("graduated", 5, 5_000),
        ("volume", 6, 4_800),
    ],
)
def test_tiered_prices(
    client: stripe.StripeClient, payer: stripe.Customer, mode: str, quantity: int, total: int
) -> None:
    price = _price(
        client,
        billing_scheme="tiered",
        tiers_mode=mode,
        tiers=[
            {"up_to": 5, "unit_amount": 1000},
            {"up_to": 10, "unit_amount": 800},
            {"up_to": "inf", "unit_amount": 500, "flat_amount": 300},
        ],
    )
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": price.id, "quantity": quantity}]}
    )
    assert _invoices(client, sub.id)[0].total == total


def test_a_tiered_price_needs_an_open_ended_last_tier(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        _price(
            client,
            billing_scheme="tiered",
            tiers_mode="volume",
            tiers=[{"up_to": 5, "unit_amount": 1000}],
        )


def test_a_metered_price_bills_the_meters_usage_in_arrears(
    client: stripe.StripeClient, payer: stripe.Customer, test_clock: stripe.test_helpers.TestClock
) -> None:
    meter = client.v1.billing.meters.create(
        params={
            "display_name": "API calls",
            "event_name": "api_call",
            "default_aggregation": {"formula": "sum"},
        }
    )
    price = _price(
        client,
        unit_amount=3,
        recurring={"interval": "month", "usage_type": "metered", "meter": meter.id},
    )
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": price.id}]}
    )
    assert _invoices(client, sub.id)[0].total == 0
    for value, when in (("120", START + DAY), ("30", START + 2 * DAY), ("999", FEB_1 + DAY)):
        client.v1.billing.meter_events.create(
            params={
                "event_name": "api_call",
                "payload": {"stripe_customer_id": payer.id, "value": value},
                "timestamp": when,
            }
        )
    _advance(client, test_clock, FEB_1 + 2 * 3600)
    renewal = _invoices(client, sub.id)[1]
    line = renewal.lines.data[0]
    assert (line.quantity, line.amount) == (150, 450)
    assert (line.period.start, line.period.end) == (START, FEB_1)


def test_usage_records_bill_a_metered_price_for_clients_pinned_before_2025_03_31(
    sandbox: StripeSandbox,
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
) -> None:
    pinned = make_client(sandbox.url, stripe_version="2024-12-18.acacia")
    price = pinned.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 10,
            "product_data": {"name": "Calls"},
            "recurring": {"interval": "month", "usage_type": "metered"},
        }
    )
    sub = pinned.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": price.id}]}
    )
    item = sub.items.data[0].id
    for quantity, action in ((40, "increment"), (2, "increment"), (25, "set"), (5, "increment")):
        pinned.raw_request(
            "post",
            f"/v1/subscription_items/{item}/usage_records",
            quantity=quantity,
            timestamp=START + DAY,
            action=action,
        )
    _advance(client, test_clock, FEB_1 + 2 * 3600)
    assert _invoices(client, sub.id)[1].total == 300
    with pytest.raises(stripe.InvalidRequestError):
        client.raw_request("post", f"/v1/subscription_items/{item}/usage_records", quantity=1)


def test_a_metered_item_takes_no_quantity(
    client: stripe.StripeClient, payer: stripe.Customer
) -> None:
    meter = client.v1.billing.meters.create(
        params={"display_name": "m", "event_name": "m", "default_aggregation": {"formula": "count"}}
    )
    price = _price(
        client,
        unit_amount=3,
        recurring={"interval": "month", "usage_type": "metered", "meter": meter.id},
    )
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.create(
            params={"customer": payer.id, "items": [{"price": price.id, "quantity": 2}]}
        )


def test_legacy_plans_are_prices(client: stripe.StripeClient, payer: stripe.Customer) -> None:
    plan = client.v1.plans.create(
        params={"currency": "usd", "interval": "month", "amount": 2000, "product": {"name": "Old"}}
    )
    assert plan.object == "plan"
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"plan": plan.id}]}
    )
    assert sub.items.data[0].plan.id == plan.id
    assert client.v1.plans.delete(plan.id).deleted is True


# -- trials -------------------------------------------------------------------------------------


def test_a_trial_starts_with_a_zero_invoice_and_converts(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
) -> None:
    sub = client.v1.subscriptions.create(
        params={
            "customer": payer.id,
            "items": [{"price": recurring_price.id}],
            "trial_period_days": 14,
        }
    )
    assert (sub.status, sub.trial_start, sub.trial_end) == ("trialing", START, START + 14 * DAY)
    first = _invoices(client, sub.id)[0]
    assert (first.total, first.status) == (0, "paid")
    assert first.lines.data[0].description == "Trial period for Gold plan"
    _advance(client, test_clock, START + 12 * DAY)
    will_end = client.v1.events.list(params={"type": "customer.subscription.trial_will_end"}).data
    assert [e.created for e in will_end] == [START + 11 * DAY]
    _advance(client, test_clock, START + 14 * DAY + 2 * 3600)
    converted = client.v1.subscriptions.retrieve(sub.id)
    assert converted.status == "active"
    second = _invoices(client, sub.id)[1]
    assert (second.billing_reason, second.total, second.status) == (
        "subscription_cycle",
        2000,
        "paid",
    )


def test_a_trial_without_a_payment_method_can_pause(
    client: stripe.StripeClient, recurring_price: stripe.Price
) -> None:
    customer = client.v1.customers.create()
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": recurring_price.id}],
            "trial_period_days": 7,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        }
    )
    paused = client.v1.subscriptions.update(sub.id, params={"trial_end": "now"})
    assert paused.status == "paused"
    assert client.v1.events.list(params={"type": "customer.subscription.paused"}).data
    client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"source": "tok_visa"})
    resumed = client.v1.subscriptions.resume(sub.id, params={"expand": ["latest_invoice"]})
    assert resumed.status == "active"
    assert isinstance(resumed.latest_invoice, stripe.Invoice)
    assert (resumed.latest_invoice.total, resumed.latest_invoice.status) == (2000, "paid")
    assert client.v1.events.list(params={"type": "customer.subscription.resumed"}).data


# -- changes ------------------------------------------------------------------------------------


def test_an_upgrade_mid_period_is_prorated_on_the_next_invoice(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
) -> None:
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": recurring_price.id}]}
    )
    _advance(client, test_clock, JAN_16)
    client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": sub.items.data[0].id, "quantity": 3}]}
    )
    pending = client.v1.invoice_items.list(params={"customer": payer.id, "pending": True}).data
    # 16 of 31 days remain: -2000 x 16/31 = -1032.26 -> -1032; 6000 x 16/31 = 3096.77 -> 3097
    assert sorted(i.amount for i in pending) == [-1032, 3097]
    assert all(i.proration for i in pending)
    _advance(client, test_clock, FEB_1 + 2 * 3600)
    renewal = _invoices(client, sub.id)[1]
    assert renewal.total == 6000 - 1032 + 3097
    descriptions = sorted(str(line.description) for line in renewal.lines.data)
    assert "Remaining time on 3 × Gold plan after 16 Jan 2026" in descriptions  # noqa: RUF001
    assert "Unused time on Gold plan after 16 Jan 2026" in descriptions


def test_always_invoice_invoices_the_proration_at_once(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
) -> None:
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": recurring_price.id}]}
    )
    _advance(client, test_clock, JAN_16)
    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 2}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    assert (invoice.billing_reason, invoice.total, invoice.status) == (
        "subscription_update",
        2065 - 1032,
        "paid",
    )


def test_no_proration_when_asked(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
) -> None:
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": recurring_price.id}]}
    )
    _advance(client, test_clock, JAN_16)
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 2}],
            "proration_behavior": "none",
        },
    )
    assert client.v1.invoice_items.list(params={"customer": payer.id, "pending": True}).data == []


def test_mixed_intervals_are_refused(
    client: stripe.StripeClient, payer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    yearly = _price(client, unit_amount=10_000, recurring={"interval": "year"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.create(
            params={
                "customer": payer.id,
                "items": [{"price": recurring_price.id}, {"price": yearly.id}],
            }
        )


def test_a_second_currency_on_a_customer_is_refused(
    client: stripe.StripeClient, payer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": recurring_price.id}]}
    )
    euros = _price(client, currency="eur", unit_amount=1000)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.create(
            params={"customer": payer.id, "items": [{"price": euros.id}]}
        )
    assert "combine currencies" in str(raised.value)


# -- previews -----------------------------------------------------------------------------------


def _summary(invoice: stripe.Invoice) -> tuple[Any, ...]:
    return (
        invoice.total,
        invoice.subtotal,
        invoice.amount_due,
        invoice.billing_reason,
        sorted((line.amount, str(line.description)) for line in invoice.lines.data),
    )


def test_a_preview_of_a_new_subscription_equals_its_first_invoice(
    client: stripe.StripeClient, payer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    rate = client.v1.tax_rates.create(
        params={"display_name": "VAT", "percentage": "20", "inclusive": False}
    )
    details: Any = {
        "items": [{"price": recurring_price.id, "quantity": 2}],
        "default_tax_rates": [rate.id],
    }
    preview = client.v1.invoices.create_preview(
        params={"customer": payer.id, "subscription_details": details}
    )
    assert client.v1.subscriptions.list(params={"customer": payer.id}).data == []
    sub = client.v1.subscriptions.create(params={"customer": payer.id, **details})
    assert _summary(preview) == _summary(_invoices(client, sub.id)[0])


def test_a_previews_invoice_items_are_on_the_new_subscriptions_first_invoice(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    recurring_price: stripe.Price,
    one_time_price: stripe.Price,
) -> None:
    items: Any = [{"price": recurring_price.id, "quantity": 3}]
    preview = client.v1.invoices.create_preview(
        params={
            "customer": payer.id,
            "subscription_details": {"items": items},
            "invoice_items": [{"price": one_time_price.id, "quantity": 2}],
        }
    )
    assert client.v1.invoice_items.list(params={"customer": payer.id}).data == []
    sub = client.v1.subscriptions.create(
        params={
            "customer": payer.id,
            "items": items,
            "add_invoice_items": [{"price": one_time_price.id, "quantity": 2}],
        }
    )
    assert _summary(preview) == _summary(_invoices(client, sub.id)[0])


def test_a_preview_with_a_start_date_in_the_past_is_the_backdated_subscriptions_invoice(
    client: stripe.StripeClient, payer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    items: Any = [{"price": recurring_price.id, "quantity": 2}]
    backdated = START - 10 * DAY
    anchor = START + 21 * DAY
    preview = client.v1.invoices.create_preview(
        params={
            "customer": payer.id,
            "subscription_details": {
                "items": items, "start_date": backdated, "billing_cycle_anchor": anchor,
            },
        }
    )  # fmt: skip
    sub = client.v1.subscriptions.create(
        params={
            "customer": payer.id, "items": items, "backdate_start_date": backdated,
            "billing_cycle_anchor": anchor,
        }
    )  # fmt: skip
    first = _invoices(client, sub.id)[0]
    assert _summary(preview) == _summary(first)
    assert [line.period.start for line in preview.lines.data] == [backdated]


def test_a_preview_of_invoice_items_alone_is_the_one_off_invoice_they_make(
    client: stripe.StripeClient, payer: stripe.Customer, one_time_price: stripe.Price
) -> None:
    preview = client.v1.invoices.create_preview(
        params={"customer": payer.id, "invoice_items": [{"price": one_time_price.id}]}
    )
    assert client.v1.invoices.list(params={"customer": payer.id}).data == []
    client.v1.invoice_items.create(
        params={"customer": payer.id, "pricing": {"price": one_time_price.id}}
    )
    invoice = client.v1.invoices.create(
        params={"customer": payer.id, "pending_invoice_items_behavior": "include"}
    )
    assert (preview.total, preview.subtotal) == (invoice.total, invoice.subtotal)
    assert [line.amount for line in preview.lines.data] == [
        line.amount for line in invoice.lines.data
    ]
    assert preview.total == one_time_price.unit_amount


def test_a_preview_of_an_upgrade_equals_the_invoice_that_follows(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    test_clock: stripe.test_helpers.TestClock,
    recurring_price: stripe.Price,
) -> None:
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": recurring_price.id}]}
    )
    _advance(client, test_clock, JAN_16)
    change: Any = {"items": [{"id": sub.items.data[0].id, "quantity": 4}]}
    preview = client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {**change, "proration_date": JAN_16},
        }
    )
    assert client.v1.invoice_items.list(params={"customer": payer.id, "pending": True}).data == []
    client.v1.subscriptions.update(sub.id, params=change)
    _advance(client, test_clock, FEB_1 + 2 * 3600)
    assert _summary(preview) == _summary(_invoices(client, sub.id)[1])


# -- schedules and versions ---------------------------------------------------------------------


def test_phase_iterations_are_accepted_from_clients_pinned_before_2025_09_30(
    sandbox: StripeSandbox, recurring_price: stripe.Price
) -> None:
    pinned = make_client(sandbox.url, stripe_version="2025-08-27.basil")
    customer = pinned.v1.customers.create()
    params: Any = {
        "customer": customer.id,
        "start_date": START + 10 * DAY,
        "phases": [{"items": [{"price": recurring_price.id}], "iterations": 3}],
    }
    schedule = pinned.v1.subscription_schedules.create(params=params)
    assert schedule.phases[0].end_date == START + 10 * DAY + (31 + 28 + 31) * DAY
    current = make_client(sandbox.url)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        current.v1.subscription_schedules.create(params=params)
    assert raised.value.code == "parameter_unknown"


def test_updating_a_schedules_current_phase_changes_its_subscription(
    client: stripe.StripeClient, payer: stripe.Customer, recurring_price: stripe.Price
) -> None:
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": payer.id,
            "start_date": "now",
            "phases": [
                {"items": [{"price": recurring_price.id}], "duration": {"interval": "month"}}
            ],
        }
    )
    updated = client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "phases": [
                {
                    "start_date": schedule.phases[0].start_date,
                    "items": [{"price": recurring_price.id, "quantity": 5}],
                    "duration": {"interval": "month", "interval_count": 2},
                }
            ],
            "proration_behavior": "none",
        },
    )
    assert updated.phases[0].end_date == START + (31 + 28) * DAY
    sub = client.v1.subscriptions.retrieve(str(updated.subscription))
    assert sub.items.data[0].quantity == 5


def test_a_previews_discounts_are_on_the_new_subscriptions_first_invoice(
    client: stripe.StripeClient,
    payer: stripe.Customer,
    recurring_price: stripe.Price,
    one_time_price: stripe.Price,
) -> None:
    coupon = client.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
    items: Any = [{"price": recurring_price.id, "quantity": 3}]
    one_off: Any = [{"price": one_time_price.id, "quantity": 1}]
    discounts: Any = [{"coupon": coupon.id}]
    preview = client.v1.invoices.create_preview(
        params={
            "customer": payer.id,
            "subscription_details": {"items": items},
            "invoice_items": one_off,
            "discounts": discounts,
        }
    )
    assert preview.total_discount_amounts and preview.total < preview.subtotal
    sub = client.v1.subscriptions.create(
        params={
            "customer": payer.id,
            "items": items,
            "add_invoice_items": one_off,
            "discounts": discounts,
        }
    )
    assert _summary(preview) == _summary(_invoices(client, sub.id)[0])


def test_a_one_off_previews_discounts_are_on_the_invoice(
    client: stripe.StripeClient, payer: stripe.Customer, one_time_price: stripe.Price
) -> None:
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "once"})
    preview = client.v1.invoices.create_preview(
        params={
            "customer": payer.id,
            "invoice_items": [{"price": one_time_price.id, "quantity": 2}],
            "discounts": [{"coupon": coupon.id}],
        }
    )
    assert sum(d.amount for d in preview.total_discount_amounts) == preview.subtotal // 4
