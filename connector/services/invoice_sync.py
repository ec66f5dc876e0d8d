"""Stripe invoices into the mirror and the CRM: every linked customer's, kept current.

Each handler re-fetches the object from Stripe rather than trusting the event payload:
events arrive late, twice, out of order and possibly in an older API version. The fetch and
the write happen under the invoice's row lock, so two workers handling two events of one
invoice write in the order they fetched: an older state never overwrites a newer one.
(On PostgreSQL the lock is an advisory one, so it also covers the first two events of an
invoice we have no row for yet.)

A deleted draft keeps its CRM record, with status ``deleted``, so it does not linger as a
draft. The account's open balance is queued with every status change, coalesced with a
balance still waiting in the outbox (see ``queue_open_balance``). An invoice event also owes
the account a credit settlement (the non-payment policy, plans waiting for the limit): it is
queued in the transaction that writes the mirror (``credit.queue_settlement``) and the worker
runs it, so a CRM that is down for the credit check never fails the invoice's event.

``on_invoice_event`` is the worker's handler for invoice events (``jobs/dispatch.py``);
subscriptions are ``subscription_sync``, customers ``customer_sync``.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.billing.event_shape import event_object
from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.billing.gateway import StripeGatewayError, StripeRejected
from connector.billing.objects import plain
from connector.crm.base import InvoiceRecord, Money
from connector.domain.metrics import OWED_INVOICE_STATUSES
from connector.domain.timestamps import date_from_unix, datetime_from_unix
from connector.runtime import Runtime
from connector.services import credit, crm_outbound, subscribers
from connector.services.stripe_mirror import UNKNOWN_CUSTOMER, account_of_customer
from connector.store.lease import PENDING
from connector.store.locks import lock
from connector.store.models import (
    AccountMetrics,
    InvoiceMirror,
    OutboxMessage,
    Plan,
)

log = logging.getLogger(__name__)

# Derived from the one list of what dealbridge subscribes to, so the two cannot drift.
INVOICE_EVENTS = tuple(sorted(t for t in HANDLED_STRIPE_EVENTS if t.startswith("invoice.")))
#: The CRM status of an invoice deleted in Stripe (only drafts can be deleted).
DELETED = "deleted"


class InvoiceNotFound(Exception):
    """Stripe does not find an invoice it cannot have deleted."""


def _subscription_of(invoice: dict[str, Any]) -> str | None:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    sub = details.get("subscription") or invoice.get("subscription")
    return sub if isinstance(sub, str) else (sub or {}).get("id")


def _deal_of(session: Session, invoice: dict[str, Any], subscription_id: str | None) -> str | None:
    metadata = invoice.get("metadata") or {}
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    for source in (metadata, details.get("metadata") or {}):
        if source.get("crm_deal_id"):
            return str(source["crm_deal_id"])
    if subscription_id:
        return session.scalars(
            select(Plan.deal_id).where(Plan.stripe_subscription_id == subscription_id)
        ).first()
    return session.scalars(
        select(Plan.deal_id).where(Plan.stripe_invoice_id == invoice["id"])
    ).first()


FAILING_EVENTS = ("invoice.payment_failed", "invoice.payment_action_required")


def _payment_error(
    invoice: dict[str, Any], event_type: str, decline: str | None = None
) -> str | None:
    error = invoice.get("last_finalization_error") or {}
    if error.get("message"):
        return str(error["message"])
    if (
        event_type in FAILING_EVENTS
        and invoice.get("status") == "open"
        and invoice.get("attempt_count")
    ):
        action = "needs customer action" if "action" in event_type else "failed"
        said = f": {decline}" if decline else ""
        return f"Payment {action} (attempt {invoice['attempt_count']}){said}"
    return None


def _decline(runtime: Runtime, invoice: dict[str, Any], event_type: str) -> str | None:
    """The bank's reason for a failed attempt, for the CRM record; None if unknown (a
    failure to read it never fails the invoice's sync)."""
    if event_type not in FAILING_EVENTS or invoice.get("status") != "open":
        return None
    try:
        return runtime.stripe.payment_decline(invoice["id"])
    except StripeGatewayError as exc:
        log.warning("could not read why invoice %s's payment failed: %s", invoice["id"], exc)
        return None


def amount_credited(invoice: dict[str, Any]) -> int:
    """What credit notes took off the invoice, before and after payment."""
    return int(invoice.get("pre_payment_credit_notes_amount") or 0) + int(
        invoice.get("post_payment_credit_notes_amount") or 0
    )


