"""Read, call Stripe outside any store session, write: and never write an older state.

The syncs fetch with no store session open (on SQLite a session holds the write lock). Two
workers may then fetch one invoice at once; the one whose fetch started before the other's
write must not overwrite it. These tests make "the other worker" write while our fetch is in
flight (from inside the fake Stripe's answer) and check what ends in the mirror.
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.runtime import NetworkCallInTransaction, violations
from connector.services.invoice_sync import KeptChanging, sync_invoice
from connector.services.subscription_sync import sync_subscription
from connector.store.db import Database
from connector.store.models import InvoiceMirror, SubscriptionMirror
from tests.services.test_invoice_handlers import (
    CUSTOMER,
    INVOICE,
    SUBSCRIPTION,
    FixtureStripe,
    Harness,
)
from tests.support import FrozenClock

pytestmark = pytest.mark.postgresql(
    reason="the mirror rows are re-read and written under row locks"
)


class RacedStripe(FixtureStripe):
    """Answers with what it holds when the call began; ``during`` runs while the call is in
    flight (another worker's write), and Stripe then holds ``after``."""

    def __init__(self) -> None:
        super().__init__()
        self.during: list[tuple[Any, str]] = []

    def _get(self, object_id: str) -> Any:
        answer = super()._get(object_id)
        if self.during:
            action, fixture = self.during.pop(0)
            self.hold(fixture)
            action()
        return answer


@pytest.fixture
def h(db: Database, clock: FrozenClock) -> Harness:
    harness = Harness(db, clock)
    harness.stripe = RacedStripe()
    harness.runtime.__dict__.pop("stripe", None)
    harness.runtime._stripe = harness.stripe  # type: ignore[assignment]
    harness.link_customer()
    harness.activated_plan()
    return harness


def test_an_invoice_written_by_another_worker_during_our_fetch_is_fetched_again(
    h: Harness,
) -> None:
    stripe: RacedStripe = h.stripe  # type: ignore[assignment]
    stripe.hold("invoice.finalized__send_invoice.json")
    # While our fetch (of the open invoice) is in flight, it is paid, and another worker
    # fetches and stores the paid state first.
    stripe.during.append(
        (lambda: sync_invoice(h.runtime, INVOICE, CUSTOMER), "invoice.paid__card.json")
    )
    outcome = sync_invoice(h.runtime, INVOICE, CUSTOMER, "invoice.finalized")
    assert outcome == "invoice paid"
    with h.db.session() as session:
        mirror = session.get(InvoiceMirror, INVOICE)
        assert mirror is not None and mirror.status == "paid"
    assert stripe.retrieved == [INVOICE, INVOICE, INVOICE]  # ours, theirs, ours again


def test_an_invoice_that_changes_during_every_fetch_is_retried_later(h: Harness) -> None:
    stripe: RacedStripe = h.stripe  # type: ignore[assignment]
    stripe.hold("invoice.finalized__send_invoice.json")
    sync_invoice(h.runtime, INVOICE, CUSTOMER)

    def another_write() -> None:
        with h.db.session() as session:
            mirror = session.get(InvoiceMirror, INVOICE)
            assert mirror is not None
            mirror.stripe_updated += 1

    stripe.during.extend((another_write, "invoice.finalized__send_invoice.json") for _ in range(10))
    with pytest.raises(KeptChanging):
        sync_invoice(h.runtime, INVOICE, CUSTOMER)


def test_a_subscription_written_during_our_fetch_is_fetched_again(h: Harness) -> None:
    stripe: RacedStripe = h.stripe  # type: ignore[assignment]
    stripe.hold("customer.subscription.created__active.json")
    stripe.during.append(
        (
            lambda: sync_subscription(h.runtime, SUBSCRIPTION, CUSTOMER),
            "customer.subscription.updated__paused.json",
        )
    )
    sync_subscription(h.runtime, SUBSCRIPTION, CUSTOMER)
    with h.db.session() as session:
        mirror = session.get(SubscriptionMirror, SUBSCRIPTION)
        assert mirror is not None
        assert mirror.data == stripe.objects[SUBSCRIPTION]


def test_a_stripe_call_inside_a_store_session_is_refused(h: Harness) -> None:
    with pytest.raises(NetworkCallInTransaction), h.db.session():
        h.runtime.stripe.retrieve_invoice(INVOICE)
    assert violations == ["stripe.retrieve_invoice"]
    violations.clear()  # expected here; the autouse guard would fail the test otherwise


def test_a_crm_call_inside_a_store_session_is_refused(h: Harness) -> None:
    with pytest.raises(NetworkCallInTransaction), h.db.session():
        h.runtime.crm.get_account("001Dn00000AcmeRbAAA")
    assert violations == ["crm.get_account"]
    violations.clear()


def test_a_listing_paged_inside_a_store_session_is_refused(h: Harness) -> None:
    class Listing(FixtureStripe):
        def iter_invoices(self, _params: Any) -> Any:
            yield from ({"id": n} for n in range(3))

    h.runtime._stripe = Listing()  # type: ignore[assignment]
    h.runtime.__dict__.pop("stripe", None)
    pages = h.runtime.stripe.iter_invoices({})
    assert next(pages) == {"id": 0}  # no session: fine
    with pytest.raises(NetworkCallInTransaction), h.db.session():
        next(pages)
    violations.clear()
