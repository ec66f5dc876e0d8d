"""Whole contracts on Stripe test clocks: what Stripe bills is what the plan states.

Each scenario activates a plan for a customer on a test clock, advances the clock past the
end of the last billed period, and compares Stripe's invoices with the plan: the same
amounts on the same schedule, and their sum equal to the stated contract total to the minor
unit. The world clock stands at 09:00 UTC, so activation happens mid-day, as in life.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from connector.domain.plan import add_months
from connector.domain.timestamps import date_from_unix, unix_at_midnight
from connector.services.invoice_preview import first_invoice
from tests.e2e.conftest import World

pytestmark = pytest.mark.crm(
    "salesforce", reason="Stripe's arithmetic does not depend on the CRM; whole contracts are slow"
)

ACME_BILLING_EMAIL = "ap.team@acmerobotics.example"


def _customer_on_a_test_clock(world: World) -> str:
    """The deal's Stripe customer, made beforehand on a test clock set to the world's time
    (linking finds it by its email)."""
    client = world.stripe_client()
    clock = client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": int(world.clock().timestamp()), "name": "contract"}
    )
    client.v1.customers.create(
        params={"email": ACME_BILLING_EMAIL, "name": "Acme AP", "test_clock": clock.id}
    )
    return str(clock.id)


def _bill_whole_contract(
    world: World, clock_id: str, changes: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[Any]]:
    """Review (with ``changes``), activate, run the test clock to the end: (plan, invoices
    in the order Stripe created them)."""
    world.sync()
    plan = world.plan_for("acme_platform")
    if changes:
        adjusted = world.api("POST", f"/api/plans/{plan['id']}/adjust", json=changes)
        assert adjusted.status_code == 200, adjusted.get_json()
    plan = world.plan_for("acme_platform")
    assert plan["plan"]["needs_confirmation"] == [], plan["plan"]["notes"]
    assert world.runtime is not None
    preview = first_invoice(world.runtime, plan["id"])  # Stripe's create_preview
    assert getattr(preview, "total", preview) == plan["plan"]["invoices"][0]["amount"]
    activated = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert activated.status_code == 200, activated.get_json()
    plan = world.plan_for("acme_platform")
    assert plan["status"] == "active", plan["status_reason"]
    client = world.stripe_client()
    through = date.fromisoformat(plan["plan"]["billed_through"])
    client.v1.test_helpers.test_clocks.advance(
        clock_id, params={"frozen_time": unix_at_midnight(through + timedelta(days=2))}
    )
    invoices = client.v1.invoices.list(
        params={"customer": plan["stripe_customer_id"], "limit": 100}
    ).data
    subscription_id = plan["stripe_subscription_id"]
    if subscription_id is None:  # a future start: the schedule made the subscription
        schedule = client.v1.subscription_schedules.retrieve(plan["stripe_schedule_id"])
        subscription_id = schedule.subscription
    subscription = client.v1.subscriptions.retrieve(str(subscription_id))
    assert subscription.status == "canceled"
    assert subscription.ended_at == unix_at_midnight(through)
    return plan, sorted(invoices, key=lambda i: (i.created, i.id))


def _assert_billed_as_stated(plan: dict[str, Any], invoices: list[Any]) -> None:
    stated = plan["plan"]["invoices"]
    assert [i.status for i in invoices] == ["open"] * len(invoices)
    assert [i.total for i in invoices] == [s["amount"] for s in stated]
    assert [date_from_unix(i.created) for i in invoices][1:] == [
        date.fromisoformat(s["date"]) for s in stated
    ][1:]
    assert sum(i.total for i in invoices) == plan["plan"]["total_amount"]


def test_monthly_started_today_with_a_setup_fee_and_a_line_discount(world: World) -> None:
    """12 months: setup 2,500.00; platform 1,199.99 less 10 % (1,079.991 a month, so a
    remainder); 25 seats at 45.00; quarterly support 1,500.00 billed 500.00 a month."""
    clock_id = _customer_on_a_test_clock(world)
    world.crm.update_line("acme_platform", 1, unit_price=Decimal("1199.99"),
                          discount_percent=Decimal("10"))  # fmt: skip
    plan, invoices = _bill_whole_contract(world, clock_id, {"confirmed": ["amount"]})
    assert plan["plan"]["total_amount"] == 250000 + 1295989 + 12 * 112500 + 12 * 50000
    assert len(invoices) == 12
    _assert_billed_as_stated(plan, invoices)
    discounted = [line for line in invoices[1].lines.data if line.discount_amounts]
    assert [d.amount for line in discounted for d in line.discount_amounts] == [12000]


def test_quarterly_for_a_year(world: World) -> None:
    clock_id = _customer_on_a_test_clock(world)
    plan, invoices = _bill_whole_contract(
        world, clock_id, {"interval": "month", "interval_count": 3}
    )
    assert plan["plan"]["total_amount"] == 250000 + 12 * (120000 + 112500 + 50000)
    assert len(invoices) == 4
    _assert_billed_as_stated(plan, invoices)


def test_annual_prices_over_two_years_billed_yearly(world: World) -> None:
    clock_id = _customer_on_a_test_clock(world)
    world.crm.update_deal("acme_platform", contract_months=24)
    for index, price in ((1, "12000.00"), (2, "540.00"), (3, "6000.00")):
        world.crm.update_line("acme_platform", index, pricing_schedule="annual",
                              unit_price=Decimal(price))  # fmt: skip
    plan, invoices = _bill_whole_contract(world, clock_id)
    assert (plan["plan"]["interval"], plan["plan"]["periods"]) == ("year", 2)
    assert plan["plan"]["total_amount"] == 250000 + 2 * (1200000 + 25 * 54000 + 600000)
    _assert_billed_as_stated(plan, invoices)


def test_an_annual_price_that_does_not_divide_billed_monthly_over_two_years(
    world: World,
) -> None:
    """Annual 1,000.00 x 10 billed monthly over 24 months is exactly 20,000.00: 83,333.3
    cents a month as ``unit_amount_decimal``, the remaining 0.08 on the first invoice."""
    clock_id = _customer_on_a_test_clock(world)
    world.crm.update_deal("acme_platform", contract_months=24)
    world.crm.update_line("acme_platform", 1, pricing_schedule="annual",
                          unit_price=Decimal("1000.00"), quantity=10)  # fmt: skip
    plan, invoices = _bill_whole_contract(world, clock_id, {"interval": "month"})
    assert plan["plan"]["total_amount"] == 250000 + 2000000 + 24 * (112500 + 50000)
    assert len(invoices) == 24
    _assert_billed_as_stated(plan, invoices)


def test_a_contract_that_started_in_the_past_bills_every_period(world: World) -> None:
    """Started 2 months and 10 days ago: the 2 past months are caught up on the first
    invoice with the current month (backdated to its start), then 9 more: 12 in all."""
    today = world.clock().date()
    start = add_months(today, -2) - timedelta(days=10)
    clock_id = _customer_on_a_test_clock(world)
    world.crm.update_deal("acme_platform", contract_start=start)
    plan, invoices = _bill_whole_contract(world, clock_id, {"confirmed": ["start_date"]})
    assert plan["plan"]["catch_up_periods"] == 2
    assert plan["plan"]["total_amount"] == 250000 + 12 * (120000 + 112500 + 50000)
    assert len(invoices) == 10
    _assert_billed_as_stated(plan, invoices)
    assert invoices[0].total == 250000 + 3 * (120000 + 112500 + 50000)


def test_a_contract_that_started_on_the_31st_renews_on_stripes_day_and_bills_12_months(
    world: World,
) -> None:
    """Started on a 31st, with the next boundary (the anchor) in a month of 30 days or less:
    Stripe renews on the anchor's day from then on; the plan states those dates and the
    12th period ends on Stripe's last boundary, in full."""
    while calendar.monthrange(world.clock().year, world.clock().month)[1] == 31:
        world.clock.advance(days=1)  # into a month of 30 days or less, after a 31-day one
    start = world.clock().date().replace(day=1) - timedelta(days=1)
    assert start.day == 31
    clock_id = _customer_on_a_test_clock(world)
    world.crm.update_deal("acme_platform", contract_start=start)
    plan, invoices = _bill_whole_contract(world, clock_id, {"confirmed": ["start_date"]})
    assert plan["plan"]["total_amount"] == 250000 + 12 * (120000 + 112500 + 50000)
    assert len(invoices) == 12 - plan["plan"]["catch_up_periods"]
    _assert_billed_as_stated(plan, invoices)


