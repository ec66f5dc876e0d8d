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
