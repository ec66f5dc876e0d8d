"""Subscription lifecycle end to end: list, cancel, reactivate, bill again, archive, change
prices (through the API and the catalogue page's forms)."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import World


def _activate(world: World, deal_ref: str) -> dict[str, Any]:
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for(deal_ref)


def _groups(world: World, customer_id: str) -> dict[str, Any]:
    response = world.api("GET", f"/api/customers/{customer_id}/subscriptions", role="finance")
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def _audit_actions(world: World) -> list[str]:
    assert world.runtime is not None
    from connector.store.models import AuditEntry

    with world.runtime.db.session() as session:
        return [e.action for e in session.query(AuditEntry).order_by(AuditEntry.id)]


def test_cancel_at_period_end_then_now(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    sub_id = plan["stripe_subscription_id"]
    later = world.api("POST", f"/api/subscriptions/{sub_id}/cancel", role="finance",
                      json={"at_period_end": True})  # fmt: skip
    assert later.status_code == 200, later.get_json()
    assert world.stripe_client().v1.subscriptions.retrieve(sub_id).cancel_at_period_end
    now = world.api("POST", f"/api/subscriptions/{sub_id}/cancel", role="finance")
    assert now.status_code == 200, now.get_json()
    world.sync()
    assert world.stripe_client().v1.subscriptions.retrieve(sub_id).status == "canceled"
    groups = _groups(world, plan["stripe_customer_id"])
    assert [s["id"] for s in groups["inactive"]] == [sub_id]
    assert {"subscription.cancel_at_period_end", "subscription.cancel"} <= set(
        _audit_actions(world)
    )