def test_a_future_start_bills_every_period_from_its_start(world: World) -> None:
    """Starts in 10 days: a subscription schedule whose phase runs from the start to the
    end of the 12th period."""
    clock_id = _customer_on_a_test_clock(world)
    world.crm.update_deal("acme_platform", contract_start=world.clock().date() + timedelta(days=10))
    plan, invoices = _bill_whole_contract(world, clock_id)
    assert plan["stripe_schedule_id"]
    assert plan["plan"]["total_amount"] == 250000 + 12 * (120000 + 112500 + 50000)
    assert len(invoices) == 12
    _assert_billed_as_stated(plan, invoices)
    assert date_from_unix(invoices[0].created) == date.fromisoformat(plan["plan"]["start_date"])


def test_jpy_annual_price_billed_monthly_over_three_years_to_the_yen(world: World) -> None:
    """JPY 100,000 a year billed monthly over 36 months: 8,333 a month and the remaining
    12 yen on the first invoice, 300,000 in all (not 299,988)."""
    clock_id = _customer_on_a_test_clock(world)
    world.salesforce_client().restful(  # an admin adds yen to the org's currencies
        "sobjects/CurrencyType", method="POST",
        json={"IsoCode": "JPY", "ConversionRate": 150, "DecimalPlaces": 0, "IsActive": True},
    )  # fmt: skip
    world.crm.update_deal("acme_platform", currency="JPY", contract_months=36)
    world.crm.update_line("acme_platform", 1, pricing_schedule="annual",
                          unit_price=Decimal("100000"))  # fmt: skip
    plan, invoices = _bill_whole_contract(world, clock_id, {"interval": "month"})
    assert plan["plan"]["currency"] == "jpy"
    # setup 2,500; platform 300,000; 25 seats at 45 and support 500 a month, 36 months
    assert plan["plan"]["total_amount"] == 2500 + 300000 + 36 * (25 * 45 + 500)
    assert len(invoices) == 36
    _assert_billed_as_stated(plan, invoices)
