"""Stripe invoice, subscription and customer events -> the CRM, one fixture at a time.

The handlers re-fetch every object from Stripe, so "what Stripe holds now" is set per test
(``stripe.hold(<fixture>)``); events go through the real inbox, and the CRM writes they queue
through the real outbox and senders into ``RecordingCrm``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from connector.billing.gateway import StripeRejected, StripeUnavailable
from connector.config import config_for_tests
from connector.crm.base import (
    AccountUpdate,
    CrmAccount,
    DealUpdate,
    InvoiceRecord,
    Money,
    WriteResult,
)
from connector.domain.metrics import mrr_trend, subscription_mrr
from connector.jobs.dispatch import OUTBOX_SENDERS, STRIPE_EVENT_HANDLERS
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.services.inbox import process_due_events, replay_event
from connector.services.invoice_sync import sync_invoice
from connector.services.outbox import drain_outbox
from connector.services.overview import subscription_facts
from connector.services.stripe_mirror import UNKNOWN_CUSTOMER
from connector.services.subscription_sync import CUSTOMER_DISCOUNT, EARLIER
from connector.store.db import Database
from connector.store.models import (
    AccountMetrics,
    CreditNoteMirror,
    CustomerLink,
    InboxEvent,
    InvoiceMirror,
    OutboxMessage,
    Plan,
    SubscriptionMirror,
)
from tests.support import TEST_SECRETS, FrozenClock
from tests.support.stripe_events import load_event

CUSTOMER = "cus_RdB1AcmeRobotic"
ACCOUNT = "001Dn00000AcmeRbAAA"
DEAL = "006Dn00000AcmeDlAAA"
INVOICE = "in_1RdBAcmeRobotic001"
SUBSCRIPTION = "sub_1RdBAcmeRobotic01"


class _StripeObject(dict[str, Any]):
    def to_dict(self) -> dict[str, Any]:
        return dict(self)


class FixtureStripe:
    """The gateway calls the handlers make, answered from the objects it holds."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.failures: list[Exception] = []
        self.retrieved: list[str] = []
        #: The thread of each retrieve, in order (batches fetch on the runtime's pool).
        self.fetching_threads: list[threading.Thread] = []
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self.declines: dict[str, str] = {}

    def hold(self, fixture: str) -> dict[str, Any]:
        """Stripe now holds the object as it is in this event fixture."""
        obj = load_event(fixture)["data"]["object"]
        self.objects[obj["id"]] = obj
        return dict(obj)

    def forget(self, object_id: str) -> None:
        self.objects.pop(object_id, None)

    def _get(self, object_id: str) -> _StripeObject:
        self.retrieved.append(object_id)
        self.fetching_threads.append(threading.current_thread())
        if self.failures:
            raise self.failures.pop(0)
        if object_id not in self.objects:
            raise StripeRejected(f"No such object: '{object_id}'", code="resource_missing")
        return _StripeObject(json.loads(json.dumps(self.objects[object_id])))

    def retrieve_invoice(self, invoice_id: str) -> _StripeObject:
        return self._get(invoice_id)

    def retrieve_invoice_data(self, invoice_id: str) -> dict[str, Any]:
        return dict(self._get(invoice_id))

    def retrieve_subscription(self, subscription_id: str) -> _StripeObject:
        return self._get(subscription_id)

    def retrieve_credit_note(self, credit_note_id: str) -> _StripeObject:
        return self._get(credit_note_id)

    def payment_decline(self, invoice_id: str) -> str | None:
        """What the bank said about the invoice's last failed attempt (``declines``)."""
        return self.declines.get(invoice_id)

    def retrieve_customer(self, customer_id: str) -> _StripeObject:
        return self._get(customer_id)

    def delete_customer(self, customer_id: str) -> None:
        """Stripe keeps a deleted customer, retrievable as a stub saying so."""
        self.objects[customer_id] = {"id": customer_id, "object": "customer", "deleted": True}

    def update_subscription(
        self, subscription_id: str, params: dict[str, Any], idempotency_key: str
    ) -> _StripeObject:
        self.updates.append((subscription_id, params))
        return self._get(subscription_id)

    def customer_url(self, customer_id: str) -> str:
        return f"https://dashboard.stripe.com/customers/{customer_id}"

    def fail_next(self, times: int) -> None:
        self.failures.extend(StripeUnavailable("Stripe error: try again") for _ in range(times))


