"""A customer with a card on file buys with a trial and a 20% deal discount (issue 15, items
5-7): the CRM's fields reach the plan, Stripe charges the card when the trial ends, and every
invoice is the plan's amount after the discount, to the minor unit, on a Stripe test clock."""

from __future__ import annotations

from datetime import date, timedelta

from connector.domain.timestamps import unix_at_midnight
from tests.e2e.conftest import World

ACME_BILLING_EMAIL = "ap.team@acmerobotics.example"


def test_a_card_on_file_is_charged_after_the_trial_with_the_deal_discount(world: World) -> None:
    client = world.stripe_client()
    clock = client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": int(world.clock().timestamp()), "name": "charging"}
    )
    customer = client.v1.customers.create(
        params={"email": ACME_BILLING_EMAIL, "name": "Acme AP", "test_clock": clock.id}
    )
    card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    world.crm.update_deal(
        "acme_platform",
        payment_collection="Charge automatically",
        trial_days=14,
        discount_percent=20,
    )
    world.sync()
    plan = world.plan_for("acme_platform")
    stated = plan["plan"]
    assert (stated["collection_method"], stated["payment_method"]["id"]) == (
        "charge_automatically",
        card.id,
    )
    assert (stated["trial_days"], stated["discount_percent"]) == (14, "20")
    assert stated["needs_confirmation"] == [], stated["notes"]
    page = world.api("GET", f"/plans/{plan['id']}").get_data(as_text=True)
    assert "Free trial of 14 day(s)" in page and "Deal discount 20%" in page

    activated = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert activated.status_code == 200, activated.get_json()
    plan = world.plan_for("acme_platform")
    assert plan["status"] == "active", plan["status_reason"]
    trial_end = date.fromisoformat(stated["trial_end"])
    client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": unix_at_midnight(trial_end + timedelta(days=2))}
    )
    world.sync()
    invoices = sorted(
        client.v1.invoices.list(params={"customer": customer.id}).data, key=lambda i: i.created
    )
    assert [(i.status, i.amount_paid) for i in invoices] == [
        ("paid", scheduled["amount"]) for scheduled in stated["invoices"][:2]
    ]
    assert all(i.total_discount_amounts for i in invoices)
    records = {r["stripe_invoice_id"]: r for r in world.crm.invoices()}
    assert [records[i.id]["status"] for i in invoices] == ["paid", "paid"]
    assert world.crm.deal("acme_platform")["subscription_status"] == "active"


def test_a_declined_card_shows_its_reason_on_the_crm_invoice_record(world: World) -> None:
    world.crm.update_deal("acme_platform", payment_collection="Charge automatically")
    world.sync()
    plan = world.plan_for("acme_platform")
    client = world.stripe_client()
    customer = str(plan["stripe_customer_id"])
    card = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": customer}
    )
    client.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    refreshed = world.api("POST", f"/api/plans/{plan['id']}/adjust", json={})
    assert refreshed.get_json()["plan"]["collection_method"] == "charge_automatically"

    activated = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert activated.status_code == 200, activated.get_json()
    world.sync()

    plan = world.plan_for("acme_platform")
    subscription = client.v1.subscriptions.retrieve(plan["stripe_subscription_id"])
    assert subscription.status == "incomplete"
    [record] = [
        r for r in world.crm.invoices() if r["stripe_invoice_id"] == subscription.latest_invoice
    ]
    assert record["status"] == "open"
    assert "Your card was declined" in record["last_payment_error"]
    assert "generic_decline" in record["last_payment_error"]
