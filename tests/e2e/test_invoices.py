"""Invoice status back into the CRM, end to end: nothing lost, nothing doubled.

Only the world and its CRM driver: Stripe is driven through its API (and its billing clock),
the CRM is read through canonical invoice fields, so the scenarios run against any CRM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from connector.secrets import Secret
from tests.e2e.conftest import World, make_world
from tests.support import FrozenClock
from tests.support.receiver import Receiver, run_receiver

FIELDS = (
    "number", "status", "amount_due", "amount_paid", "amount_remaining", "currency",
    "issue_date", "due_date", "paid_date", "hosted_invoice_url", "invoice_pdf",
    "subscription_id", "billing_reason", "account", "deal",
)  # fmt: skip


# --------------------------------------------------------------------------- helpers


def _activate(world: World, deal_ref: str = "acme_platform") -> dict[str, Any]:
    world.sync()
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    plan = world.plan_for(deal_ref)
    assert plan["status"] == "active"
    return plan


def _stripe_invoices(world: World, customer: str) -> list[Any]:
    page = world.stripe_client().v1.invoices.list(params={"customer": customer, "limit": 100})
    return list(page.data)


def _day(timestamp: int | None) -> date | None:
    return datetime.fromtimestamp(timestamp, UTC).date() if timestamp else None


def _as_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _expected(world: World, invoice: Any, deal_ref: str | None) -> dict[str, Any]:
    """The CRM record Stripe's invoice should have, in canonical fields."""
    transitions = invoice.status_transitions
    parent = invoice.parent
    subscription = (
        parent.subscription_details.subscription
        if parent is not None and parent.subscription_details is not None
        else None
    )
    return {
        "number": invoice.number,
        "status": invoice.status,
        "amount_due": Decimal(invoice.amount_due) / 100,
        "amount_paid": Decimal(invoice.amount_paid) / 100,
        "amount_remaining": Decimal(invoice.amount_remaining) / 100,
        "currency": invoice.currency,
        "issue_date": _day(transitions.finalized_at or invoice.created),
        "due_date": _day(invoice.due_date),
        "paid_date": _day(transitions.paid_at),
        "hosted_invoice_url": invoice.hosted_invoice_url,
        "invoice_pdf": invoice.invoice_pdf,
        "subscription_id": subscription,
        "billing_reason": invoice.billing_reason,
        "account": world.crm.ref("acme"),
        "deal": world.crm.ref(deal_ref) if deal_ref else None,
    }


def _crm_invoices(world: World) -> dict[str, dict[str, Any]]:
    """The CRM's invoice records by Stripe id, values made comparable across CRMs."""
    records: dict[str, dict[str, Any]] = {}
    for record in world.crm.invoices():
        key = record["stripe_invoice_id"]
        assert key not in records, f"two CRM records for {key}"
        records[key] = {
            **{f: record.get(f) or None for f in FIELDS},
            "amount_due": _money(record.get("amount_due")),
            "amount_paid": _money(record.get("amount_paid")),
            "amount_remaining": _money(record.get("amount_remaining")),
            "currency": str(record.get("currency") or "").lower() or None,
            "issue_date": _as_date(record.get("issue_date")),
            "due_date": _as_date(record.get("due_date")),
            "paid_date": _as_date(record.get("paid_date")),
        }
    return records


def _pay(world: World, invoice_id: str) -> None:
    world.stripe_client().v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})


def _first_invoice(world: World, plan: dict[str, Any]) -> str:
    sub = world.stripe_client().v1.subscriptions.retrieve(plan["stripe_subscription_id"])
    return str(sub.latest_invoice)


def _renew(world: World) -> None:
    """A month and a bit passes: the renewal is drafted, then finalized an hour later."""
    world.clock.advance(days=31, hours=3)
    world.stripe_sandbox.run_billing()


def _assert_crm_matches_stripe(world: World, customer: str, deal_of: dict[str, str | None]) -> None:
    stripe_invoices = _stripe_invoices(world, customer)
    crm = _crm_invoices(world)
    assert sorted(crm) == sorted(i.id for i in stripe_invoices)
    for invoice in stripe_invoices:
        assert crm[invoice.id] == _expected(world, invoice, deal_of.get(invoice.id)), invoice.id


# --------------------------------------------------------------------------- the records


