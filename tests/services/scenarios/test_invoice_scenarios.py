"""Scenarios moved down from ``tests/e2e/test_invoices.py``: the same bodies, run once on
the fake CRM adapter (``tests/services/scenarios/conftest.py``) instead of once per CRM
sandbox."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

from tests.e2e.conftest import World
from tests.e2e.test_invoices import (
    _activate,
    _assert_crm_matches_stripe,
    _crm_invoices,
    _crm_invoices_raw,
    _first_invoice,
    _money,
    _pay,
    _renew,
    _stripe_invoices,
    _world_with_subscriber,
)
from tests.support import FrozenClock
from tests.support.receiver import Receiver


def test_the_deal_shows_the_subscription_status_and_the_account_its_open_balance(
    world: World,
) -> None:
    plan = _activate(world)
    first = world.stripe_client().v1.invoices.retrieve(_first_invoice(world, plan))
    assert world.crm.deal("acme_platform")["subscription_status"] == "active"
    assert _money(world.crm.account("acme")["open_balance"]) == Decimal(first.amount_due) / 100
    by_hand = world.invoice_by_hand(plan["stripe_customer_id"], amount=75_000)
    world.sync()
    owed = Decimal(first.amount_due + by_hand.amount_due) / 100
    assert _money(world.crm.account("acme")["open_balance"]) == owed
    _pay(world, str(first.id))
    world.sync()
    assert _money(world.crm.account("acme")["open_balance"]) == Decimal("750.00")


def test_a_deleted_draft_is_marked_deleted_in_the_crm(world: World) -> None:
    plan = _activate(world)
    client = world.stripe_client()
    client.v1.invoice_items.create(
        params={"customer": plan["stripe_customer_id"], "amount": 10_000, "currency": "usd"}
    )
    draft = client.v1.invoices.create(
        params={"customer": plan["stripe_customer_id"], "pending_invoice_items_behavior": "include"}
    )
    world.sync()
    assert _crm_invoices(world)[str(draft.id)]["status"] == "draft"
    client.v1.invoices.delete(str(draft.id))
    world.sync()
    assert _crm_invoices(world)[str(draft.id)]["status"] == "deleted"


def test_an_existing_customers_invoices_appear_once_it_is_linked(world: World) -> None:
    existing = world.stripe_client().v1.customers.create(
        params={"email": "Pepper.Nguyen@stark-logistics.example", "name": "Stark AP"}
    )
    earlier = world.invoice_by_hand(str(existing.id), amount=42_000)
    world.sync()  # its webhooks arrive while no account is linked: ignored
    assert str(earlier.id) not in _crm_invoices(world)
    world.crm.update_deal("stark_pilot", closed=True, billing_contact="stark_contact")
    world.sync()
    assert world.plan_for("stark_pilot")["stripe_customer_id"] == existing.id
    record = _crm_invoices(world)[str(earlier.id)]
    assert record["account"] == world.crm.ref("stark")
    assert (record["status"], record["amount_due"]) == ("open", Decimal("420.00"))


def test_a_new_customer_is_not_searched_for_invoices(world: World) -> None:
    world.sync()
    customer = world.plan_for("acme_platform")["stripe_customer_id"]
    assert customer is not None
    assert world.stripe_count("GET", "/v1/invoices") == 0


def test_each_invoice_status_change_is_announced_once_in_order(
    database_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    world = _world_with_subscriber(database_url, clock, receiver.url)
    try:
        plan = _activate(world)
        customer = plan["stripe_customer_id"]
        first = _first_invoice(world, plan)
        _pay(world, first)
        world.sync()
        _renew(world)
        world.sync()
        by_hand = world.invoice_by_hand(customer)
        world.sync()
        world.stripe_client().v1.invoices.void_invoice(str(by_hand.id))
        world.sync()
        events = [json.loads(r.body) for r in receiver.requests]
        assert {e["account_id"] for e in events} == {world.crm.ref("acme")}
        chains: dict[str, list[tuple[str | None, str]]] = {}
        for event in events:
            data = event["data"]
            chains.setdefault(data["invoice_id"], []).append(
                (data["previous_status"], data["status"])
            )
        assert len({e["id"] for e in events}) == len(events)  # none sent twice
        for invoice in _stripe_invoices(world, customer):
            chain = chains[invoice.id]
            assert chain[0][0] is None
            for (_, before), (after_previous, after) in itertools.pairwise(chain):
                assert after_previous == before and after != before  # one per change, in order
            assert chain[-1][1] == invoice.status
        assert chains[first] == [(None, "open"), ("open", "paid")]
        assert chains[str(by_hand.id)] == [(None, "open"), ("open", "void")]
    finally:
        world.stop()


def test_missed_webhooks_are_repaired_by_reconciliation_without_duplicates(world: World) -> None:
    plan = _activate(world)
    customer = plan["stripe_customer_id"]
    first = _first_invoice(world, plan)
    client = world.stripe_client()
    (endpoint,) = client.v1.webhook_endpoints.list().data
    client.v1.webhook_endpoints.update(str(endpoint.id), params={"disabled": True})
    _pay(world, first)
    by_hand = world.invoice_by_hand(customer)
    assert world.stripe_sandbox.pending_webhooks() == 0  # Stripe has nothing to send us
    assert _crm_invoices(world)[first]["status"] == "open"

    world.sync()  # the reconcile job reads /v1/events since its cursor

    _assert_crm_matches_stripe(world, customer, {first: "acme_platform"})
    assert _crm_invoices(world)[str(by_hand.id)]["status"] == "open"
    world.sync()  # a second reconciliation finds nothing new and writes nothing twice
    assert len(world.crm.invoices()) == 2


def test_a_credit_note_on_a_paid_invoice_reaches_its_crm_record(world: World) -> None:
    plan = _activate(world)
    first = _first_invoice(world, plan)
    _pay(world, first)
    world.sync()
    world.stripe_client().v1.credit_notes.create(
        params={"invoice": first, "amount": 12_345, "credit_amount": 12_345}
    )
    world.sync()
    record = _crm_invoices_raw(world)[first]
    assert record["status"] == "paid"
    assert _money(record["amount_credited"]) == Decimal("123.45")