def invoice_record(
    invoice: dict[str, Any], account_id: str, deal_id: str | None, error: str | None
) -> InvoiceRecord:
    transitions = invoice.get("status_transitions") or {}
    return InvoiceRecord(
        stripe_invoice_id=invoice["id"],
        account_id=account_id,
        deal_id=deal_id,
        number=invoice.get("number"),
        status=invoice["status"],
        amount_due=int(invoice.get("amount_due") or 0),
        amount_paid=int(invoice.get("amount_paid") or 0),
        amount_remaining=int(invoice.get("amount_remaining") or 0),
        currency=invoice["currency"],
        issue_date=date_from_unix(transitions.get("finalized_at") or invoice.get("created")),
        due_date=date_from_unix(invoice.get("due_date")),
        paid_date=date_from_unix(transitions.get("paid_at")),
        hosted_invoice_url=invoice.get("hosted_invoice_url"),
        invoice_pdf=invoice.get("invoice_pdf"),
        subscription_id=_subscription_of(invoice),
        billing_reason=invoice.get("billing_reason"),
        last_payment_error=error,
        stripe_customer_id=invoice.get("customer"),
        amount_credited=amount_credited(invoice),
    )


#: How many times a sync fetches again when another writer stored the invoice meanwhile.
MAX_REFETCH = 5


class KeptChanging(RuntimeError):
    """Other writers stored the object every time we fetched it: try the event again later."""


def _fetch_invoice(runtime: Runtime, invoice_id: str) -> dict[str, Any] | None:
    """The invoice as Stripe holds it now; None if Stripe has no such invoice."""
    try:
        return plain(runtime.stripe.retrieve_invoice(invoice_id))
    except StripeRejected as exc:
        if exc.code != "resource_missing":
            raise
        return None


def sync_invoice(
    runtime: Runtime,
    invoice_id: str,
    customer_id: str | None,
    event_type: str = "invoice.updated",
    *,
    settle_credit: bool = False,
) -> str:
    """Fetch the invoice now and write it to the mirror and (via the outbox) the CRM;
    ``settle_credit`` also queues the account's credit settlement with the write.

    Read, call, write: no store session is open while Stripe answers (on SQLite a session
    holds the write lock). The mirror's write counter (``stripe_updated``) is read before the
    fetch and checked under the invoice's lock before the write; if another writer stored
    the invoice meanwhile, our answer may be older than theirs, so we fetch again. The state
    written last was therefore fetched after every earlier write: never an older one."""
    for _ in range(MAX_REFETCH):
        with runtime.db.session() as session:
            account_id = account_of_customer(runtime, session, customer_id, event_type)
            if account_id is None:
                return UNKNOWN_CUSTOMER
            mirror = session.get(InvoiceMirror, invoice_id)
            seen = mirror.stripe_updated if mirror is not None else None
            if mirror is not None and mirror.deleted and not settle_credit:
                return "deleted draft"  # a deleted invoice never comes back
        invoice = _fetch_invoice(runtime, invoice_id)
        decline = _decline(runtime, invoice, event_type) if invoice is not None else None
        with runtime.db.session() as session:
            lock(session, f"invoice:{invoice_id}")
            mirror = session.get(InvoiceMirror, invoice_id, with_for_update=True)
            if (mirror.stripe_updated if mirror is not None else None) != seen:
                continue  # written meanwhile: fetch again
            if settle_credit:
                credit.queue_settlement(session, account_id, runtime.clock())
            if invoice is None:
                # Only a draft can be deleted; a finalized invoice Stripe no longer finds was
                # not deleted (another account's key, a forged event): refuse rather than
                # mark it so.
                if mirror is not None and not mirror.deleted and mirror.status != "draft":
                    raise InvoiceNotFound(
                        f"Stripe has no invoice {invoice_id}, but dealbridge saw it "
                        f"{mirror.status}; only draft invoices can be deleted, so it is not "
                        "marked deleted (is STRIPE_API_KEY for the account that sent the event?)"
                    )
                return _deleted(runtime, session, mirror)
            if mirror is not None and mirror.deleted:
                return "deleted draft"  # a deleted invoice never comes back
            if invoice["customer"] != customer_id:
                # The payload named another customer than Stripe has: Stripe's word counts.
                account_id = account_of_customer(runtime, session, invoice["customer"], event_type)
                if account_id is None:
                    return UNKNOWN_CUSTOMER
            # An ``invoice.deleted`` for an invoice Stripe still has is not true: the invoice
            # is written as Stripe has it, like any other event.
            apply_invoice(
                runtime,
                session,
                invoice,
                account_id,
                event_type,
                mirror=mirror,
                decline=decline,
            )
            return f"invoice {invoice['status']}"
    raise KeptChanging(f"invoice {invoice_id} changed during each of {MAX_REFETCH} fetches")


