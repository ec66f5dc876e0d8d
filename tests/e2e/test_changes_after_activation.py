"""A deal edited or lost after activation is flagged; Stripe waits for a person (issue 15, 3)."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import World


def _activate(world: World, deal_ref: str) -> dict[str, Any]:
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for(deal_ref)


def _seats_to_30(world: World) -> dict[str, Any]:
    """The rep edits the won deal: 25 seats become 30; the CRM's refresh button reads it."""
    world.crm.update_line("acme_platform", 2, quantity=30)
    response = world.api("POST", f"/api/deals/{world.crm.ref('acme_platform')}/plan")
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for("acme_platform")


def _stripe_items(world: World, subscription_id: str) -> list[tuple[int, int]]:
    subscription = world.stripe_client().v1.subscriptions.retrieve(subscription_id)
    return sorted(
        (int(i.price.unit_amount or 0), int(i.quantity or 0)) for i in subscription["items"].data
    )


def test_an_edited_deal_is_flagged_in_the_plan_the_page_and_the_crm_and_stripe_waits(
    world: World,
) -> None:
    world.sync()
    active = _activate(world, "acme_platform")
    before = _stripe_items(world, active["stripe_subscription_id"])
    updates = world.stripe_count("POST", "/v1/subscriptions/:id")

    plan = _seats_to_30(world)
    assert plan["status"] == "active"
    changed = plan["changed_after_activation"]
    assert changed["differences"] == [
        {"field": "line_items[Additional Seats].quantity", "before": 25, "after": 30}
    ]
    assert changed["actions"] == ["amend", "cancel", "ignore"]
    deal = world.crm.deal("acme_platform")
    assert deal["plan_status"] == "Changed after activation"
    assert "line_items[Additional Seats].quantity: 25 → 30" in deal["plan_summary"]
    page = world.api("GET", f"/plans/{plan['id']}").get_data(as_text=True)
    assert "Changed after activation" in page and "25 → 30" in page
    assert _stripe_items(world, active["stripe_subscription_id"]) == before
    assert world.stripe_count("POST", "/v1/subscriptions/:id") == updates


def test_a_lost_deal_is_flagged_by_the_poll_and_finance_cancels_at_period_end(
    world: World,
) -> None:
    world.sync()
    active = _activate(world, "acme_platform")
    world.crm.update_deal("acme_platform", closed=False)
    world.sync()

    plan = world.plan_for("acme_platform")
    assert plan["status"] == "active"
    assert plan["changed_after_activation"]["closed"] is False
    assert plan["changed_after_activation"]["differences"][0]["field"] == "closed"
    assert world.crm.deal("acme_platform")["plan_status"] == "Changed after activation"
    subscription_id = active["stripe_subscription_id"]
    client = world.stripe_client()
    assert client.v1.subscriptions.retrieve(subscription_id).cancel_at_period_end is False

    refused = world.api("POST", f"/api/plans/{plan['id']}/changed/cancel", role="sales_rep")
    assert refused.status_code == 403
    canceled = world.api("POST", f"/api/plans/{plan['id']}/changed/cancel", role="finance")
    assert canceled.status_code == 200, canceled.get_json()
    assert client.v1.subscriptions.retrieve(subscription_id).cancel_at_period_end is True
    assert canceled.get_json()["changed_after_activation"] is None
