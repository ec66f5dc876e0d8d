"""Later deals of a live customer change its one subscription (issue 15, item 1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from connector.domain.plan import add_months
from connector.domain.timestamps import unix_at_midnight
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


def test_an_upgrade_changes_the_live_subscription_instead_of_adding_one(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    customer = first["stripe_customer_id"]
    _close_expansion(world)
    plan = world.plan_for("acme_expansion")

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
    plan = world.plan_for("acme_expansion")
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


def test_the_previewed_proration_is_billed_on_the_next_invoice(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    _close_expansion(world)
    world.plan_for("acme_expansion")
    world.clock.advance(days=3)
    active = _activate(world, "acme_expansion")
    approved = active["amendment"]["preview"]
    assert approved["proration_amount"] != 0

    world.clock.advance(days=31, hours=3)
    world.stripe_sandbox.run_billing()
    subscription = world.stripe_client().v1.subscriptions.retrieve(first["stripe_subscription_id"])
    invoice = world.stripe_client().v1.invoices.retrieve(str(subscription.latest_invoice))
    assert invoice.amount_due == approved["amount_due"]
    assert sorted(line.amount for line in invoice.lines.data) == sorted(
        line["amount"] for line in approved["lines"]
    )


def test_a_renewal_extends_the_term_and_bills_the_new_prices_from_the_new_term(
    world: World,
) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    subscription_id = first["stripe_subscription_id"]
    today = world.clock().date()
    old_end, new_end = add_months(today, 12), add_months(today, 24)
    world.crm.update_deal("acme_expansion", closed=True, contract_start=old_end, contract_months=12)
    world.sync()
    plan = world.plan_for("acme_expansion")
    response = world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"change": "renewal"})
    assert response.status_code == 200, response.get_json()
    renewal = response.get_json()["amendment"]
    assert renewal["kind"] == "renewal"
    assert renewal["new_end"] == new_end.isoformat()
    assert renewal["needs_confirmation"] == []
    assert renewal["effective_date"] == (add_months(today, 11) + timedelta(days=1)).isoformat()

    scheduled = _activate(world, "acme_expansion")
    assert scheduled["status"] == "active"  # handed to Stripe: a phase of a schedule
    client = world.stripe_client()
    schedule = client.v1.subscription_schedules.retrieve(scheduled["stripe_schedule_id"])
    assert schedule.phases[1].start_date == unix_at_midnight(add_months(today, 11)) + 86_400
    assert client.v1.subscriptions.retrieve(subscription_id).cancel_at == unix_at_midnight(new_end)
    assert _items(world, subscription_id)[0] == ("Additional Seats", 4500, 25)

    world.clock.advance(days=(add_months(today, 11) - today).days + 1, hours=1)
    world.stripe_sandbox.run_billing()  # Stripe alone changes the items that day
    renewed = client.v1.subscriptions.retrieve(subscription_id)
    assert renewed.cancel_at == unix_at_midnight(new_end)
    assert _items(world, subscription_id) == [("Additional Seats", 4200, 40)]

    world.clock.advance(days=(old_end - world.clock().date()).days, hours=2)
    world.stripe_sandbox.run_billing()
    renewed = client.v1.subscriptions.retrieve(subscription_id)
    assert renewed.status in ("active", "past_due")  # not canceled: a year of unpaid invoices
    first_of_new_term = client.v1.invoices.retrieve(str(renewed.latest_invoice))
    assert first_of_new_term.amount_due == 40 * 4200
    assert [s.id for s in _live_subscriptions(world, first["stripe_customer_id"])] == [
        subscription_id
    ]


def test_a_cancellation_deal_ends_the_subscription_at_period_end(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    _close_expansion(world)
    plan = world.plan_for("acme_expansion")
    response = world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"change": "cancellation"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["amendment"]["cancel_at_period_end"] is True
    client = world.stripe_client()
    subscription = client.v1.subscriptions.retrieve(first["stripe_subscription_id"])
    assert subscription.cancel_at_period_end is False

    done = _activate(world, "acme_expansion")
    assert done["status"] == "active", done["status_reason"]
    subscription = client.v1.subscriptions.retrieve(first["stripe_subscription_id"])
    assert subscription.cancel_at_period_end is True
    assert subscription.status == "active"  # until the end of the period already billed
    assert _items(world, subscription.id) == [
        ("Additional Seats", 4500, 25),
        ("Platform Subscription", 120000, 1),
        ("Premium Support", 50000, 1),
    ]