def apply_invoice(
    runtime: Runtime,
    session: Session,
    invoice: dict[str, Any],
    account_id: str,
    event_type: str = "invoice.updated",
    *,
    mirror: InvoiceMirror | None,
    balance: bool = True,
    announce: bool = True,
    decline: str | None = None,
) -> bool:
    """Write a freshly fetched invoice to the mirror and queue its CRM record; the caller
    holds the invoice's lock. True if its status changed (the account's open balance is
    then queued too, unless ``balance`` is False: the caller queues it once for many; and
    ``invoice.status_changed`` is emitted, unless ``announce`` is False: a backfill of
    history is not news)."""
    invoice_id = invoice["id"]
    previous_status = mirror.status if mirror is not None else None
    subscription_id = _subscription_of(invoice)
    deal_id = _deal_of(session, invoice, subscription_id)
    if mirror is None:
        mirror = InvoiceMirror(id=invoice_id)
        session.add(mirror)
    transitions = invoice.get("status_transitions") or {}
    mirror.stripe_customer_id = invoice["customer"]
    mirror.crm_account_id = account_id
    mirror.crm_deal_id = deal_id
    mirror.subscription_id = subscription_id
    mirror.number = invoice.get("number")
    mirror.status = invoice["status"]
    mirror.currency = invoice["currency"]
    mirror.amount_due = int(invoice.get("amount_due") or 0)
    mirror.amount_paid = int(invoice.get("amount_paid") or 0)
    mirror.amount_remaining = int(invoice.get("amount_remaining") or 0)
    mirror.total_excluding_tax = int(
        invoice.get("total_excluding_tax") or invoice.get("total") or 0
    )
    mirror.attempt_count = int(invoice.get("attempt_count") or 0)
    mirror.created = datetime_from_unix(invoice["created"]) or runtime.clock()
    mirror.due_date = datetime_from_unix(invoice.get("due_date"))
    mirror.paid_at = datetime_from_unix(transitions.get("paid_at"))
    mirror.billing_reason = invoice.get("billing_reason")
    mirror.effective_at = datetime_from_unix(
        invoice.get("effective_at") or transitions.get("finalized_at")
    )
    mirror.amount_credited = amount_credited(invoice)
    mirror.synced_at = runtime.clock()
    mirror.stripe_updated = (mirror.stripe_updated or 0) + 1
    record = invoice_record(
        invoice, account_id, deal_id, _payment_error(invoice, event_type, decline)
    )
    crm_outbound.upsert_invoice(runtime, session, record)
    if previous_status == mirror.status:
        return False
    if announce:
        for before, after, sequence in status_transitions(invoice, previous_status):
            _status_changed(
                runtime,
                session,
                account_id,
                record,
                before,
                balance=balance and after == mirror.status,
                status=after,
                sequence=sequence,
            )
    elif balance:
        queue_open_balance(runtime, session, account_id, record.currency)
    return True


#: An invoice's statuses in the order Stripe's ``status_transitions`` can record them.
_TIMELINE = (
    ("open", "finalized_at"),
    ("uncollectible", "marked_uncollectible_at"),
    ("paid", "paid_at"),
    ("void", "voided_at"),
)


def status_timeline(invoice: dict[str, Any]) -> list[str]:
    """Every status the invoice has had, oldest first, from its ``status_transitions``
    (``draft`` first: every invoice starts as one), ending with its current status."""
    transitions = invoice.get("status_transitions") or {}
    stamped = sorted(
        (int(transitions[key]), order, status)
        for order, (status, key) in enumerate(_TIMELINE)
        if isinstance(transitions.get(key), int) and not isinstance(transitions.get(key), bool)
    )
    timeline = ["draft", *(status for _at, _order, status in stamped)]
    current = str(invoice.get("status"))
    if current in timeline:
        return timeline[: timeline.index(current) + 1]
    return [*timeline, current]


def status_transitions(
    invoice: dict[str, Any], previous: str | None
) -> list[tuple[str | None, str, int]]:
    """The status changes from ``previous`` (what dealbridge last saw) to the invoice's
    status now, each with its sequence number for the invoice (its place in the invoice's
    timeline: a subscriber orders and de-duplicates by it; a gap is a status the invoice
    passed before dealbridge first saw it, usually its draft).

    Several changes in quick succession (finalized, marked uncollectible, paid) reach the
    handler as one fetch of the final state; Stripe's ``status_transitions`` still date each
    one, so each is announced, in order, instead of one "None -> paid".
    """
    timeline = status_timeline(invoice)
    current = timeline[-1]
    if previous is None:
        # An invoice first seen past its draft: its story starts at the first status seen.
        start = 0 if current == "draft" else 1
        steps: list[str | None] = [None, *timeline[start:]]
        first_sequence = start + 1
    elif previous in timeline:
        at = timeline.index(previous)
        steps = list(timeline[at:])
        first_sequence = at + 2
    else:
        return [(previous, current, len(timeline))]
    return [
        (before, after, first_sequence + n)
        for n, (before, after) in enumerate(itertools.pairwise(steps))
        if after is not None
    ]


