"""Whole contracts on Stripe test clocks: what Stripe bills is what the plan states.

Each scenario activates a plan for a customer on a test clock, advances the clock past the
end of the last billed period, and compares Stripe's invoices with the plan: the same
amounts on the same schedule, and their sum equal to the stated contract total to the minor
unit. The world clock stands at 09:00 UTC, so activation happens mid-day, as in life.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

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
