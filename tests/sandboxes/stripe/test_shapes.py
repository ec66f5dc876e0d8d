"""Every object the sandbox returns has every field API 2026-10-28.endive requires, typed.

The schema (``schema/objects.json``) is generated from the types of the ``stripe`` npm
package 23.1.0, which Stripe generates from its OpenAPI spec for that API version (see
``schema/generate.py``). One broad scenario drives every capability through stripe-python;
every JSON body the sandbox answers, and every event it records, is validated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe
from werkzeug.wrappers import Request, Response

from sandboxes.stripe import StripeSandbox

from .conftest import DAY, START, WITH_CARD, FakeClock, make_client, stop_in_background
from .schema.validate import Report, check

JSON = dict[str, Any]


def _recording(sandbox: StripeSandbox, bodies: list[JSON]) -> None:
    """Keep a copy of every JSON body the sandbox answers."""
    dispatch: Callable[[Request], Response] = sandbox.app.dispatch

    def recorded(request: Request) -> Response:
        response = dispatch(request)
        if response.content_type == "application/json" and response.status_code < 400:
            bodies.append(json.loads(response.get_data()))
        return response

    sandbox.app.dispatch = recorded  # type: ignore[method-assign]


def _scenario(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    customer = client.v1.customers.create(
        params={"email": "shapes@example.com", "name": "Shapes", "test_clock": clock.id}
    )
    client.v1.customers.update(customer.id, params={"metadata": {"k": "v"}})
    product = client.v1.products.create(params={"name": "Gold"})
    client.v1.products.update(product.id, params={"description": "Gold plan"})
    monthly = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 2000,
            "recurring": {"interval": "month"},
            "product": product.id,
        }
    )
    one_time = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 5000, "product": product.id}
    )
    client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]}
    )
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": monthly.id, "quantity": 2}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "add_invoice_items": [{"price": one_time.id}],
            "expand": ["latest_invoice"],
        }
    )
    client.v1.subscriptions.update(sub.id, params={"metadata": {"a": "b"}})
    client.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": START + 10 * DAY,
            "end_behavior": "release",
            "phases": [
                {"items": [{"price": monthly.id}], "duration": {"interval": "month"}},
                {"items": [{"price": monthly.id, "quantity": 3}]},
            ],
        }
    )
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 700, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "pending_invoice_items_behavior": "include",
            "collection_method": "send_invoice",
            "days_until_due": 10,
        }
    )
    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 200})
    client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    _payments(client, monthly.id)
    _money(client, customer.id, monthly.id, product.id)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": START + 70 * DAY})
    for listing in (
        client.v1.customers.list(params={"test_clock": clock.id}),
        client.v1.invoices.list(params={"customer": customer.id, "limit": 100}),
        client.v1.subscriptions.list(params={"status": "all", "customer": customer.id}),
        client.v1.subscription_schedules.list(),
        client.v1.invoice_items.list(),
        client.v1.credit_notes.list(),
        client.v1.products.list(),
        client.v1.prices.list(),
        client.v1.events.list(params={"limit": 100}),
    ):
        assert listing.data


def _payments(client: stripe.StripeClient, price_id: str) -> None:
    payer = client.v1.customers.create(params={**WITH_CARD, "source": "tok_visa"})
    client.v1.customers.payment_sources.list(payer.id)
    client.v1.payment_methods.create(
        params={
            "type": "us_bank_account",
            "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789"},
            "billing_details": {"name": "Acme"},
        }
    )
    client.v1.setup_intents.create(
        params={"customer": payer.id, "payment_method": "pm_card_visa", "confirm": True}
    )
    client.v1.setup_intents.create(params={"payment_method_types": ["card"]})
    sub = client.v1.subscriptions.create(
        params={"customer": payer.id, "items": [{"price": price_id}], "expand": ["latest_invoice"]}
    )
    client.v1.customers.update(payer.id, params={"source": "tok_chargeCustomerFail"})
    failing = client.v1.customers.create(params={"source": "tok_chargeCustomerFail"})
    client.v1.subscriptions.create(params={"customer": failing.id, "items": [{"price": price_id}]})
    charge = client.v1.charges.list(params={"customer": payer.id}).data[0]
    client.v1.refunds.create(params={"charge": charge.id, "amount": 100})
    assert isinstance(sub.latest_invoice, stripe.Invoice)
    for listing in (
        client.v1.payment_methods.list(params={"customer": payer.id}),
        client.v1.setup_intents.list(),
        client.v1.payment_intents.list(),
        client.v1.charges.list(),
        client.v1.refunds.list(),
        client.v1.invoice_payments.list(params={"invoice": sub.latest_invoice.id}),
    ):
        assert listing.data


def _money(client: stripe.StripeClient, customer_id: str, price_id: str, product_id: str) -> None:
    """Discounts, tax, balance, tiered, metered and decimal prices, trials, changes."""
    coupon = client.v1.coupons.create(params={"percent_off": "12.5", "duration": "forever"})
    client.v1.coupons.create(params={"amount_off": 300, "currency": "usd", "duration": "once"})
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}}
    )
    rate = client.v1.tax_rates.create(
        params={"display_name": "VAT", "percentage": "20", "inclusive": False}
    )
    included = client.v1.tax_rates.create(
        params={"display_name": "GST", "percentage": "10", "inclusive": True}
    )
    client.v1.customers.balance_transactions.create(
        customer_id, params={"amount": -500, "currency": "usd"}
    )
    meter = client.v1.billing.meters.create(
        params={
            "display_name": "Calls",
            "event_name": "calls",
            "default_aggregation": {"formula": "sum"},
        }
    )
    metered = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount_decimal": "0.5",
            "product": product_id,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    tiered = client.v1.prices.create(
        params={
            "currency": "usd",
            "product": product_id,
            "recurring": {"interval": "month"},
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [{"up_to": 3, "unit_amount": 500}, {"up_to": "inf", "flat_amount": 100}],
        }
    )
    client.v1.plans.create(
        params={"currency": "usd", "interval": "month", "amount": 900, "product": product_id}
    )
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer_id,
            "items": [
                {"price": tiered.id, "quantity": 4, "tax_rates": [included.id]},
                {"price": metered.id},
            ],
            "discounts": [{"promotion_code": promo.id}],
            "default_tax_rates": [rate.id],
            "collection_method": "send_invoice",
            "days_until_due": 5,
            "trial_period_days": 3,
            "expand": ["latest_invoice.discounts"],
        }
    )
    client.v1.billing.meter_events.create(
        params={"event_name": "calls", "payload": {"stripe_customer_id": customer_id, "value": "7"}}
    )
    client.v1.subscriptions.update(sub.id, params={"trial_end": "now"})
    client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {"items": [{"id": sub.items.data[0].id, "quantity": 6}]},
        }
    )
    client.v1.invoices.create_preview(
        params={"customer": customer_id, "subscription_details": {"items": [{"price": price_id}]}}
    )
    for listing in (
        client.v1.coupons.list(),
        client.v1.promotion_codes.list(),
        client.v1.tax_rates.list(),
        client.v1.plans.list(),
        client.v1.billing.meters.list(),
        client.v1.customers.balance_transactions.list(customer_id),
    ):
        assert listing.data


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    sandbox = StripeSandbox(now=FakeClock()).start()
    bodies: list[JSON] = []
    _recording(sandbox, bodies)
    try:
        _scenario(make_client(sandbox.url))
        result = Report()
        for body in bodies:
            check(body, result)
        for event in sandbox.state.store.all("event"):
            check(sandbox.state.store.render(event), result)
        yield result
    finally:
        stop_in_background(sandbox.stop)


def test_the_scenario_returns_objects_of_many_types(report: Report) -> None:
    assert report.checked > 100
    assert not {u for u in report.unknown if u.startswith("object ")}


def test_no_required_field_is_missing(report: Report) -> None:
    assert sorted(report.missing) == []


def test_no_field_has_the_wrong_type(report: Report) -> None:
    assert sorted(report.wrong) == []


def test_no_object_has_a_field_the_version_does_not_have(report: Report) -> None:
    """Fields removed from the API (an invoice's top-level ``subscription``) stay removed."""
    assert sorted(report.unknown) == []