@dataclass
class RecordingCrm:
    """The CRM as the senders leave it: invoice records by Stripe id, last write wins."""

    kind: str = "recording"
    batch_size: int = 200
    invoices: dict[str, InvoiceRecord] = field(default_factory=dict)
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoice_calls: int = 0

    def upsert_invoices(self, records: Sequence[InvoiceRecord]) -> list[WriteResult]:
        self.invoice_calls += 1
        for record in records:
            self.invoices[record.stripe_invoice_id] = record
        return [WriteResult(key=r.stripe_invoice_id, ok=True) for r in records]

    def update_deal(self, deal_id: str, update: DealUpdate) -> None:
        self.deals.setdefault(deal_id, {}).update(update)

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, CrmAccount]:
        return {i: self.get_account(i) for i in account_ids}

    def get_account(self, account_id: str) -> CrmAccount:
        """No credit hold and no limit, unless a write of ours says otherwise."""
        written = self.accounts.get(account_id, {})
        return CrmAccount(
            id=account_id,
            name="Acme Robotics, Inc.",
            address=None,
            credit_hold=bool(written.get("credit_hold", False)),
            credit_limit=None,
            credit_hold_source=written.get("credit_hold_source"),
            stripe_customer_id=written.get("stripe_customer_id"),
        )

    def update_accounts(self, updates: Sequence[tuple[str, AccountUpdate]]) -> list[WriteResult]:
        for account_id, update in updates:
            self.accounts.setdefault(account_id, {}).update(update)
        return [WriteResult(key=account_id, ok=True) for account_id, _ in updates]


class Harness:
    def __init__(self, db: Database, clock: FrozenClock, **jobs: int) -> None:
        self.db = db
        self.clock = clock
        self.stripe = FixtureStripe()
        self.crm = RecordingCrm()
        config = config_for_tests(
            {
                "database": {"url": db.url},
                "jobs": jobs,
                "outbound": {
                    "subscribers": [
                        {"name": "erp", "url": "https://erp.example/in", "events": ["*"]}
                    ]
                },
            },
            **{**TEST_SECRETS, "subscriber_secrets": {"erp": Secret("erp-secret-0123456789")}},
        )
        self.runtime = Runtime(
            config,
            db=db,
            clock=clock,
            crm=self.crm,  # type: ignore[arg-type]
            stripe=self.stripe,  # type: ignore[arg-type]
        )

    def link_customer(self, customer_id: str = CUSTOMER, account_id: str = ACCOUNT) -> None:
        with self.db.session() as session:
            session.add(
                CustomerLink(
                    crm_account_id=account_id, stripe_customer_id=customer_id, source="created"
                )
            )

    def account_in(self, currency: str, account_id: str = ACCOUNT) -> None:
        """The account's CRM currency, as account metrics learnt it when it last read it."""
        with self.db.session() as session:
            session.add(
                AccountMetrics(
                    crm_account_id=account_id, currency=currency, mrr=0, net_billing=0,
                    open_balance=0, account_currency=currency,
                )
            )  # fmt: skip

    def activated_plan(self, deal_id: str = DEAL, subscription_id: str = SUBSCRIPTION) -> None:
        with self.db.session() as session:
            session.add(
                Plan(
                    id="plan-acme-0001",
                    deal_id=deal_id,
                    crm_account_id=ACCOUNT,
                    status="active",
                    stripe_customer_id=CUSTOMER,
                    stripe_subscription_id=subscription_id,
                )
            )

    def receive(self, fixture: str) -> int:
        """Store the event in the inbox as the webhook intake would."""
        event = load_event(fixture)
        now = self.clock()
        with self.db.session() as session:
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

    def process(self) -> int:
        return process_due_events(self.runtime, STRIPE_EVENT_HANDLERS)

    def drain(self) -> int:
        return drain_outbox(self.runtime, OUTBOX_SENDERS)

    def deliver(self, *fixtures: str) -> None:
        """Receive the events, process them, and send what they queued to the CRM."""
        rows = [self.receive(fixture) for fixture in fixtures]
        self.process()
        for row_id in rows:
            row = self.inbox(row_id)
            assert row.status == "done", row.last_error
        self.drain_crm()

    def drain_crm(self) -> None:
        crm_kinds = {k: v for k, v in OUTBOX_SENDERS.items() if k.startswith("crm.")}
        drain_outbox(self.runtime, crm_kinds)

    def inbox(self, row_id: int) -> InboxEvent:
        with self.db.session() as session:
            row = session.get(InboxEvent, row_id)
            assert row is not None
            return row

    def outbox(self, kind: str) -> list[dict[str, Any]]:
        with self.db.session() as session:
            rows = session.scalars(
                sa.select(OutboxMessage)
                .where(OutboxMessage.kind == kind)
                .order_by(OutboxMessage.id)
            )
            return [dict(r.payload) for r in rows]

    def status_changes(self) -> list[tuple[str | None, str]]:
        """The invoice.status_changed events queued for subscribers, in order."""
        return [
            (p["event"]["data"]["previous_status"], p["event"]["data"]["status"])
            for p in self.outbox("subscriber.deliver")
            if p["event"]["type"] == "invoice.status_changed"
        ]

    def record(self, invoice_id: str = INVOICE) -> InvoiceRecord:
        return self.crm.invoices[invoice_id]


