"""Scenarios moved down from ``tests/e2e/test_contract_totals.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import Decimal

from connector.domain.plan import add_months
from connector.domain.timestamps import date_from_unix
from tests.e2e.conftest import World
from tests.e2e.test_contract_totals import (
    _assert_billed_as_stated,
    _bill_whole_contract,
    _customer_on_a_test_clock,
)


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
