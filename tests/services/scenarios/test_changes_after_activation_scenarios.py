"""Scenarios moved down from ``tests/e2e/test_changes_after_activation.py``:
the same bodies, run once on the fake CRM adapter
(``tests/services/scenarios/conftest.py``) instead of once per CRM sandbox."""

from __future__ import annotations

from tests.e2e.conftest import World
from tests.e2e.test_changes_after_activation import _activate, _seats_to_30, _stripe_items


def test_ignoring_the_change_keeps_stripe_and_clears_the_flag(world: World) -> None:
    world.sync()
    active = _activate(world, "acme_platform")
    before = _stripe_items(world, active["stripe_subscription_id"])
    plan = _seats_to_30(world)

    response = world.api("POST", f"/api/plans/{plan['id']}/changed/ignore")
    assert response.status_code == 200, response.get_json()
    world.sync()
    assert world.plan_for("acme_platform")["changed_after_activation"] is None
    assert world.crm.deal("acme_platform")["plan_status"] == "Active"
    world.api("POST", f"/api/deals/{world.crm.ref('acme_platform')}/plan")  # read again
    assert world.plan_for("acme_platform")["changed_after_activation"] is None
    assert _stripe_items(world, active["stripe_subscription_id"]) == before


def test_amending_after_the_change_updates_the_same_subscription(world: World) -> None:
    world.sync()
    active = _activate(world, "acme_platform")
    plan = _seats_to_30(world)

    response = world.api("POST", f"/api/plans/{plan['id']}/changed/amend")
    assert response.status_code == 200, response.get_json()
    review = response.get_json()
    assert review["status"] == "in_review"
    seats = [c for c in review["amendment"]["changes"] if c["action"] != "unchanged"]
    assert [(c["action"], c["quantity_before"], c["quantity_after"]) for c in seats] == [
        ("quantity", 25, 30)
    ]
    assert "line_items" in review["amendment"]["needs_confirmation"]  # setup fee left out

    amended = _activate(world, "acme_platform")
    assert amended["status"] == "active", amended["status_reason"]
    assert amended["stripe_subscription_id"] == active["stripe_subscription_id"]
    assert _stripe_items(world, active["stripe_subscription_id"]) == [
        (4500, 30),
        (50000, 1),
        (120000, 1),
    ]
    subscriptions = world.stripe_client().v1.subscriptions.list(
        params={"customer": active["stripe_customer_id"], "status": "all"}
    )
    assert [s.id for s in subscriptions.data] == [active["stripe_subscription_id"]]
