"""Invoice events that arrive together are handled together: one fetch and one CRM record per
invoice however many events it had, accounts and deals looked up once for the batch, the
account's balance and credit settlement queued once."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from connector.billing.gateway import StripeUnavailable
from connector.store.db import Database
from connector.store.models import InboxEvent
from tests.services.test_invoice_handlers import ACCOUNT, INVOICE, Harness
from tests.support import FrozenClock
from tests.support.stripe_events import load_event

PAID = "invoice.paid__card.json"


@pytest.fixture
def h(db: Database, clock: FrozenClock) -> Harness:
    harness = Harness(db, clock)
    harness.link_customer()
    harness.activated_plan()
    return harness


def _event(fixture: str, invoice_id: str, *, customer: str | None = None) -> dict[str, Any]:
    """The fixture's event about another invoice (and customer), with its own event id."""
    event = copy.deepcopy(load_event(fixture))
    event["id"] = f"{event['id']}_{invoice_id}"
    event["data"]["object"]["id"] = invoice_id
    if customer is not None:
        event["data"]["object"]["customer"] = customer
    return event


def _hold(h: Harness, event: dict[str, Any]) -> None:
    """Stripe now holds the event's invoice as the event shows it."""
    h.stripe.objects[event["data"]["object"]["id"]] = copy.deepcopy(event["data"]["object"])


def _receive(h: Harness, event: dict[str, Any]) -> int:
    now = h.clock()
    with h.db.session() as session:
        row = InboxEvent(
            source="stripe",
            event_id=event["id"],
            event_type=event["type"],
            payload=json.dumps(event),
            received_at=now,
            next_attempt_at=now,
        )
        session.add(row)
        session.flush()
        return row.id


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def test_several_events_of_one_invoice_cost_one_fetch_and_one_crm_record(h: Harness) -> None:
    h.stripe.hold(PAID)
    rows = [
        h.receive(f)
        for f in (
            "invoice.finalized__send_invoice.json",
            PAID,
            "invoice.payment_succeeded__card.json",
        )
    ]

    h.process()

    assert h.stripe.retrieved == [INVOICE]
    assert len(h.outbox("crm.upsert_invoice")) == 1
    assert [(h.inbox(r).status, h.inbox(r).outcome) for r in rows] == [("done", "invoice paid")] * 3
    h.drain_crm()
    assert h.record().status == "paid"


def test_a_burst_of_invoices_queues_one_balance_and_one_credit_settlement_for_the_account(
    h: Harness,
) -> None:
    h.account_in("usd")
    events = [_event(PAID, f"in_burst{i:02}") for i in range(5)]
    for event in events:
        _hold(h, event)
        _receive(h, event)

    h.process()

    assert len(h.outbox("crm.upsert_invoice")) == 5
    assert [p["update"] for p in h.outbox("crm.update_account")] == [
        {"open_balance": {"amount": 0, "currency": "usd"}}
    ]
    assert h.outbox("credit.settle_account") == [{"account_id": ACCOUNT}]
    h.drain_crm()
    assert h.crm.invoice_calls == 1
    assert sorted(h.crm.invoices) == sorted(e["data"]["object"]["id"] for e in events)


def test_the_threads_that_fetch_a_batch_outlive_it_so_their_stripe_connections_are_kept(
    h: Harness,
) -> None:
    """stripe-python keeps one HTTP session per thread: threads ended with their batch took
    their connection (in production a TLS session) with them, and every fetch opened one."""
    h.account_in("usd")
    for i in range(8):
        event = _event(PAID, f"in_kept{i}")
        _hold(h, event)
        _receive(h, event)

    h.process()

    assert len(h.stripe.fetching_threads) == 8
    assert threading.current_thread() not in h.stripe.fetching_threads
    assert all(t.is_alive() for t in h.stripe.fetching_threads)
    h.runtime.close()
    assert not any(t.is_alive() for t in h.stripe.fetching_threads)


def test_the_accounts_and_deals_of_a_batch_are_looked_up_once_however_many_invoices(
    h: Harness, db: Database
) -> None:
    events = [_event(PAID, f"in_lookup{i:02}") for i in range(6)]
    for event in events:
        _hold(h, event)
        _receive(h, event)

    with _statements(db) as statements:
        h.process()

    def reads(table: str) -> int:
        return sum(
            1 for s in statements if s.lstrip().startswith("SELECT") and f"FROM {table}" in s
        )

    assert reads("customer_links") == 1
    assert reads("plans") == 1
    assert {r.deal_id for r in _records_after_drain(h)} == {"006Dn00000AcmeDlAAA"}


def _records_after_drain(h: Harness) -> list[Any]:
    h.drain_crm()
    return list(h.crm.invoices.values())


def test_an_invoice_stripe_cannot_return_fails_only_its_own_events(h: Harness) -> None:
    failing, fine = _event(PAID, "in_failing01"), _event(PAID, "in_fine00001")
    _hold(h, fine)
    _hold(h, failing)
    fetch = h.stripe.retrieve_invoice_data
    outage = [StripeUnavailable("Stripe error: try again")]

    def retrieve_invoice_data(invoice_id: str) -> Any:
        if invoice_id == "in_failing01" and outage:
            raise outage.pop()
        return fetch(invoice_id)

    h.stripe.retrieve_invoice_data = retrieve_invoice_data  # type: ignore[method-assign]
    failing_row, fine_row = _receive(h, failing), _receive(h, fine)

    h.process()

    assert (h.inbox(failing_row).status, h.inbox(failing_row).attempts) == ("pending", 1)
    assert "Stripe error" in (h.inbox(failing_row).last_error or "")
    assert h.inbox(fine_row).status == "done"
    h.clock.advance(hours=1)
    h.process()
    assert h.inbox(failing_row).status == "done"
    assert sorted(r.stripe_invoice_id for r in _records_after_drain(h)) == [
        "in_failing01",
        "in_fine00001",
    ]


def test_events_of_unlinked_customers_in_a_batch_are_ignored_and_the_rest_written(
    h: Harness,
) -> None:
    stranger = _event(PAID, "in_stranger1", customer="cus_NotLinked")
    linked = _event(PAID, "in_linked001")
    _hold(h, stranger)
    _hold(h, linked)
    stranger_row, linked_row = _receive(h, stranger), _receive(h, linked)

    h.process()

    assert "unknown customer" in (h.inbox(stranger_row).outcome or "")
    assert h.inbox(linked_row).outcome == "invoice paid"
    assert h.stripe.retrieved == ["in_linked001"]
    assert [r.stripe_invoice_id for r in _records_after_drain(h)] == ["in_linked001"]


def test_a_payment_failure_coalesced_with_a_later_event_still_explains_the_record(
    h: Harness,
) -> None:
    h.stripe.hold("invoice.payment_failed__card_declined.json")
    h.deliver(
        "invoice.payment_failed__card_declined.json", "invoice.updated__due_date_changed.json"
    )
    assert h.record().last_payment_error == "Payment failed (attempt 1)"


def test_a_deletion_among_the_events_of_a_draft_marks_its_record_deleted(h: Harness) -> None:
    h.stripe.hold("invoice.created__subscription_draft.json")
    h.deliver("invoice.created__subscription_draft.json")
    h.stripe.forget(INVOICE)

    h.deliver("invoice.updated__due_date_changed.json", "invoice.deleted__draft.json")

    assert h.record().status == "deleted"