def day(timestamp: int) -> Any:
    return datetime.fromtimestamp(timestamp, UTC).date()


# =========================================================================== the tests


@pytest.fixture
def h(db: Database, clock: FrozenClock) -> Harness:
    """Acme's customer is linked to its CRM account and its deal's plan is active."""
    harness = Harness(db, clock)
    harness.link_customer()
    harness.activated_plan()
    return harness


# --------------------------------------------------------------------------- invoice events


@pytest.mark.parametrize(
    ("fixture", "status", "amount_paid", "amount_remaining"),
    [
        ("invoice.created__subscription_draft.json", "draft", 0, 1350000),
        ("invoice.finalized__send_invoice.json", "open", 0, 1350000),
        ("invoice.sent__send_invoice.json", "open", 0, 1350000),
        ("invoice.updated__due_date_changed.json", "open", 0, 1350000),
        ("invoice.paid__ach.json", "paid", 1350000, 0),
        ("invoice.paid__card.json", "paid", 1350000, 0),
        ("invoice.payment_succeeded__card.json", "paid", 1350000, 0),
        ("invoice.payment_failed__card_declined.json", "open", 0, 1350000),
        ("invoice.payment_action_required__3ds.json", "open", 0, 1350000),
        ("invoice.voided__open_invoice.json", "void", 0, 0),
        ("invoice.marked_uncollectible__overdue.json", "uncollectible", 0, 1350000),
    ],
)
def test_each_invoice_event_leaves_the_crm_record_as_stripe_holds_the_invoice(
    h: Harness, fixture: str, status: str, amount_paid: int, amount_remaining: int
) -> None:
    h.stripe.hold(fixture)
    h.deliver(fixture)
    record = h.record()
    assert (record.status, record.amount_due, record.amount_paid, record.amount_remaining) == (
        status,
        1350000,
        amount_paid,
        amount_remaining,
    )
    assert (record.account_id, record.deal_id, record.currency) == (ACCOUNT, DEAL, "usd")


def test_a_draft_is_recorded_with_its_account_deal_and_subscription_but_no_number(
    h: Harness,
) -> None:
    invoice = h.stripe.hold("invoice.created__subscription_draft.json")
    h.deliver("invoice.created__subscription_draft.json")
    record = h.record()
    assert record.number is None
    assert record.subscription_id == SUBSCRIPTION
    assert record.billing_reason == "subscription_create"
    assert record.issue_date == day(invoice["created"])
    assert record.stripe_customer_id == CUSTOMER


