"""Scenarios moved down from ``tests/e2e/test_amendments.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from connector.billing.gateway import StripeGateway, StripeUnavailable
from connector.domain.timestamps import date_from_unix, unix_at_midnight
from connector.services import activation
from connector.services import amendment as amendments
from connector.services.plans import approve
from tests.e2e.conftest import World
from tests.e2e.test_amendments import _activate, _close_expansion, _items
from tests.e2e.test_review_page import Rep


def test_activating_an_amendment_twice_updates_the_subscription_once(world: World) -> None:
    world.sync()
    _activate(world, "acme_platform")
    _close_expansion(world)
    world.plan_for("acme_expansion")
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
    plan = world.plan_for("acme_expansion")
    assert plan["kind"] == "upgrade"
    assert plan["amendment"] is None
    assert "no live subscription" in plan["amendment_notice"]


def test_a_change_starting_later_is_made_by_stripe_on_its_day(world: World) -> None:
    """The change is a phase of the subscription's schedule in Stripe: on its day Stripe
    changes the items with no dealbridge job running, and the next invoice is the one
    previewed at approval."""
    world.sync()
    first = _activate(world, "acme_platform")
    sub_id = first["stripe_subscription_id"]
    start = world.clock().date() + timedelta(days=10)
    world.crm.update_deal("acme_expansion", closed=True, contract_start=start)
    world.sync()
    world.plan_for("acme_expansion")
    plan = _activate(world, "acme_expansion")
    assert plan["status"] == "active"
    assert start.isoformat() in plan["status_reason"]
    phase = plan["amendment"]["schedule_phase"]
    assert phase == {"schedule_id": plan["stripe_schedule_id"], "start_date": start.isoformat()}
    previewed = plan["amendment"]["preview"]
    assert previewed["proration_amount"] != 0
    page = Rep(world, "acme_expansion").html
    assert phase["schedule_id"] in page
    assert f"a phase starting {start.isoformat()} (00:00 UTC) makes the change" in page
    client = world.stripe_client()
    schedule = client.v1.subscription_schedules.retrieve(phase["schedule_id"])
    assert schedule.subscription == sub_id
    assert schedule.phases[0].end_date == unix_at_midnight(start)
    assert schedule.phases[1].start_date == unix_at_midnight(start)
    # The contract still ends when it did: the schedule cancels the subscription then.
    assert (schedule.end_behavior, schedule.phases[1].end_date) == (
        "cancel",
        client.v1.subscriptions.retrieve(sub_id).cancel_at,
    )
    assert _items(world, sub_id)[0] == ("Additional Seats", 4500, 25)
    # A change made now would clash with the one still to come: refused, nothing released.
    assert world.runtime is not None
    with pytest.raises(amendments.SubscriptionMoved, match="already has a change scheduled"):
        amendments.release_schedule(world.runtime, sub_id, "dealbridge:test:release")

    world.clock.advance(days=10, hours=1)
    world.stripe_sandbox.run_billing()  # Stripe alone: no dealbridge job runs
    assert _items(world, sub_id)[0] == ("Additional Seats", 4200, 40)

    world.clock.advance(days=31, hours=3)
    world.stripe_sandbox.run_billing()
    invoice = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub_id).latest_invoice)
    )
    assert invoice.amount_due == previewed["amount_due"]
    assert sorted(line.amount for line in invoice.lines.data) == sorted(
        line["amount"] for line in previewed["lines"]
    )

    # Once it is made, a change made now first releases the schedule, keeping the end.
    ends = client.v1.subscriptions.retrieve(sub_id).cancel_at
    released = amendments.release_schedule(world.runtime, sub_id, "dealbridge:test:release")
    assert released == phase["schedule_id"]
    after = client.v1.subscriptions.retrieve(sub_id)
    assert (after.schedule, after.cancel_at) == (None, ends)


def test_a_change_after_the_current_period_shows_no_preview_and_is_made_on_its_day(
    world: World,
) -> None:
    world.sync()
    sub_id = _activate(world, "acme_platform")["stripe_subscription_id"]
    start = world.clock().date() + timedelta(days=45)  # the monthly period ends before
    world.crm.update_deal("acme_expansion", closed=True, contract_start=start)
    world.sync()
    world.plan_for("acme_expansion")
    plan = _activate(world, "acme_expansion")
    assert plan["status"] == "active"
    assert plan["amendment"]["preview"] is None
    assert any("No Stripe preview of the next invoice" in line for line in plan["summary"])

    world.clock.advance(days=45, hours=1)
    world.stripe_sandbox.run_billing()
    assert _items(world, sub_id)[0] == ("Additional Seats", 4200, 40)


def _change_at_period_end_of_a_scheduled_subscription(world: World) -> tuple[str, int]:
    """acme_platform active and put on a schedule in Stripe (by a person), and the expansion
    closed to start the day its current period ends: (subscription, that period end)."""
    world.sync()
    sub_id = _activate(world, "acme_platform")["stripe_subscription_id"]
    client = world.stripe_client()
    period_end = client.v1.subscriptions.retrieve(sub_id)["items"].data[0].current_period_end
    client.v1.subscription_schedules.create(params={"from_subscription": sub_id})
    start = date_from_unix(period_end)
    assert start is not None
    world.crm.update_deal("acme_expansion", closed=True, contract_start=start)
    world.sync()
    return sub_id, int(period_end)


def test_a_change_from_the_period_end_shows_the_invoice_its_schedule_phase_makes(
    world: World,
) -> None:
    """A subscription a schedule already manages (here, one a person made in Stripe) changed
    from the end of its current period: Stripe previews the schedule's next invoice with the
    phases dealbridge will send, and that is the invoice Stripe makes at the phase change."""
    sub_id, period_end = _change_at_period_end_of_a_scheduled_subscription(world)
    client = world.stripe_client()
    plan = _activate(world, "acme_expansion")
    assert plan["status"] == "active"
    previewed = plan["amendment"]["preview"]
    assert previewed is not None and "error" not in previewed
    # The new period in full at the new items: 40 seats at 42.00 and the platform fee.
    seats = [line for line in previewed["lines"] if "Additional Seats" in line["description"]]
    assert [(line["amount"], line["proration"]) for line in seats] == [(40 * 4200, False)]
    assert not any("No Stripe preview" in line for line in plan["summary"])
    assert any("Next invoice (Stripe's preview)" in line for line in plan["summary"])
    assert 'id="amendment-amount-due"' in Rep(world, "acme_expansion").html

    world.clock.advance(seconds=period_end - int(world.clock().timestamp()) + 3600)
    world.stripe_sandbox.run_billing()  # Stripe alone makes the change and its invoice
    invoice = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub_id).latest_invoice)
    )
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.amount_due == previewed["amount_due"] > 0
    assert sorted((line.amount, line.description) for line in invoice.lines.data) == sorted(
        (line["amount"], line["description"]) for line in previewed["lines"]
    )


def test_a_schedule_preview_stripe_refuses_falls_back_to_no_preview(world: World) -> None:
    """Stripe refusing the schedule preview leaves the change as it was before such previews:
    approvable, with no preview, and the page saying so."""
    _change_at_period_end_of_a_scheduled_subscription(world)
    world.stripe_sandbox.inject_faults("/v1/invoices/create_preview", [400] * 5)
    plan = _activate(world, "acme_expansion")
    assert plan["status"] == "active"
    assert plan["amendment"]["preview"] is None
    assert any("No Stripe preview of the next invoice" in line for line in plan["summary"])


def test_a_change_starting_later_is_scheduled_once_when_a_run_is_lost(world: World) -> None:
    """The schedule step and the phase step each resume: a run that lost Stripe's answer to
    the phase update is followed by one that finds the phase there and sends nothing."""
    world.sync()
    first = _activate(world, "acme_platform")
    start = world.clock().date() + timedelta(days=10)
    world.crm.update_deal("acme_expansion", closed=True, contract_start=start)
    world.sync()
    plan = world.plan_for("acme_expansion")
    assert world.runtime is not None
    approve(world.runtime, plan["id"], actor="rep")
    real = world.runtime.stripe
    lost: list[str] = []

    class LosesTheFirstAnswer(StripeGateway):
        def update_subscription_schedule(self, schedule_id: str, params: Any, key: str) -> Any:
            updated = real.update_subscription_schedule(schedule_id, params, key)
            if not lost:
                lost.append(updated.id)
                raise StripeUnavailable("Stripe unavailable: read timed out")
            return updated

    world.runtime.__dict__["stripe"] = LosesTheFirstAnswer(real.client, dashboard_url="x")
    assert activation.activate(world.runtime, plan["id"]).status == "approved"
    world.clock.advance(hours=1)
    assert activation.activate(world.runtime, plan["id"]).status == "active"
    assert world.stripe_count("POST", "/v1/subscription_schedules") == 1
    assert world.stripe_count("POST", "/v1/subscription_schedules/:id") == 1
    schedule = world.stripe_client().v1.subscription_schedules.retrieve(
        world.plan_for("acme_expansion")["stripe_schedule_id"]
    )
    assert schedule.subscription == first["stripe_subscription_id"]
    assert len(schedule.phases) == 2


def test_a_subscription_changed_since_the_review_is_not_amended(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    _close_expansion(world)
    plan = world.plan_for("acme_expansion")
    assert world.runtime is not None
    approve(world.runtime, plan["id"], actor="rep")
    client = world.stripe_client()
    subscription = client.v1.subscriptions.retrieve(first["stripe_subscription_id"])
    seats = next(i for i in subscription["items"].data if i.quantity == 25)
    client.v1.subscriptions.update(
        subscription.id, params={"items": [{"id": seats.id, "quantity": 26}]}
    )  # someone in the Stripe dashboard
    updates = world.stripe_count("POST", "/v1/subscriptions/:id")

    activation.activate(world.runtime, plan["id"])
    failed = world.plan_for("acme_expansion")
    assert failed["status"] == "failed"
    assert "changed since this amendment was reviewed" in failed["status_reason"]
    assert world.stripe_count("POST", "/v1/subscriptions/:id") == updates


def test_the_page_shows_the_change_and_proration_can_be_chosen(world: World) -> None:
    world.sync()
    _activate(world, "acme_platform")
    _close_expansion(world)
    plan = world.plan_for("acme_expansion")
    page = world.api("GET", f"/plans/{plan['id']}").get_data(as_text=True)
    assert "Change to subscription" in page
    assert 'id="amendment-amount-due"' in page
    assert 'name="proration_behavior"' in page

    chosen = world.api(
        "POST",
        f"/api/plans/{plan['id']}/adjust",
        json={"change": "upgrade", "proration_behavior": "always_invoice"},
    )
    assert chosen.status_code == 200, chosen.get_json()
    amendment = chosen.get_json()["amendment"]
    assert amendment["proration_behavior"] == "always_invoice"
    # Invoiced at once: the preview is the proration invoice alone, not the next renewal.
    assert all(line["proration"] for line in amendment["preview"]["lines"])
    refused = world.api(
        "POST", f"/api/plans/{plan['id']}/adjust", json={"proration_behavior": "sometimes"}
    )
    assert refused.status_code == 422


def test_an_amendment_stripe_cannot_preview_is_not_approved(world: World) -> None:
    world.sync()
    first = _activate(world, "acme_platform")
    _close_expansion(world)
    plan = world.plan_for("acme_expansion")
    world.stripe_sandbox.inject_faults("/v1/invoices/create_preview", [400] * 3)
    updates = world.stripe_count("POST", "/v1/subscriptions/:id")

    refused = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert refused.status_code == 409
    assert "Stripe could not preview the change" in refused.get_json()["error"]["message"]
    assert world.plan_for("acme_expansion")["status"] == "in_review"
    assert world.stripe_count("POST", "/v1/subscriptions/:id") == updates
    assert _items(world, first["stripe_subscription_id"])[0] == ("Additional Seats", 4500, 25)