def test_the_crm_invoice_records_match_stripe_field_for_field(world: World) -> None:
    plan = _activate(world)
    customer = plan["stripe_customer_id"]
    first = _first_invoice(world, plan)
    _pay(world, first)
    world.sync()
    _renew(world)
    world.sync()
    renewal = next(i for i in _stripe_invoices(world, customer) if i.id != first)
    assert renewal.billing_reason == "subscription_cycle"
    world.stripe_client().v1.invoices.void_invoice(str(renewal.id))
    by_hand = world.invoice_by_hand(customer)
    world.sync()

    _assert_crm_matches_stripe(
        world, customer, {first: "acme_platform", str(renewal.id): "acme_platform"}
    )
    statuses = {i["stripe_invoice_id"]: i["status"] for i in world.crm.invoices()}
    assert statuses == {first: "paid", renewal.id: "void", by_hand.id: "open"}


# --------------------------------------------------------------------------- missed webhooks


# --------------------------------------------------------------------------- CRM faults


def test_a_crm_outage_queues_the_writes_and_recovery_delivers_all_in_order(world: World) -> None:
    plan = _activate(world)
    customer = plan["stripe_customer_id"]
    first = _first_invoice(world, plan)
    world.crm.set_down(True)
    by_hand = world.invoice_by_hand(customer)
    _pay(world, first)
    world.sync()  # the writes fail and wait for their retry
    world.crm.set_down(False)
    assert _crm_invoices(world)[first]["status"] == "open"  # nothing got through
    assert str(by_hand.id) not in _crm_invoices(world)

    # Paid after the outage: this write is due at once, but queued behind the invoice's
    # first write, which still waits for its retry. Sent first, it would be overwritten
    # with "open" when the older write is retried.
    _pay(world, str(by_hand.id))
    world.sync()
    assert str(by_hand.id) not in _crm_invoices(world)  # held back behind its first write

    world.clock.advance(hours=1)
    world.sync()

    _assert_crm_matches_stripe(world, customer, {first: "acme_platform"})
    # written in order: the paid state (queued last) is what the CRM ends with
    assert {r["status"] for r in _crm_invoices(world).values()} == {"paid"}


@pytest.mark.parametrize(
    "fault",
    [("UNABLE_TO_LOCK_ROW", 400), ("REQUEST_LIMIT_EXCEEDED", 403)],
    ids=["row lock", "request limit"],
)
@pytest.mark.crm(
    "salesforce",
    reason="Salesforce's own error codes; Dataverse's service-protection 429s are covered "
    "in tests/crm/dynamics",
)
def test_a_retryable_salesforce_refusal_is_retried_after_a_backoff_not_dropped(
    world: World, fault: tuple[str, int]
) -> None:
    plan = _activate(world)
    first = _first_invoice(world, plan)
    world.salesforce_sandbox.inject_faults("/composite/sobjects/Stripe_Invoice__c", [fault])
    _pay(world, first)
    world.sync()
    assert _crm_invoices(world)[first]["status"] == "open"  # refused, waiting to retry
    world.sync()
    assert _crm_invoices(world)[first]["status"] == "open"  # not before its backoff

    world.clock.advance(minutes=5)
    world.sync()

    assert _crm_invoices(world)[first]["status"] == "paid"


def test_an_expired_crm_session_logs_in_again_once(world: World) -> None:
    plan = _activate(world)
    first = _first_invoice(world, plan)
    logins = world.crm.logins()
    world.crm.expire_sessions()
    _pay(world, first)
    world.sync()
    assert _crm_invoices(world)[first]["status"] == "paid"
    assert world.crm.logins() - logins == 1


# --------------------------------------------------------------------------- subscribers


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


def _world_with_subscriber(database_url: str, clock: FrozenClock, url: str) -> World:
    world = make_world(
        database_url,
        clock,
        outbound={
            "allowed_schemes": ["http"],
            "allow_private_addresses": True,
            "subscribers": [{"name": "erp", "url": url, "events": ["invoice.status_changed"]}],
        },
    )
    world.start()
    runtime = world.runtime
    assert runtime is not None
    # LocalWorld takes sections only; the subscriber's signing secret comes from the
    # environment in production, so it is added to the running config here.
    secrets = dataclasses.replace(
        runtime.config.secrets, subscriber_secrets={"erp": Secret("erp-secret-0123456789abcdef")}
    )
    runtime.config = dataclasses.replace(runtime.config, secrets=secrets)
    return world


def _crm_invoices_raw(world: World) -> dict[str, dict[str, Any]]:
    return {r["stripe_invoice_id"]: r for r in world.crm.invoices()}