def test_a_finalized_invoice_carries_its_number_dates_and_links_to_pay_it(h: Harness) -> None:
    invoice = h.stripe.hold("invoice.finalized__send_invoice.json")
    h.deliver("invoice.finalized__send_invoice.json")
    record = h.record()
    assert record.number == "ACMERB01-0001"
    assert record.issue_date == day(invoice["status_transitions"]["finalized_at"])
    assert record.due_date == day(invoice["due_date"])
    assert record.hosted_invoice_url == invoice["hosted_invoice_url"]
    assert record.invoice_pdf == invoice["invoice_pdf"]
    assert record.paid_date is None


def test_an_ach_payment_records_the_paid_date(h: Harness) -> None:
    invoice = h.stripe.hold("invoice.paid__ach.json")
    h.deliver("invoice.paid__ach.json")
    assert h.record().paid_date == day(invoice["status_transitions"]["paid_at"])


def test_a_changed_due_date_is_written_to_the_record(h: Harness) -> None:
    h.stripe.hold("invoice.finalized__send_invoice.json")
    h.deliver("invoice.finalized__send_invoice.json")
    invoice = h.stripe.hold("invoice.updated__due_date_changed.json")
    h.deliver("invoice.updated__due_date_changed.json")
    assert h.record().due_date == day(invoice["due_date"])


def test_a_declined_card_payment_is_explained_on_the_record(h: Harness) -> None:
    h.stripe.hold("invoice.payment_failed__card_declined.json")
    h.stripe.declines[INVOICE] = (
        "Your card has insufficient funds. (card_declined: insufficient_funds)"
    )
    h.deliver("invoice.payment_failed__card_declined.json")
    assert h.record().last_payment_error == (
        "Payment failed (attempt 1): Your card has insufficient funds. "
        "(card_declined: insufficient_funds)"
    )


def test_a_failed_payment_whose_reason_cannot_be_read_still_says_it_failed(h: Harness) -> None:
    h.stripe.hold("invoice.payment_failed__card_declined.json")
    h.deliver("invoice.payment_failed__card_declined.json")
    assert h.record().last_payment_error == "Payment failed (attempt 1)"


def test_a_payment_waiting_for_the_customer_to_authenticate_says_so(h: Harness) -> None:
    h.stripe.hold("invoice.payment_action_required__3ds.json")
    h.deliver("invoice.payment_action_required__3ds.json")
    assert h.record().last_payment_error == "Payment needs customer action (attempt 1)"


def test_a_payment_after_a_decline_clears_the_error(h: Harness) -> None:
    h.stripe.hold("invoice.payment_failed__card_declined.json")
    h.deliver("invoice.payment_failed__card_declined.json")
    h.stripe.hold("invoice.paid__card.json")
    h.deliver("invoice.paid__card.json")
    assert h.record().last_payment_error is None


# --------------------------------------------------------------------------- deleted drafts


def test_a_deleted_draft_stays_in_the_crm_marked_deleted_not_draft(h: Harness) -> None:
    h.stripe.hold("invoice.created__subscription_draft.json")
    h.deliver("invoice.created__subscription_draft.json")
    h.stripe.forget(INVOICE)
    h.deliver("invoice.deleted__draft.json")
    record = h.record()
    assert record.status == "deleted"
    assert (record.account_id, record.amount_remaining) == (ACCOUNT, 0)
    assert h.status_changes() == [(None, "draft"), ("draft", "deleted")]


def test_an_event_arriving_after_the_deletion_does_not_bring_the_draft_back(h: Harness) -> None:
    h.stripe.hold("invoice.created__subscription_draft.json")
    h.deliver("invoice.created__subscription_draft.json")
    h.stripe.forget(INVOICE)
    h.deliver("invoice.deleted__draft.json")
    h.deliver("invoice.updated__due_date_changed.json")
    assert h.record().status == "deleted"
    assert len(h.status_changes()) == 2


def test_a_deleted_draft_never_recorded_writes_nothing(h: Harness) -> None:
    h.deliver("invoice.deleted__draft.json")
    assert h.crm.invoices == {}
    assert h.status_changes() == []


# --------------------------------------------------------------------------- the account


