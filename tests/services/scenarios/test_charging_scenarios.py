"""Automatic charging, trials and deal discounts (issue 15, items 5 and 6), on the fake CRM
with the Stripe sandbox in process: what the plan says, what Stripe holds, what the CRM's
invoice records show."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe

from tests.e2e.conftest import World

CHARGE = "Charge automatically"


def _plan(world: World) -> dict[str, Any]:
    return world.plan_for("acme_platform")


def _card_on_file(world: World, card: str = "pm_card_visa") -> str:
    """The customer gives a card: attached and made its invoice default, as Checkout or the
    customer portal would."""
    customer = str(_plan(world)["stripe_customer_id"])
    client = world.stripe_client()
    method = client.v1.payment_methods.attach(card, params={"customer": customer})
    client.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": str(method.id)}}
    )
    return str(method.id)


def _refresh(world: World, plan_id: str) -> dict[str, Any]:
    response = world.api("POST", f"/api/plans/{plan_id}/adjust", json={})
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def _activate(world: World, plan_id: str) -> dict[str, Any]:
    response = world.api("POST", f"/api/plans/{plan_id}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    plan = _plan(world)
    assert plan["status"] == "active", plan["status_reason"]
    return plan


def _subscription(world: World, plan: dict[str, Any]) -> stripe.Subscription:
    return world.stripe_client().v1.subscriptions.retrieve(plan["stripe_subscription_id"])


def _crm_record(world: World, invoice_id: str) -> dict[str, Any]:
    [record] = [r for r in world.crm.invoices() if r["stripe_invoice_id"] == invoice_id]
    return record


def test_a_card_on_file_is_charged_automatically_and_the_invoice_is_paid(world: World) -> None:
    world.crm.update_deal("acme_platform", payment_collection=CHARGE)
    world.sync()
    method = _card_on_file(world)
    view = _refresh(world, _plan(world)["id"])
    assert view["plan"]["collection_method"] == "charge_automatically"
    assert view["plan"]["payment_method"]["id"] == method
    assert view["plan"]["collection_fallback"] is None
    assert any("Charged automatically to visa •••• 4242" in line for line in view["summary"])

    plan = _activate(world, view["id"])
    sub = _subscription(world, plan)
    assert (sub.collection_method, sub.default_payment_method) == ("charge_automatically", method)
    invoice = world.stripe_client().v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.amount_paid) == ("paid", plan["plan"]["invoices"][0]["amount"])
    record = _crm_record(world, str(invoice.id))
    assert (record["status"], record["last_payment_error"]) == ("paid", None)


def test_without_a_payment_method_invoices_are_sent_and_the_plan_says_so(world: World) -> None:
    world.crm.update_deal("acme_platform", payment_collection=CHARGE)
    world.sync()
    plan = _plan(world)
    assert plan["plan"]["collection_method"] == "send_invoice"
    assert "no payment method on file" in plan["plan"]["collection_fallback"]
    assert "collection_method" in plan["plan"]["needs_confirmation"]
    assert any("Not charged automatically" in line for line in plan["summary"])
    page = world.api("GET", f"/plans/{plan['id']}").get_data(as_text=True)
    assert "no payment method on file" in page and "confirm-collection_method" in page

    plan = _activate(world, plan["id"])
    sub = _subscription(world, plan)
    assert (sub.collection_method, sub.days_until_due) == ("send_invoice", 30)


@pytest.mark.parametrize(
    ("card", "said"),
    [
        (
            "pm_card_chargeCustomerFail",
            ["Payment failed", "Your card was declined", "generic_decline"],
        ),
        ("pm_card_authenticationRequired", ["Payment needs customer action"]),
    ],
)
def test_a_declined_card_shows_its_reason_on_the_crm_invoice_record(
    world: World, card: str, said: list[str]
) -> None:
    world.crm.update_deal("acme_platform", payment_collection=CHARGE)
    world.sync()
    _card_on_file(world, card)
    plan = _activate(world, _refresh(world, _plan(world)["id"])["id"])
    sub = _subscription(world, plan)
    assert sub.status == "incomplete"
    record = _crm_record(world, str(sub.latest_invoice))
    assert record["status"] == "open"
    for words in said:
        assert words in record["last_payment_error"]


def test_a_trial_converts_to_paid_when_it_ends(world: World) -> None:
    world.crm.update_deal("acme_platform", payment_collection=CHARGE, trial_days=14)
    world.sync()
    _card_on_file(world)
    view = _refresh(world, _plan(world)["id"])
    trial_end = view["plan"]["trial_end"]
    assert view["plan"]["invoices"][1]["date"] == trial_end
    plan = _activate(world, view["id"])
    sub = _subscription(world, plan)
    assert sub.status == "trialing"
    first = world.stripe_client().v1.invoices.retrieve(str(sub.latest_invoice))
    # The trial invoice bills the one-time setup fee only.
    assert first.amount_paid == plan["plan"]["invoices"][0]["amount"] == 250_000

    world.clock.advance(days=14, hours=2)
    world.stripe_sandbox.run_billing()
    world.sync()
    sub = _subscription(world, plan)
    assert sub.status == "active"
    paid = world.stripe_client().v1.invoices.retrieve(str(sub.latest_invoice))
    assert (paid.status, paid.amount_paid) == ("paid", plan["plan"]["invoices"][1]["amount"])
    assert _crm_record(world, str(paid.id))["status"] == "paid"
    assert world.crm.deal("acme_platform")["subscription_status"] == "active"


def test_a_20_percent_deal_discount_is_on_every_invoice(world: World) -> None:
    world.crm.update_deal("acme_platform", discount_percent="20")
    world.sync()
    plan = _plan(world)
    schedule = plan["plan"]["invoices"]
    assert plan["plan"]["discount_percent"] == "20"
    assert plan["plan"]["total_amount"] == sum(i["amount"] for i in schedule)
    preview = world.api("GET", f"/api/plans/{plan['id']}/first-invoice").get_json()
    assert preview["amount_due"] == schedule[0]["amount"]
    assert preview["discount"] > 0

    plan = _activate(world, plan["id"])
    client = world.stripe_client()
    sub = _subscription(world, plan)
    first = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert first.amount_due == schedule[0]["amount"]
    coupon = client.v1.coupons.retrieve(_coupon_of(world, sub))
    assert Decimal(str(coupon.percent_off)) == 20
    world.clock.advance(days=31, hours=3)
    world.stripe_sandbox.run_billing()
    renewal = client.v1.invoices.retrieve(str(_subscription(world, plan).latest_invoice))
    assert renewal.id != first.id
    assert renewal.amount_due == schedule[1]["amount"]
    assert sum(d.amount for d in renewal.total_discount_amounts) > 0


def _coupon_of(world: World, sub: stripe.Subscription) -> str:
    discount = (
        world.stripe_client()
        .v1.subscriptions.retrieve(str(sub.id), params={"expand": ["discounts"]})
        .discounts[0]
    )
    return str(discount.source.coupon)


def test_a_one_time_bill_is_charged_to_the_card_on_file(world: World) -> None:
    world.crm.update_deal("acme_platform", payment_collection=CHARGE, discount_percent="20")
    world.sync()
    method = _card_on_file(world)
    plan_id = _plan(world)["id"]
    response = world.api(
        "POST",
        f"/api/plans/{plan_id}/adjust",
        json={"invoice_type": "one_time", "confirmed": ["interval"]},
    )
    assert response.status_code == 200, response.get_json()
    stated = response.get_json()["plan"]
    assert (stated["invoice_type"], stated["collection_method"]) == (
        "one_time",
        "charge_automatically",
    )
    plan = _activate(world, plan_id)
    client = world.stripe_client()
    invoice = client.v1.invoices.retrieve(plan["stripe_invoice_id"])
    assert (invoice.collection_method, invoice.default_payment_method) == (
        "charge_automatically",
        method,
    )
    assert invoice.amount_due == stated["total_amount"] == stated["invoices"][0]["amount"]
    world.clock.advance(hours=2)
    world.stripe_sandbox.run_billing()
    world.sync()
    assert client.v1.invoices.retrieve(str(invoice.id)).status == "paid"
    assert _crm_record(world, str(invoice.id))["status"] == "paid"


def test_a_contract_starting_later_is_charged_after_its_trial_with_its_discount(
    world: World,
) -> None:
    world.crm.update_deal(
        "globex_licence", payment_collection=CHARGE, trial_days=7, discount_percent="20"
    )
    world.sync()
    plan = world.plan_for("globex_licence")
    client = world.stripe_client()
    customer = str(plan["stripe_customer_id"])
    card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    client.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": str(card.id)}}
    )
    stated = _refresh(world, plan["id"])["plan"]
    assert (stated["collection_method"], stated["trial_days"]) == ("charge_automatically", 7)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    plan = world.plan_for("globex_licence")
    assert plan["status"] == "active" and plan["stripe_schedule_id"]

    world.clock.advance(days=14, hours=2)  # the schedule starts: the trial's invoice
    world.stripe_sandbox.run_billing()
    schedule = client.v1.subscription_schedules.retrieve(plan["stripe_schedule_id"])
    sub = client.v1.subscriptions.retrieve(str(schedule.subscription))
    assert (sub.status, sub.default_payment_method) == ("trialing", card.id)
    trial_invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (trial_invoice.status, trial_invoice.amount_paid) == (
        "paid",
        stated["invoices"][0]["amount"],
    )
    world.clock.advance(days=7)  # the trial ends: the first period, charged
    world.stripe_sandbox.run_billing()
    world.sync()
    first = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert (first.status, first.amount_paid) == ("paid", stated["invoices"][1]["amount"])
    assert _crm_record(world, str(first.id))["status"] == "paid"
