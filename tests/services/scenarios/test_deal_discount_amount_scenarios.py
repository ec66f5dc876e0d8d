"""A deal discount amount billed by Stripe on a test clock exactly as the plan's schedule
states it: a once amount-off coupon on the first invoice, capped at it (fake CRM)."""

from __future__ import annotations

from datetime import timedelta

from connector.domain.plan import add_months
from connector.domain.timestamps import date_from_unix
from tests.e2e.conftest import World
from tests.e2e.test_contract_totals import (
    _assert_billed_as_stated,
    _bill_whole_contract,
    _customer_on_a_test_clock,
)

QUARTERLY = {"interval": "month", "interval_count": 3}
#: The Acme deal billed quarterly: setup on the first invoice, then three months a quarter.
PER_QUARTER = 3 * (120000 + 112500 + 50000)


def test_usd_500_off_the_contract_comes_off_the_first_invoice_only(world: World) -> None:
    clock_id = _customer_on_a_test_clock(world)
    world.crm.update_deal("acme_platform", discount_amount=50_000)
    world.sync()
    plan = world.plan_for("acme_platform")
    page = world.api("GET", f"/plans/{plan['id']}").get_data(as_text=True)
    assert "Deal discount USD 500.00 off the contract" in page
    assert "less USD 500.00 deal discount" in page
    preview = world.api("GET", f"/api/plans/{plan['id']}/first-invoice").get_json()
    assert (preview["available"], preview["discount"]) == (True, 50_000)

    plan, invoices = _bill_whole_contract(world, clock_id, QUARTERLY)
    assert plan["plan"]["total_amount"] == 250000 + 4 * PER_QUARTER - 50_000
    assert plan["plan"]["discount_amount"] == plan["plan"]["discount_amount_taken"] == 50_000
    _assert_billed_as_stated(plan, invoices)
    assert [sum(d.amount for d in i.total_discount_amounts) for i in invoices] == [50_000, 0, 0, 0]
    first = world.stripe_client().v1.invoices.retrieve(
        str(invoices[0].id), params={"expand": ["discounts"]}
    )
    client = world.stripe_client()
    coupon = client.v1.coupons.retrieve(str(first.discounts[0].source.coupon))  # type: ignore[union-attr]
    assert (coupon.amount_off, coupon.currency, coupon.duration) == (50_000, "usd", "once")


def test_more_than_the_first_invoice_is_capped_as_stripe_caps_it(world: World) -> None:
    clock_id = _customer_on_a_test_clock(world)
    first = 250000 + PER_QUARTER
    world.crm.update_deal("acme_platform", discount_amount=first + 12_345)
    plan, invoices = _bill_whole_contract(
        world, clock_id, {**QUARTERLY, "confirmed": ["discount_amount"]}
    )
    stated = plan["plan"]["invoices"]
    assert [s["amount"] for s in stated] == [0, PER_QUARTER, PER_QUARTER, PER_QUARTER]
    assert plan["plan"]["discount_amount_taken"] == first
    assert [i.total for i in invoices] == [s["amount"] for s in stated]
    assert [i.status for i in invoices] == ["paid", "open", "open", "open"]
    assert [str(date_from_unix(i.created)) for i in invoices][1:] == [s["date"] for s in stated][1:]
    assert sum(i.total for i in invoices) == plan["plan"]["total_amount"] == 3 * PER_QUARTER


def test_a_future_start_takes_the_amount_off_the_schedules_first_invoice(world: World) -> None:
    clock_id = _customer_on_a_test_clock(world)
    start = world.clock().date() + timedelta(days=10)
    world.crm.update_deal("acme_platform", contract_start=start, discount_amount=123_456)
    plan, invoices = _bill_whole_contract(world, clock_id, QUARTERLY)
    assert plan["stripe_schedule_id"]
    assert plan["plan"]["total_amount"] == 250000 + 4 * PER_QUARTER - 123_456
    _assert_billed_as_stated(plan, invoices)
    assert date_from_unix(invoices[0].created) == start
    assert [sum(d.amount for d in i.total_discount_amounts) for i in invoices] == [123_456, 0, 0, 0]


def test_a_backdated_start_takes_the_amount_off_the_catch_up_invoice(world: World) -> None:
    """Started 2 months and 10 days ago: the first invoice bills the setup, 2 caught-up
    months and the current month (backdated); the amount comes off all of it, capped."""
    today = world.clock().date()
    start = add_months(today, -2) - timedelta(days=10)
    clock_id = _customer_on_a_test_clock(world)
    first = 250000 + 3 * (120000 + 112500 + 50000)
    world.crm.update_deal("acme_platform", contract_start=start, discount_amount=first - 1)
    plan, invoices = _bill_whole_contract(world, clock_id, {"confirmed": ["start_date"]})
    assert plan["plan"]["invoices"][0]["amount"] == 1
    _assert_billed_as_stated(plan, invoices)


def test_one_bill_for_the_contract_is_sent_less_the_amount(world: World) -> None:
    world.crm.update_deal("acme_platform", discount_amount=50_000)
    world.sync()
    plan_id = world.plan_for("acme_platform")["id"]
    response = world.api(
        "POST",
        f"/api/plans/{plan_id}/adjust",
        json={"invoice_type": "one_time", "confirmed": ["interval"]},
    )
    assert response.status_code == 200, response.get_json()
    stated = response.get_json()["plan"]
    assert stated["total_amount"] == 250000 + 12 * (120000 + 112500 + 50000) - 50_000
    preview = world.api("GET", f"/api/plans/{plan_id}/first-invoice").get_json()
    assert (preview["amount_due"], preview["discount"]) == (stated["total_amount"], 50_000)
    activated = world.api("POST", f"/api/plans/{plan_id}/activate")
    assert activated.status_code == 200, activated.get_json()
    invoice_id = world.plan_for("acme_platform")["stripe_invoice_id"]
    invoice = world.stripe_client().v1.invoices.retrieve(invoice_id)
    assert (invoice.status, invoice.total) == ("open", stated["total_amount"])
