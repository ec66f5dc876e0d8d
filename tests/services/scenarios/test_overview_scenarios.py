"""Scenarios moved down from ``tests/e2e/test_overview.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

from decimal import Decimal

from tests.e2e.conftest import World
from tests.e2e.test_overview import (
    FIGURES,
    _book,
    _open_invoice,
    _usd_net_billing,
    expected_from_stripe,
)


def test_a_refresh_recomputes_from_stripe_and_agrees(billed_world: World) -> None:
    world = billed_world
    response = world.api("GET", "/api/overview?refresh=1", role="finance")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert {k: body[k] for k in FIGURES} == expected_from_stripe(world)
    assert "credit notes" in body["refreshed"]


def test_the_figures_are_served_from_the_mirrors_without_calling_stripe(
    billed_world: World,
) -> None:
    world = billed_world
    world.stripe_sandbox.reset_request_counts()
    response = world.api("GET", "/api/overview", role="finance")
    assert response.status_code == 200
    assert world.stripe_sandbox.request_counts() == {}


def test_the_trend_shows_twelve_months_ending_with_this_one(billed_world: World) -> None:
    world = billed_world
    trend = world.api("GET", "/api/overview", role="finance").get_json()["mrr_trend"]
    assert len(trend) == 12
    today = world.clock().date()
    assert trend[-1]["month"] == f"{today.year:04d}-{today.month:02d}"
    expected = expected_from_stripe(world)
    assert trend[-1]["mrr"] == {c: f["mrr"] for c, f in expected["currency"].items() if f["mrr"]}


def test_the_page_lists_customers_sorted_and_filtered(billed_world: World) -> None:
    world = billed_world
    page = world.api("GET", "/overview?sort=mrr&dir=desc", role="finance")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<svg" in html and "Net billing" in html
    acme, globex = world.crm.ref("acme"), world.crm.ref("globex")
    assert acme in html and globex in html
    filtered = world.api("GET", "/overview?q=globex", role="finance").get_data(as_text=True)
    assert globex in filtered and acme not in filtered


def test_a_credit_note_lowers_net_billing_by_webhook_without_a_refresh(
    billed_world: World,
) -> None:
    world = billed_world
    before = _usd_net_billing(world)
    invoice = _open_invoice(world, "acme_platform")
    world.stripe_client().v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 12_500, "reason": "order_change"}
    )
    world.sync()
    assert _usd_net_billing(world) == before - 12_500
    body = world.api("GET", "/api/overview", role="finance").get_json()
    assert body["currency"] == expected_from_stripe(world)["currency"]


def test_a_voided_credit_note_no_longer_counts(billed_world: World) -> None:
    world = billed_world
    before = _usd_net_billing(world)
    invoice = _open_invoice(world, "acme_platform")
    client = world.stripe_client()
    note = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 12_500})
    world.sync()
    client.v1.credit_notes.void_credit_note(str(note.id))
    world.sync()
    assert _usd_net_billing(world) == before


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


def test_the_overview_of_a_whole_book_equals_a_recomputation_from_stripe(
    billed_world: World,
) -> None:
    world = billed_world
    refs = _book(world)
    # The customer's discount reached the mirror by its webhook, before any refresh.
    by_webhook = world.api("GET", "/api/overview", role="finance").get_json()
    assert by_webhook["currency"]["jpy"]["mrr"] == 30000
    refreshed = world.api("GET", "/api/overview?refresh=1", role="finance")
    assert refreshed.status_code == 200, refreshed.get_json()
    body = world.api("GET", "/api/overview", role="finance").get_json()
    expected = expected_from_stripe(world)
    assert {k: body[k] for k in FIGURES} == expected
    assert set(expected["currency"]) == {"eur", "jpy", "usd"}
    assert expected["currency"]["jpy"]["mrr"] == 30000  # 33,333 less the customer's 10 %
    assert expected["currency"]["jpy"]["open_balance"] == 33333  # uncollectible is still owed
    assert body["mrr_trend"][-1]["mrr"] == {
        c: f["mrr"] for c, f in expected["currency"].items() if f["mrr"]
    }
    stark = next(c for c in body["customers"] if c["crm_account_id"] == refs["stark"])
    assert stark["crm_note"] == "figures are in JPY, the account is in EUR: not written to the CRM"
    assert world.crm.account("stark")["mrr"] in (None, 0)  # never EUR 33,333.00
    acme = next(c for c in body["customers"] if c["crm_account_id"] == world.crm.ref("acme"))
    assert Decimal(str(world.crm.account("acme")["mrr"])) * 100 == acme["mrr"]["usd"]


def test_a_refund_lowers_net_billing_by_webhook_without_a_refresh(billed_world: World) -> None:
    world = billed_world
    client = world.stripe_client()
    invoice = _open_invoice(world, "acme_platform")
    client.v1.invoices.pay(str(invoice.id), params={"payment_method": "pm_card_visa"})
    world.sync()
    before = _usd_net_billing(world)
    customer = world.plan_for("acme_platform")["stripe_customer_id"]
    charge = client.v1.charges.list(params={"customer": customer, "limit": 1}).data[0]
    client.v1.refunds.create(params={"charge": charge.id, "amount": 5_000})
    world.sync()
    assert _usd_net_billing(world) == before - 5_000
    body = world.api("GET", "/api/overview", role="finance").get_json()
    assert body["currency"] == expected_from_stripe(world)["currency"]
