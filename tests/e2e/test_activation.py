"""Account activation end to end: closed deal -> linked customer -> reviewed plan -> Stripe."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.domain.plan import add_months
from connector.services import activation
from connector.services.plans import approve
from tests.e2e.conftest import World


def _activate(world: World, deal_ref: str, role: str = "sales_rep") -> dict[str, Any]:
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate", role=role)
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for(deal_ref)


def _subscriptions(world: World, customer: str) -> list[Any]:
    page = world.stripe_client().v1.subscriptions.list(
        params={"customer": customer, "status": "all"}
    )
    return list(page.data)


def _as_new_business(world: World, deal_ref: str) -> dict[str, Any]:
    """The seed types this deal as an upgrade (a change to the live subscription); the rep
    says on the page it is new business, so it gets a subscription of its own."""
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/adjust", json={"change": "new"})
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


# --------------------------------------------------------------------------- linking


def test_a_closed_deal_gets_a_plan_in_review_and_a_new_linked_customer(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    assert plan["status"] == "in_review"
    customers = world.stripe_client().v1.customers.list(
        params={"email": "AP.Team@AcmeRobotics.example"}
    )
    assert [c.id for c in customers.data] == [plan["stripe_customer_id"]]
    customer = customers.data[0]
    assert customer.name == "Acme Robotics Inc."  # the company; the contact gets the invoices
    assert customer.metadata is not None
    assert customer.metadata["billing_contact_name"] == "Dana Whitfield"
    assert customer.address is not None and customer.address.country == "US"
    account = world.crm.account("acme")
    assert account["stripe_customer_id"] == plan["stripe_customer_id"]
    assert account["stripe_customer_url"].endswith(f"/customers/{plan['stripe_customer_id']}")
    deal = world.crm.deal("acme_platform")
    assert deal["plan_status"] == "Awaiting review"
    assert deal["plan_url"] == f"{world.app_url}/plans/{plan['id']}"


# --------------------------------------------------------------------------- plans


def test_a_recurring_plan_becomes_a_subscription_billed_by_hosted_invoice(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    assert plan["status"] == "active"
    subscription = world.stripe_client().v1.subscriptions.retrieve(plan["stripe_subscription_id"])
    assert subscription.collection_method == "send_invoice"
    assert subscription.days_until_due == 30
    assert subscription.payment_settings is not None
    assert sorted(subscription.payment_settings.payment_method_types or []) == [
        "card",
        "customer_balance",
        "us_bank_account",
    ]
    amounts = sorted(
        (item.price.unit_amount, item.quantity, item.price.recurring.interval)  # type: ignore[union-attr]
        for item in subscription["items"].data
    )
    # monthly platform 1,200.00, 25 seats at 45.00, quarterly support 1,500.00 -> 500.00/month
    assert amounts == [(4500, 25, "month"), (50000, 1, "month"), (120000, 1, "month")]
    start = world.clock().date()
    end = add_months(start, 12)
    assert subscription.cancel_at == int(
        datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp()
    )
    deal = world.crm.deal("acme_platform")
    assert deal["plan_status"] == "Active"
    assert deal["subscription_id"] == subscription.id


# --------------------------------------------------------------------------- finding deals


def test_closing_a_deal_in_the_crm_is_picked_up_by_the_poll(world: World) -> None:
    world.sync()
    world.crm.update_deal(
        "stark_pilot", closed=True, payment_terms="Net 30", billing_contact="stark_contact"
    )
    assert world.runtime is not None
    world.jobs.run_once(world.runtime)  # the poll alone: no push is delivered
    plan = world.plan_for("stark_pilot")
    assert plan["status"] == "in_review"
    assert plan["plan"]["currency"] == "eur"


def test_closing_a_deal_is_pushed_by_outbound_message(world: World) -> None:
    world.sync()
    world.crm.update_deal("stark_pilot", closed=True)
    assert world.crm.deliver_pushes() >= 1
    assert world.runtime is not None
    from connector.jobs.schedule import process_crm_inbox

    process_crm_inbox(world.runtime)  # no poll: the push alone
    plan = world.plan_for("stark_pilot")
    assert plan["deal_id"] == world.crm.ref("stark_pilot")


def test_a_forged_outbound_message_is_refused(world: World) -> None:
    response = world.api("POST", "/webhooks/crm?token=wrong", data=b"<x/>", content_type="text/xml")
    assert response.status_code == 401


# --------------------------------------------------------------------------- bad input


@pytest.mark.crm(
    "salesforce",
    reason="a Dataverse date column cannot hold text at all; in Salesforce orgs contract "
    "dates often live in text fields, and the sandbox stores what the org holds",
)
def test_a_contract_start_that_is_not_a_date_blocks_the_plan(world: World) -> None:
    world.crm.force_deal_values("umbrella_support", contract_start="next spring")
    world.sync()
    plan = world.plan_for("umbrella_support")
    assert plan["status"] == "invalid"
    assert any(p["field"] == "contract_start" for p in plan["problems"])
    assert "contract_start" in world.crm.deal("umbrella_support")["plan_summary"]
    assert world.stripe_count("POST", "/v1/subscriptions") == 0


# --------------------------------------------------------------------------- faults


@pytest.mark.postgresql(reason="the plan row lock (FOR UPDATE) decides which activation runs")
def test_two_activations_at_once_create_one_set_of_objects(world: World) -> None:
    world.sync()
    assert world.runtime is not None
    runtime = world.runtime
    plan = world.plan_for("acme_platform")
    approve(runtime, plan["id"], actor="test")
    barrier = threading.Barrier(2)
    results: list[str] = []

    def run() -> None:
        barrier.wait()
        results.append(activation.activate(runtime, plan["id"]).status)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.sync()
    plan = world.plan_for("acme_platform")
    assert plan["status"] == "active"
    assert len(_subscriptions(world, plan["stripe_customer_id"])) == 1
    assert world.stripe_count("POST", "/v1/subscriptions") == 1


def test_a_crm_outage_delays_write_back_without_losing_it(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    world.crm.set_down(True)
    world.api("POST", f"/api/plans/{plan['id']}/activate")
    world.sync()
    world.crm.set_down(False)
    world.clock.advance(hours=1)
    world.sync()
    assert world.crm.deal("acme_platform")["plan_status"] == "Active"
