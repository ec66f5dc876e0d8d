"""Handlers never trust the payload: signed but false or malformed events (issue 16).

A deletion is what Stripe says when the object is re-fetched, judged by the object's real
lifecycle (only a draft invoice can be deleted; Stripe keeps deleted customers); a
malformed event parks at once with a reason a person can act on, never a KeyError.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import sqlalchemy as sa

from connector.store.db import Database
from connector.store.models import CustomerLink, InboxEvent, InvoiceMirror
from tests.services.test_invoice_handlers import ACCOUNT, CUSTOMER, INVOICE, Harness
from tests.support import FrozenClock
from tests.support.stripe_events import load_event


@pytest.fixture
def h(db: Database, clock: FrozenClock) -> Harness:
    harness = Harness(db, clock)
    harness.link_customer()
    harness.activated_plan()
    return harness


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


def test_a_false_invoice_deleted_for_a_live_paid_invoice_leaves_it_paid(h: Harness) -> None:
    h.stripe.hold("invoice.paid__ach.json")
    h.deliver("invoice.paid__ach.json")
    h.deliver("invoice.deleted__draft.json")  # signed, but Stripe still has the invoice
    assert h.record().status == "paid"
    with h.db.session() as session:
        mirror = session.get(InvoiceMirror, INVOICE)
        assert mirror is not None
        assert (mirror.status, mirror.deleted) == ("paid", False)


def test_a_finalized_invoice_stripe_no_longer_finds_is_not_marked_deleted_but_parked(
    h: Harness,
) -> None:
    h.stripe.hold("invoice.paid__ach.json")
    h.deliver("invoice.paid__ach.json")
    h.stripe.forget(INVOICE)
    row = h.receive("invoice.deleted__draft.json")
    for _ in range(10):
        h.clock.advance(hours=7)
        h.process()
    parked = h.inbox(row)
    assert parked.status == "parked"
    assert "only draft invoices can be deleted" in (parked.last_error or "")
    h.drain_crm()
    assert h.record().status == "paid"


def test_a_false_customer_deleted_keeps_the_account_linked(h: Harness) -> None:
    h.stripe.hold("customer.updated__email_changed.json")  # Stripe still has the customer
    h.deliver("customer.deleted__customer.json")
    with h.db.session() as session:
        links = session.scalars(sa.select(CustomerLink)).all()
        assert [(link.crm_account_id, link.stripe_customer_id) for link in links] == [
            (ACCOUNT, CUSTOMER)
        ]
    assert ACCOUNT not in h.crm.accounts


def test_an_invoice_event_naming_another_customer_is_filed_under_stripes_customer(
    h: Harness,
) -> None:
    h.stripe.hold("invoice.paid__ach.json")
    event = load_event("invoice.paid__ach.json")
    event["data"]["object"]["customer"] = "cus_SomeoneElseLinked"
    h.link_customer("cus_SomeoneElseLinked", "001OtherAccountAAA")
    row = _receive(h, event)
    h.process()
    assert h.inbox(row).status == "done"
    with h.db.session() as session:
        mirror = session.get(InvoiceMirror, INVOICE)
        assert mirror is not None
        assert (mirror.crm_account_id, mirror.stripe_customer_id) == (ACCOUNT, CUSTOMER)


def _malformed(mutate: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("invoice.paid__ach.json"))
    obj = event["data"]["object"]
    if mutate == "no data":
        del event["data"]
    elif mutate == "data is a list":
        event["data"] = [obj]
    elif mutate == "no object":
        del event["data"]["object"]
    elif mutate == "id is a list":
        obj["id"] = [INVOICE]
    elif mutate == "id is a number":
        obj["id"] = 12
    elif mutate == "no id":
        del obj["id"]
    elif mutate == "customer is a list":
        obj["customer"] = [CUSTOMER]
    elif mutate == "customer is a number":
        obj["customer"] = 7
    elif mutate == "wrong object":
        obj["object"] = "charge"
    return event


@pytest.mark.postgresql(reason="a list bound as an SQL parameter fails there")
@pytest.mark.parametrize(
    "mutate",
    [
        "no data",
        "data is a list",
        "no object",
        "id is a list",
        "id is a number",
        "no id",
        "customer is a list",
        "customer is a number",
        "wrong object",
    ],
)
def test_a_malformed_but_signed_event_is_parked_at_once_with_a_plain_reason(
    h: Harness, mutate: str
) -> None:
    h.stripe.hold("invoice.paid__ach.json")
    row = _receive(h, _malformed(mutate))
    h.process()
    parked = h.inbox(row)
    assert parked.status == "parked"
    assert parked.attempts == 1
    error = parked.last_error or ""
    assert error.startswith("malformed event: the invoice.paid event")
    for symptom in ("KeyError", "TypeError", "Traceback", "File "):
        assert symptom not in error
    assert h.stripe.retrieved == []


def test_a_stored_payload_nested_too_deeply_is_parked_with_that_reason(h: Harness) -> None:
    now = h.clock()
    with h.db.session() as session:
        row = InboxEvent(
            source="stripe",
            event_id="evt_nested",
            event_type="invoice.paid",
            payload="[" * 100_000 + "]" * 100_000,
            received_at=now,
            next_attempt_at=now,
        )
        session.add(row)
        session.flush()
        row_id = row.id
    h.process()
    parked = h.inbox(row_id)
    assert parked.status == "parked"
    assert (parked.last_error or "").startswith("malformed event: the JSON nests deeper than")
