"""Later deals of a live customer change its one subscription (issue 15, item 1)."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import World


def _activate(world: World, deal_ref: str) -> dict[str, Any]:
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for(deal_ref)


def _live_subscriptions(world: World, customer: str) -> list[Any]:
    page = world.stripe_client().v1.subscriptions.list(
        params={"customer": customer, "status": "all"}
    )
    return [s for s in page.data if s.status in ("active", "past_due", "trialing", "unpaid")]


def _items(world: World, subscription_id: str) -> list[tuple[str, int, int]]:
    client = world.stripe_client()
    subscription = client.v1.subscriptions.retrieve(subscription_id)
    out = []
    for item in subscription["items"].data:
        product = client.v1.products.retrieve(str(item.price.product))
        out.append((product.name, int(item.price.unit_amount or 0), int(item.quantity or 0)))
    return sorted(out)


def _close_expansion(world: World, **changes: Any) -> None:
    """The rep wins the seat expansion (typed "Existing Customer - Upgrade" in the seed)."""
    world.crm.update_deal(
        "acme_expansion", closed=True, contract_start=world.clock().date(), **changes
    )
    world.sync()


def _upgrade_on_dynamics(world: World, plan: dict[str, Any]) -> dict[str, Any]:
    """Dynamics has no standard deal type: the rep says it is an upgrade on the page."""
    if world.crm.kind != "dynamics":
        return plan
    response = world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"change": "upgrade"})
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def test_an_upgrade_changes_the_live_subscription_instead_of_adding_one(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    customer = first["stripe_customer_id"]
    _close_expansion(world)
    plan = _upgrade_on_dynamics(world, world.plan_for("acme_expansion"))

    assert plan["kind"] == "upgrade"
    amendment = plan["amendment"]
    assert amendment["subscription_id"] == first["stripe_subscription_id"]
    seats = [c for c in amendment["changes"] if c["product"] == "Additional Seats"]
    assert [(c["action"], c["quantity_before"], c["quantity_after"]) for c in seats] == [
        ("price", 25, 40)
    ]
    assert (seats[0]["unit_amount_before"], seats[0]["unit_amount_after"]) == (4500, 4200)
    assert {c["action"] for c in amendment["changes"] if c["product"] != "Additional Seats"} == {
        "unchanged"
    }
    assert amendment["recurring_before"] == 120000 + 25 * 4500 + 50000
    assert amendment["recurring_after"] == 120000 + 40 * 4200 + 50000
    assert amendment["proration_behavior"] == "create_prorations"
    preview = amendment["preview"]
    assert preview is not None and "error" not in preview, preview
    assert any(line["proration"] for line in preview["lines"])

    active = _activate(world, "acme_expansion")
    assert active["status"] == "active", active["status_reason"]
    assert active["stripe_subscription_id"] == first["stripe_subscription_id"]
    assert [s.id for s in _live_subscriptions(world, customer)] == [first["stripe_subscription_id"]]
    assert _items(world, first["stripe_subscription_id"]) == [
        ("Additional Seats", 4200, 40),
        ("Platform Subscription", 120000, 1),
        ("Premium Support", 50000, 1),
    ]
    approved = active["amendment"]["preview"]
    pending = world.stripe_client().v1.invoices.create_preview(
        params={"customer": customer, "subscription": first["stripe_subscription_id"]}
    )
    assert pending.amount_due == approved["amount_due"]
    assert world.crm.deal("acme_expansion")["plan_status"] == "Active"
    assert world.crm.deal("acme_expansion")["subscription_id"] == first["stripe_subscription_id"]


def test_a_seat_increase_changes_the_quantity_of_the_same_item(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    world.crm.update_line("acme_expansion", 0, unit_price=45, quantity=30)
    _close_expansion(world)
    plan = _upgrade_on_dynamics(world, world.plan_for("acme_expansion"))
    seats = [c for c in plan["amendment"]["changes"] if c["product"] == "Additional Seats"]
    assert [(c["action"], c["quantity_after"]) for c in seats] == [("quantity", 30)]
    item_before = {
        i.price.unit_amount: i.id
        for i in world.stripe_client()
        .v1.subscriptions.retrieve(first["stripe_subscription_id"])["items"]
        .data
    }[4500]

    _activate(world, "acme_expansion")
    subscription = world.stripe_client().v1.subscriptions.retrieve(first["stripe_subscription_id"])
    seat_items = [i for i in subscription["items"].data if i.price.unit_amount == 4500]
    assert [(i.id, i.quantity) for i in seat_items] == [(item_before, 30)]


def test_activating_an_amendment_twice_updates_the_subscription_once(world: World) -> None:
    world.sync()
    _activate(world, "acme_platform")
    _close_expansion(world)
    _upgrade_on_dynamics(world, world.plan_for("acme_expansion"))
    updates_before = world.stripe_count("POST", "/v1/subscriptions/:id")
    plan = world.plan_for("acme_expansion")
    first = world.api("POST", f"/api/plans/{plan['id']}/activate")
    second = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert first.status_code == 200
    assert second.status_code == 409
    world.sync()
    world.sync()
    assert world.stripe_count("POST", "/v1/subscriptions/:id") == updates_before + 1


def test_an_upgrade_without_a_live_subscription_starts_a_new_one(world: World) -> None:
    world.sync()
    _close_expansion(world)
    plan = _upgrade_on_dynamics(world, world.plan_for("acme_expansion"))
    assert plan["kind"] == "upgrade"
    assert plan["amendment"] is None
    assert "no live subscription" in plan["amendment_notice"]