@pytest.mark.postgresql(reason="the balance is summed in SQL under a lock")
def test_the_account_open_balance_is_what_its_open_invoices_still_owe(h: Harness) -> None:
    h.account_in("usd")
    h.stripe.hold("invoice.finalized__send_invoice.json")
    h.deliver("invoice.finalized__send_invoice.json")
    assert h.crm.accounts[ACCOUNT]["open_balance"] == Money(1350000, "usd")
    h.stripe.hold("invoice.paid__ach.json")
    h.deliver("invoice.paid__ach.json")
    assert h.crm.accounts[ACCOUNT]["open_balance"] == Money(0, "usd")


@pytest.mark.postgresql(
    reason="queued writes are deduplicated by the outbox's claim query (SKIP LOCKED)"
)
def test_balance_changes_waiting_for_the_crm_are_sent_as_one_write_of_the_newest(
    h: Harness,
) -> None:
    h.account_in("usd")
    h.stripe.hold("invoice.finalized__send_invoice.json")
    h.receive("invoice.finalized__send_invoice.json")
    h.process()
    h.stripe.hold("invoice.paid__ach.json")
    h.receive("invoice.paid__ach.json")
    h.process()
    queued = h.outbox("crm.update_account")
    assert [p["update"]["open_balance"]["amount"] for p in queued] == [0]


def test_an_accounts_balance_waits_for_its_currency_never_written_in_the_invoices(
    h: Harness,
) -> None:
    """Before the account's CRM currency is known, an invoice does not write a balance in
    its own currency (a JPY balance in a EUR field): the account's figures are recomputed,
    and they read the account's currency first (account_metrics)."""
    h.stripe.hold("invoice.finalized__send_invoice.json")
    h.receive("invoice.finalized__send_invoice.json")
    h.process()
    assert h.outbox("crm.update_account") == []
    assert h.outbox("account.figures_due") == [{"account_id": ACCOUNT}]


# --------------------------------------------------------------------------- subscriptions


def overview_mrr(data: dict[str, Any]) -> dict[str, int]:
    """The MRR the overview reads from a mirrored subscription, now."""
    return subscription_mrr(subscription_facts(data), datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("customer.subscription.created__active.json", "active"),
        ("customer.subscription.updated__quantity_changed.json", "active"),
        ("customer.subscription.updated__paused.json", "active"),
        ("customer.subscription.paused__trial_ended_without_payment_method.json", "paused"),
        ("customer.subscription.resumed__active.json", "active"),
        ("customer.subscription.deleted__canceled.json", "canceled"),
    ],
)
def test_each_subscription_event_writes_the_subscription_status_to_the_deal(
    h: Harness, fixture: str, status: str
) -> None:
    h.stripe.hold(fixture)
    h.deliver(fixture)
    assert h.crm.deals[DEAL] == {"subscription_id": SUBSCRIPTION, "subscription_status": status}


def test_the_mirror_keeps_what_a_subscription_billed_before_a_change_for_the_trend(
    h: Harness,
) -> None:
    """Stripe keeps no history of items: the mirror keeps the state before each change that
    alters what the subscription bills (3 seats until the upgrade to 5 on 6 December), not
    before one that does not (a new period), and the MRR trend reads each month's."""
    h.stripe.hold("customer.subscription.created__active.json")
    h.deliver("customer.subscription.created__active.json")
    h.clock.advance(days=1)
    h.stripe.objects[SUBSCRIPTION]["latest_invoice"] = "in_another"  # bills the same
    h.deliver("customer.subscription.updated__paused.json")
    h.clock.advance(days=14)  # 2026-12-06 09:00 UTC
    h.stripe.hold("customer.subscription.updated__quantity_changed.json")
    h.deliver("customer.subscription.updated__quantity_changed.json")

    with h.db.session() as session:
        mirror = session.get(SubscriptionMirror, SUBSCRIPTION)
        assert mirror is not None
        data = dict(mirror.data)
    [before] = data[EARLIER]
    assert before["until"] == "2026-12-06T09:00:00+00:00"
    assert [i["quantity"] for i in before["items"]["data"]] == [3]
    trend = mrr_trend([subscription_facts(data)], 2, h.clock())
    assert trend == [("2026-11", {"usd": 3 * 450000}), ("2026-12", {"usd": 5 * 450000})]


