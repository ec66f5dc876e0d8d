"""Scenarios moved down from ``tests/e2e/test_lifecycle.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

import re

from connector.domain.money import from_minor_units
from tests.e2e.conftest import World
from tests.e2e.test_lifecycle import _activate, _audit_actions, _groups


def test_a_customers_subscriptions_are_listed_in_three_groups(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    groups = _groups(world, plan["stripe_customer_id"])
    assert [s["id"] for s in groups["current"]] == [plan["stripe_subscription_id"]]
    assert groups["one_time"] == [] and groups["inactive"] == []


def test_bill_again_sends_a_new_invoice_with_the_same_items(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"invoice_type": "one_time"})
    plan = _activate(world, "acme_platform")
    first = plan["stripe_invoice_id"]
    groups = _groups(world, plan["stripe_customer_id"])
    assert [i["id"] for i in groups["one_time"]] == [first]
    response = world.api("POST", f"/api/invoices/{first}/bill-again", role="finance")
    assert response.status_code == 200, response.get_json()
    client = world.stripe_client()
    again = client.v1.invoices.retrieve(response.get_json()["invoice_id"])
    original = client.v1.invoices.retrieve(first)
    assert again.status == "open" and again.id != first
    assert again.amount_due == original.amount_due
    world.sync()
    assert len(_groups(world, plan["stripe_customer_id"])["one_time"]) == 2


def test_billing_actions_are_refused_on_credit_hold(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    sub_id = plan["stripe_subscription_id"]
    world.api("POST", f"/api/subscriptions/{sub_id}/cancel", role="finance")
    world.crm.set_credit("acme", hold=True)
    world.sync()
    before = world.stripe_count("POST", "/v1/invoices")
    refused = world.api("POST", f"/api/subscriptions/{sub_id}/reactivate", role="finance")
    assert refused.status_code == 409
    assert "on credit hold" in refused.get_json()["error"]["message"]
    assert world.stripe_count("POST", "/v1/invoices") == before  # nothing was billed


def test_archiving_a_price_keeps_existing_subscriptions_billing(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    client = world.stripe_client()
    sub = client.v1.subscriptions.retrieve(plan["stripe_subscription_id"])
    price = sub["items"].data[0].price
    response = world.api("POST", f"/api/prices/{price.id}/archive", role="finance")
    assert response.status_code == 200, response.get_json()
    assert client.v1.prices.retrieve(price.id).active is False
    product = str(price.product)
    assert world.api("POST", f"/api/products/{product}/archive", role="finance").status_code == 200
    assert client.v1.products.retrieve(product).active is False
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_changing_a_price_creates_a_new_one_and_archives_the_old(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    client = world.stripe_client()
    sub = client.v1.subscriptions.retrieve(plan["stripe_subscription_id"])
    old = sub["items"].data[0].price
    response = world.api("POST", f"/api/prices/{old.id}/change", role="finance",
                         json={"unit_amount": 99900, "interval": "year"})  # fmt: skip
    assert response.status_code == 200, response.get_json()
    new = client.v1.prices.retrieve(response.get_json()["price_id"])
    assert (new.unit_amount, new.recurring.interval, new.product) == (99900, "year", old.product)  # type: ignore[union-attr]
    assert client.v1.prices.retrieve(old.id).active is False


def test_changing_a_price_on_the_catalogue_page_leaves_existing_subscriptions_on_the_old_one(
    world: World,
) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    client = world.stripe_client()
    sub = client.v1.subscriptions.retrieve(plan["stripe_subscription_id"])
    old = sub["items"].data[0].price
    page = world.api("GET", "/catalog?refresh=1", role="finance")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and f'action="/catalog/prices/{old.id}/change"' in html
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert csrf is not None

    amount = str(from_minor_units((old.unit_amount or 0) + 10000, old.currency))
    form = {"csrf": csrf.group(1), "amount": amount, "interval": "year"}
    response = world.api("POST", f"/catalog/prices/{old.id}/change", role="finance", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)
    replaced = re.search(r"is replaced by (price_\w+)", response.get_data(as_text=True))
    assert replaced is not None
    new = client.v1.prices.retrieve(replaced.group(1))
    assert new.active is True and new.product == old.product
    assert (new.unit_amount, new.recurring.interval) == ((old.unit_amount or 0) + 10000, "year")  # type: ignore[union-attr]
    assert client.v1.prices.retrieve(old.id).active is False
    still = client.v1.subscriptions.retrieve(sub.id)
    assert still.status == "active"
    assert [i.price.id for i in still["items"].data] == [i.price.id for i in sub["items"].data]
    assert "price.changed" in _audit_actions(world)


def test_reactivation_invoices_first_and_starts_the_subscription_when_paid(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    old_id, customer = plan["stripe_subscription_id"], plan["stripe_customer_id"]
    client = world.stripe_client()
    old = client.v1.subscriptions.retrieve(old_id)
    world.api("POST", f"/api/subscriptions/{old_id}/cancel", role="finance")
    world.sync()

    response = world.api("POST", f"/api/subscriptions/{old_id}/reactivate", role="finance")
    assert response.status_code == 200, response.get_json()
    invoice_id = response.get_json()["invoice_id"]
    invoice = client.v1.invoices.retrieve(invoice_id)
    assert invoice.status == "open"
    assert invoice.amount_due == sum(
        (i.price.unit_amount or 0) * (i.quantity or 1) for i in old["items"].data
    )
    world.sync()
    pending = [s for s in _groups(world, customer)["current"] if s["status"] == "pending"]
    assert len(pending) == 1
    live = client.v1.subscriptions.list(params={"customer": customer}).data
    assert live == []  # nothing starts before the invoice is paid

    client.v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})
    world.sync()
    live = client.v1.subscriptions.list(params={"customer": customer}).data
    assert len(live) == 1 and live[0].status == "active"
    new = live[0]
    assert sorted((i.price.id, i.quantity) for i in new["items"].data) == sorted(
        (i.price.id, i.quantity) for i in old["items"].data
    )
    assert client.v1.invoices.retrieve(str(new.latest_invoice)).amount_due == 0  # paid already
    assert "subscription.reactivated" in _audit_actions(world)


def test_bill_again_bills_what_its_credit_notes_left_owing(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    customer = plan["stripe_customer_id"]
    client = world.stripe_client()
    by_hand = world.invoice_by_hand(customer, amount=75_000)
    client.v1.credit_notes.create(params={"invoice": str(by_hand.id), "amount": 25_001})
    world.sync()
    response = world.api("POST", f"/api/invoices/{by_hand.id}/bill-again", role="finance")
    assert response.status_code == 200, response.get_json()
    again = client.v1.invoices.retrieve(response.get_json()["invoice_id"])
    assert again.amount_due == 75_000 - 25_001


def test_bill_again_refuses_an_invoice_its_credit_notes_cover(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    client = world.stripe_client()
    by_hand = world.invoice_by_hand(plan["stripe_customer_id"], amount=75_000)
    client.v1.credit_notes.create(params={"invoice": str(by_hand.id), "amount": 75_000})
    world.sync()
    before = world.stripe_count("POST", "/v1/invoices")
    response = world.api("POST", f"/api/invoices/{by_hand.id}/bill-again", role="finance")
    assert response.status_code == 409, response.get_json()
    assert "Nothing is still owed" in response.get_json()["error"]["message"]
    assert world.stripe_count("POST", "/v1/invoices") == before


def test_a_subscription_its_schedule_manages_is_released_to_cancel_at_period_end(
    world: World,
) -> None:
    """Stripe refuses to set the end of a subscription a schedule manages (a contract that
    started later); finance's cancel at period end releases it from the schedule first."""
    world.sync()
    plan = _activate(world, "globex_licence")  # starts in 14 days: a schedule
    world.clock.advance(days=15)
    world.stripe_sandbox.run_billing()  # the schedule starts its subscription
    world.sync()
    client = world.stripe_client()
    schedule = client.v1.subscription_schedules.retrieve(plan["stripe_schedule_id"])
    sub_id = str(schedule.subscription)
    assert client.v1.subscriptions.retrieve(sub_id).schedule == schedule.id

    answer = world.api("POST", f"/api/subscriptions/{sub_id}/cancel", role="finance",
                       json={"at_period_end": True})  # fmt: skip

    assert answer.status_code == 200, answer.get_json()
    subscription = client.v1.subscriptions.retrieve(sub_id)
    assert subscription.cancel_at_period_end and subscription.schedule is None
    assert client.v1.subscription_schedules.retrieve(schedule.id).status == "released"
