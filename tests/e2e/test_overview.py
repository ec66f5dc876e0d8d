"""The billing overview end to end: what /api/overview says equals what Stripe holds.

The expected figures are computed here from everything listed through the Stripe client,
with plain code written from the definitions in docs/billing-rules.md (not with
connector/domain/metrics.py), so the two implementations check each other.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from tests.e2e.conftest import World

PER_MONTH = {
    "day": Fraction(365, 12),
    "week": Fraction(52, 12),
    "month": 1,
    "year": Fraction(1, 12),
}


def _activate(world: World, deal_ref: str) -> dict[str, Any]:
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for(deal_ref)


def _half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def expected_from_stripe(world: World) -> dict[str, Any]:
    client = world.stripe_client()
    customers = list(client.v1.customers.list(params={"limit": 100}).auto_paging_iter())
    mrr: dict[str, int] = defaultdict(int)
    net: dict[str, int] = defaultdict(int)
    active = 0
    with_active: set[str] = set()
    for customer in customers:
        subs = client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"})
        for sub in subs.auto_paging_iter():
            if sub.status not in ("active", "past_due"):
                continue
            active += 1
            with_active.add(customer.id)
            amount: dict[str, Fraction] = defaultdict(Fraction)
            for item in sub["items"].data:
                price = item.price
                assert price.recurring is not None
                per_month = Fraction(PER_MONTH[price.recurring.interval])
                amount[price.currency] += (
                    Fraction(price.unit_amount or 0)
                    * (item.quantity or 1)
                    * per_month
                    / price.recurring.interval_count
                )
            for currency, value in amount.items():
                mrr[currency] += _half_up(value)
        invoices = client.v1.invoices.list(params={"customer": customer.id, "limit": 100})
        for invoice in invoices.auto_paging_iter():
            if invoice.status in ("open", "paid", "uncollectible"):
                net[invoice.currency] += invoice.total_excluding_tax or 0
        notes = client.v1.credit_notes.list(params={"customer": customer.id, "limit": 100})
        for note in notes.auto_paging_iter():
            if note.status != "void":
                net[note.currency] -= note.total_excluding_tax or note.total
    products = list(client.v1.products.list(params={"limit": 100}).auto_paging_iter())
    prices = list(client.v1.prices.list(params={"limit": 100}).auto_paging_iter())
    currencies = sorted(set(mrr) | set(net))
    return {
        "currency": {
            c: {
                "mrr": mrr.get(c, 0),
                "net_billing": net.get(c, 0),
                "average_billing_per_customer": _half_up(Fraction(net.get(c, 0), len(customers))),
            }
            for c in currencies
        },
        "active_subscriptions": active,
        "total_customers": len(customers),
        "customers_with_active_subscriptions": len(with_active),
        "total_products": sum(1 for p in products if p.active),
        "one_time_prices": sum(1 for p in prices if p.active and p.recurring is None),
        "recurring_prices": sum(1 for p in prices if p.active and p.recurring is not None),
    }


FIGURES = (
    "currency",
    "active_subscriptions",
    "total_customers",
    "customers_with_active_subscriptions",
    "total_products",
    "one_time_prices",
    "recurring_prices",
)


@pytest.fixture
def billed_world(world: World) -> World:
    """Two deals activated (USD now, EUR on a schedule two weeks out), then 40 days pass
    and the billing engine runs: the schedule starts, renewals are invoiced."""
    world.sync()
    _activate(world, "acme_platform")
    _activate(world, "globex_licence")
    world.clock.advance(days=40)
    world.stripe_sandbox.run_billing()
    world.sync()
    return world


def test_the_overview_matches_figures_computed_from_stripe(billed_world: World) -> None:
    world = billed_world
    world.api("GET", "/api/overview?refresh=1", role="finance")  # the catalogue mirror
    response = world.api("GET", "/api/overview", role="finance")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    expected = expected_from_stripe(world)
    assert {k: body[k] for k in FIGURES} == expected
    assert set(expected["currency"]) == {"usd", "eur"}  # side by side, never summed
    assert expected["active_subscriptions"] == 2


def test_each_accounts_figures_are_written_to_the_crm(billed_world: World) -> None:
    world = billed_world
    body = world.api("GET", "/api/overview", role="finance").get_json()
    acme = next(c for c in body["customers"] if c["crm_account_id"] == world.crm.ref("acme"))
    account = world.crm.account("acme")
    assert Decimal(str(account["mrr"])) * 100 == acme["mrr"]["usd"]
    assert Decimal(str(account["net_billing"])) * 100 == acme["net_billing"]["usd"]
    assert Decimal(str(account["open_balance"])) * 100 == acme["open_balance"]["usd"]
    assert acme["mrr"]["usd"] > 0


def _usd_net_billing(world: World) -> int:
    body = world.api("GET", "/api/overview", role="finance").get_json()
    return int(body["currency"]["usd"]["net_billing"])


def _open_invoice(world: World, deal_ref: str) -> Any:
    customer = world.plan_for(deal_ref)["stripe_customer_id"]
    invoices = world.stripe_client().v1.invoices.list(
        params={"customer": customer, "status": "open", "limit": 1}
    )
    return invoices.data[0]