def test_a_canceled_subscription_after_an_active_one_leaves_the_deal_canceled(h: Harness) -> None:
    h.stripe.hold("customer.subscription.created__active.json")
    h.deliver("customer.subscription.created__active.json")
    h.stripe.hold("customer.subscription.deleted__canceled.json")
    h.deliver("customer.subscription.deleted__canceled.json")
    assert h.crm.deals[DEAL]["subscription_status"] == "canceled"


@pytest.mark.parametrize(
    "fixture",
    [
        "customer.discount.created__customer_coupon.json",
        "customer.discount.updated__coupon_replaced.json",
        "customer.discount.deleted__customer_coupon.json",
    ],
)
def test_a_customers_discount_event_reads_its_subscriptions_again(h: Harness, fixture: str) -> None:
    """Stripe applies the customer's discount to its subscriptions without their own: each
    live one is fetched again, with its customer (and so its discount) expanded."""
    h.stripe.hold("customer.subscription.created__active.json")
    h.deliver("customer.subscription.created__active.json")
    with h.db.session() as session:
        before = session.get(SubscriptionMirror, SUBSCRIPTION)
        assert before is not None
        billed = overview_mrr(before.data)
        assert billed == {"usd": 1350000}
    coupon = {"id": "co_RdBloyalty25", "object": "coupon", "percent_off": 25,
              "amount_off": None, "currency": None, "duration": "forever",
              "duration_in_months": None, "applies_to": None, "valid": True}  # fmt: skip
    discount = load_event("customer.discount.created__customer_coupon.json")["data"]["object"]
    discount["source"]["coupon"] = coupon
    live = h.stripe.objects[SUBSCRIPTION]
    live["customer"] = {"id": CUSTOMER, "object": "customer", "discount": discount}
    h.stripe.retrieved.clear()

    h.deliver(fixture)

    assert h.stripe.retrieved == [SUBSCRIPTION]
    with h.db.session() as session:
        after = session.get(SubscriptionMirror, SUBSCRIPTION)
        assert after is not None
        assert after.data["customer"] == CUSTOMER
        assert after.data[CUSTOMER_DISCOUNT]["source"]["coupon"]["percent_off"] == 25
        assert overview_mrr(after.data) == {c: a * 3 // 4 for c, a in billed.items()}
    assert h.outbox("account.figures_due") == [{"account_id": ACCOUNT}]


# --------------------------------------------------------------------------- customers


def test_an_updated_customer_refreshes_the_accounts_stripe_link(h: Harness) -> None:
    h.stripe.hold("customer.updated__email_changed.json")
    h.deliver("customer.updated__email_changed.json")
    assert h.crm.accounts[ACCOUNT] == {
        "stripe_customer_id": CUSTOMER,
        "stripe_customer_url": f"https://dashboard.stripe.com/customers/{CUSTOMER}",
    }


def test_a_deleted_customer_unlinks_the_account_and_clears_its_stripe_link(h: Harness) -> None:
    h.stripe.delete_customer(CUSTOMER)
    h.deliver("customer.deleted__customer.json")
    assert h.crm.accounts[ACCOUNT] == {"stripe_customer_id": "", "stripe_customer_url": ""}
    with h.db.session() as session:
        assert session.scalars(sa.select(CustomerLink)).all() == []


def test_invoice_events_of_an_unlinked_customer_are_ignored(h: Harness) -> None:
    h.stripe.delete_customer(CUSTOMER)
    h.deliver("customer.deleted__customer.json")
    h.stripe.hold("invoice.paid__ach.json")
    h.deliver("invoice.paid__ach.json")
    assert h.crm.invoices == {}


# --------------------------------------------------------------------------- credit notes

CREDIT_NOTE = "cn_1RdBAcmeRobotic001"


def credit_note(h: Harness) -> CreditNoteMirror | None:
    with h.db.session() as session:
        row = session.get(CreditNoteMirror, CREDIT_NOTE)
        if row is not None:
            session.expunge(row)
        return row


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("credit_note.created__pre_payment.json", "issued"),
        ("credit_note.updated__memo_changed.json", "issued"),
        ("credit_note.voided__pre_payment.json", "void"),
    ],
)
def test_each_credit_note_event_mirrors_the_note_as_stripe_holds_it(
    h: Harness, fixture: str, status: str
) -> None:
    h.stripe.hold(fixture)
    h.deliver(fixture)
    row = credit_note(h)
    assert row is not None
    assert (row.status, row.currency, row.total_excluding_tax) == (status, "usd", 450000)
    assert (row.stripe_customer_id, row.crm_account_id) == (CUSTOMER, ACCOUNT)