def _deleted(runtime: Runtime, session: Session, mirror: InvoiceMirror | None) -> str:
    """A deleted draft: its CRM record (if we wrote one) says ``deleted``, once."""
    if mirror is None or mirror.deleted:
        return "deleted draft"
    previous = mirror.status
    mirror.deleted = True
    mirror.status = DELETED
    mirror.amount_remaining = 0
    mirror.synced_at = runtime.clock()
    mirror.stripe_updated = (mirror.stripe_updated or 0) + 1
    account_id = mirror.crm_account_id
    if account_id is None:
        return "deleted draft"
    record = InvoiceRecord(
        stripe_invoice_id=mirror.id,
        account_id=account_id,
        deal_id=mirror.crm_deal_id,
        number=mirror.number,
        status=DELETED,
        amount_due=mirror.amount_due,
        amount_paid=mirror.amount_paid,
        amount_remaining=0,
        currency=mirror.currency,
        issue_date=mirror.created.date(),
        due_date=mirror.due_date.date() if mirror.due_date else None,
        paid_date=None,
        hosted_invoice_url=None,
        invoice_pdf=None,
        subscription_id=mirror.subscription_id,
        billing_reason=mirror.billing_reason,
        last_payment_error=None,
        stripe_customer_id=mirror.stripe_customer_id,
        amount_credited=mirror.amount_credited,
    )
    crm_outbound.upsert_invoice(runtime, session, record)
    _status_changed(runtime, session, account_id, record, previous, sequence=2)  # after draft
    return "deleted draft"


def _status_changed(
    runtime: Runtime,
    session: Session,
    account_id: str,
    record: InvoiceRecord,
    previous: str | None,
    *,
    balance: bool = True,
    status: str | None = None,
    sequence: int,
) -> None:
    if balance:
        queue_open_balance(runtime, session, account_id, record.currency)
    # Net billing and the open balance moved: the account's figures, within seconds.
    crm_outbound.queue_account_figures(session, account_id, runtime.clock())
    subscribers.emit(
        session,
        runtime,
        "invoice.status_changed",
        account_id,
        {
            "invoice_id": record.stripe_invoice_id,
            "sequence": sequence,
            "number": record.number,
            "previous_status": previous,
            "status": status or record.status,
            "amount_remaining": record.amount_remaining,
            "currency": record.currency,
            "deal_id": record.deal_id,
        },
    )


def queue_open_balance(runtime: Runtime, session: Session, account_id: str, currency: str) -> None:
    """Queue the account's open balance for the CRM, computed under the account's lock, in
    the account's own currency when account metrics learnt it (else the invoice's).

    Only the newest balance matters, so a balance still waiting at the tail of the account's
    queue is brought up to date instead of queuing another: a billing run that changes a
    thousand invoices of one account writes its balance once, not a thousand times.
    """
    lock(session, f"account:{account_id}")
    session.flush()
    known = session.get(AccountMetrics, account_id)
    if known is not None and known.account_currency and known.account_currency != currency:
        # The account's money fields are in its own currency: its balance in that currency
        # is what the CRM gets (an invoice in another currency does not change it).
        currency = known.account_currency
    money = Money(open_balance(session, account_id, currency), currency)
    key = f"account:{account_id}"
    tail = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.ordering_key == key)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if (
        tail is not None
        and tail.kind == crm_outbound.UPDATE_ACCOUNT
        and tail.status == PENDING
        and set((tail.payload or {}).get("update") or {}) == {"open_balance"}
    ):
        tail.payload = {
            "account_id": account_id,
            "update": {"open_balance": {"amount": money.amount, "currency": money.currency}},
        }
        return
    crm_outbound.update_account(runtime, session, account_id, {"open_balance": money})


def open_balance(session: Session, account_id: str, currency: str) -> int:
    """What the account owes: the remaining amounts of its open and uncollectible invoices
    (``OWED_INVOICE_STATUSES``), from the mirror."""
    total = session.scalar(
        select(func.coalesce(func.sum(InvoiceMirror.amount_remaining), 0)).where(
            InvoiceMirror.crm_account_id == account_id,
            InvoiceMirror.status.in_(sorted(OWED_INVOICE_STATUSES)),
            InvoiceMirror.currency == currency,
            InvoiceMirror.deleted.is_(False),
        )
    )
    return int(total or 0)


def on_invoice_event(runtime: Runtime, event: dict[str, Any]) -> str | None:
    about = event_object(event)
    return sync_invoice(
        runtime, about.object_id, about.customer_id, about.event_type, settle_credit=True
    )