def test_a_late_creation_event_does_not_undo_a_void(h: Harness) -> None:
    h.stripe.hold("credit_note.voided__pre_payment.json")
    h.deliver("credit_note.voided__pre_payment.json", "credit_note.created__pre_payment.json")
    row = credit_note(h)
    assert row is not None and row.status == "void"


def test_a_credit_note_of_an_unknown_customer_is_not_mirrored(
    db: Database, clock: FrozenClock
) -> None:
    h = Harness(db, clock)  # nobody linked
    h.stripe.hold("credit_note.created__pre_payment.json")
    row_id = h.receive("credit_note.created__pre_payment.json")
    h.process()
    assert (h.inbox(row_id).status, h.inbox(row_id).outcome) == ("done", UNKNOWN_CUSTOMER)
    assert credit_note(h) is None
    assert h.stripe.retrieved == []


# --------------------------------------------------------------------------- unknown customers


def test_an_event_for_an_unknown_customer_is_stored_ignored_and_counted(h: Harness) -> None:
    h.stripe.hold("invoice.created__unknown_customer.json")
    row_id = h.receive("invoice.created__unknown_customer.json")
    h.process()
    row = h.inbox(row_id)
    assert (row.status, row.outcome) == ("done", UNKNOWN_CUSTOMER)
    assert h.outbox("crm.upsert_invoice") == []
    assert h.stripe.retrieved == []  # not even fetched
    counted = h.runtime.metrics.registry.get_sample_value(
        "dealbridge_events_processed_total",
        {"source": "stripe", "type": "invoice.created", "outcome": "unknown_customer"},
    )
    assert counted == 1


# --------------------------------------------------------------------------- nothing doubled


@pytest.mark.postgresql(
    reason="a second delivery is kept out by the mirror's row lock (SELECT ... FOR UPDATE)"
)
def test_an_event_handled_twice_writes_the_same_record_and_announces_one_change(
    h: Harness,
) -> None:
    h.stripe.hold("invoice.paid__ach.json")
    row_id = h.receive("invoice.paid__ach.json")
    h.process()
    with h.db.session() as session:
        replay_event(session, row_id, actor="test", now=h.clock())
    h.process()
    h.drain_crm()
    assert list(h.crm.invoices) == [INVOICE]
    assert h.record().status == "paid"
    assert h.status_changes() == [(None, "open"), ("open", "paid")]  # once each


def test_two_events_of_one_payment_announce_one_status_change(h: Harness) -> None:
    h.stripe.hold("invoice.paid__card.json")
    h.deliver("invoice.paid__card.json", "invoice.payment_succeeded__card.json")
    assert h.status_changes() == [(None, "open"), ("open", "paid")]


def test_racing_events_of_a_new_invoice_write_one_mirror_and_one_change(
    postgres_db: Database, clock: FrozenClock
) -> None:
    h = Harness(postgres_db, clock)
    h.link_customer()
    h.activated_plan()
    h.stripe.hold("invoice.paid__card.json")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def handle(fixture: str) -> None:
        event = load_event(fixture)
        barrier.wait()
        try:
            outcomes.append(sync_invoice(h.runtime, INVOICE, CUSTOMER, event["type"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=handle, args=(f,))
        for f in ("invoice.paid__card.json", "invoice.payment_succeeded__card.json")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert outcomes == ["invoice paid", "invoice paid"]
    with postgres_db.session() as session:
        assert session.scalars(sa.select(InvoiceMirror.id)).all() == [INVOICE]
    assert h.status_changes() == [(None, "open"), ("open", "paid")]  # once, not twice


# --------------------------------------------------------------------------- out of order


@pytest.mark.postgresql(reason="the mirror row is locked and compared under FOR UPDATE")
def test_an_older_event_processed_after_a_newer_one_leaves_the_crm_at_the_newer_state(
    h: Harness,
) -> None:
    h.stripe.hold("invoice.paid__ach.json")  # what Stripe holds by the time we look
    h.deliver("invoice.paid__ach.json")
    h.deliver("invoice.finalized__send_invoice.json")  # delivered late
    assert h.record().status == "paid"
    assert h.status_changes() == [(None, "open"), ("open", "paid")]


def _sequenced(h: Harness) -> list[tuple[int, str | None, str]]:
    return [
        (p["event"]["data"]["sequence"], p["event"]["data"]["previous_status"],
         p["event"]["data"]["status"])
        for p in h.outbox("subscriber.deliver")
        if p["event"]["type"] == "invoice.status_changed"
    ]  # fmt: skip


def test_finalize_uncollectible_and_pay_in_quick_succession_announce_each_step_in_order(
    h: Harness,
) -> None:
    paid = h.stripe.hold("invoice.paid__ach.json")
    finalized = paid["status_transitions"]["finalized_at"]
    paid["status_transitions"]["marked_uncollectible_at"] = finalized + 60
    paid["status_transitions"]["paid_at"] = finalized + 120
    h.stripe.objects[INVOICE] = paid
    # Three events, but each fetch already sees the invoice paid.
    h.deliver(
        "invoice.finalized__send_invoice.json",
        "invoice.marked_uncollectible__overdue.json",
        "invoice.paid__ach.json",
    )
    assert _sequenced(h) == [
        (2, None, "open"),
        (3, "open", "uncollectible"),
        (4, "uncollectible", "paid"),
    ]


def test_each_status_change_carries_the_invoices_next_sequence_number(h: Harness) -> None:
    h.stripe.hold("invoice.created__subscription_draft.json")
    h.deliver("invoice.created__subscription_draft.json")
    h.stripe.hold("invoice.finalized__send_invoice.json")
    h.deliver("invoice.finalized__send_invoice.json")
    h.stripe.hold("invoice.voided__open_invoice.json")
    h.deliver("invoice.voided__open_invoice.json")
    assert _sequenced(h) == [(1, None, "draft"), (2, "draft", "open"), (3, "open", "void")]


def test_events_processed_in_reverse_order_end_at_the_latest_state(h: Harness) -> None:
    h.stripe.hold("invoice.voided__open_invoice.json")
    h.deliver(
        "invoice.voided__open_invoice.json",
        "invoice.sent__send_invoice.json",
        "invoice.finalized__send_invoice.json",
        "invoice.created__subscription_draft.json",
    )
    assert h.record().status == "void"


# --------------------------------------------------------------------------- failures


def test_a_handler_failing_for_a_while_is_retried_until_it_succeeds(h: Harness) -> None:
    h.stripe.hold("invoice.paid__ach.json")
    h.stripe.fail_next(2)
    row_id = h.receive("invoice.paid__ach.json")
    h.process()
    assert (h.inbox(row_id).status, h.inbox(row_id).attempts) == ("pending", 1)
    assert "Stripe error" in (h.inbox(row_id).last_error or "")
    for _ in range(2):
        h.clock.advance(hours=1)
        h.process()
    h.drain_crm()
    assert (h.inbox(row_id).status, h.inbox(row_id).attempts) == ("done", 3)
    assert h.record().status == "paid"


def test_a_handler_that_keeps_failing_is_parked_with_its_error(
    db: Database, clock: FrozenClock
) -> None:
    h = Harness(db, clock, max_attempts=3)
    h.link_customer()
    h.stripe.hold("invoice.paid__ach.json")
    h.stripe.fail_next(10)
    row_id = h.receive("invoice.paid__ach.json")
    for _ in range(4):
        h.process()
        h.clock.advance(hours=1)
    row = h.inbox(row_id)
    assert (row.status, row.attempts) == ("parked", 3)
    assert "StripeUnavailable" in (row.last_error or "")
    assert h.outbox("crm.upsert_invoice") == []
