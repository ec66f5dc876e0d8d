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

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.billing.gateway import StripeRejected
from connector.billing.objects import plain
from connector.crm.base import InvoiceRecord, Money
from connector.domain.timestamps import date_from_unix, datetime_from_unix
from connector.runtime import Runtime
from connector.services import credit, crm_outbound, subscribers
from connector.services.stripe_mirror import UNKNOWN_CUSTOMER, account_of_customer
from connector.store.lease import PENDING
from connector.store.links import IN_CHUNK, linked_accounts
from connector.store.locks import lock
from connector.store.models import (
    InvoiceMirror,
    OutboxMessage,
    Plan,
)

log = logging.getLogger(__name__)

# Derived from the one list of what dealbridge subscribes to, so the two cannot drift.
INVOICE_EVENTS = tuple(sorted(t for t in HANDLED_STRIPE_EVENTS if t.startswith("invoice.")))
#: The CRM status of an invoice deleted in Stripe (only drafts can be deleted).
DELETED = "deleted"


def _subscription_of(invoice: dict[str, Any]) -> str | None:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    sub = details.get("subscription") or invoice.get("subscription")
    return sub if isinstance(sub, str) else (sub or {}).get("id")


def _deal_in_metadata(invoice: dict[str, Any]) -> str | None:
    metadata = invoice.get("metadata") or {}
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    for source in (metadata, details.get("metadata") or {}):
        if source.get("crm_deal_id"):
            return str(source["crm_deal_id"])
    return None


def _deal_of(session: Session, invoice: dict[str, Any], subscription_id: str | None) -> str | None:
    in_metadata = _deal_in_metadata(invoice)
    if in_metadata is not None:
        return in_metadata
    if subscription_id:
        return session.scalars(
            select(Plan.deal_id).where(Plan.stripe_subscription_id == subscription_id)
        ).first()
    return session.scalars(
        select(Plan.deal_id).where(Plan.stripe_invoice_id == invoice["id"])
    ).first()


@dataclass(frozen=True)
class DealIndex:
    """The deals of many invoices, looked up in one query per kind (the plans that created
    their subscription, or the invoice itself), instead of one query per invoice; answers
    as ``_deal_of`` does."""

    by_subscription: Mapping[str, str]
    by_invoice: Mapping[str, str]

    @classmethod
    def load(cls, session: Session, invoices: Iterable[dict[str, Any]]) -> DealIndex:
        subscriptions: set[str] = set()
        invoice_ids: set[str] = set()
        for invoice in invoices:
            if _deal_in_metadata(invoice) is not None:
                continue
            subscription_id = _subscription_of(invoice)
            if subscription_id:
                subscriptions.add(subscription_id)
            else:
                invoice_ids.add(invoice["id"])
        return cls(
            _first_deals(session, Plan.stripe_subscription_id, subscriptions),
            _first_deals(session, Plan.stripe_invoice_id, invoice_ids),
        )

    def deal_of(self, invoice: dict[str, Any], subscription_id: str | None) -> str | None:
        in_metadata = _deal_in_metadata(invoice)
        if in_metadata is not None:
            return in_metadata
        if subscription_id:
            return self.by_subscription.get(subscription_id)
        return self.by_invoice.get(invoice["id"])


def _first_deals(session: Session, column: Any, values: set[str]) -> dict[str, str]:
    wanted = sorted(values)
    found: dict[str, str] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        rows = session.execute(
            select(column, Plan.deal_id)
            .where(column.in_(wanted[start : start + IN_CHUNK]))
            .order_by(Plan.id)
        ).all()
        for key, deal_id in rows:
            found.setdefault(key, deal_id)
    return found


def _payment_error(invoice: dict[str, Any], event_type: str) -> str | None:
    error = invoice.get("last_finalization_error") or {}
    if error.get("message"):
        return str(error["message"])
    failing = event_type in ("invoice.payment_failed", "invoice.payment_action_required")
    if failing and invoice.get("status") == "open" and invoice.get("attempt_count"):
        action = "needs customer action" if "action" in event_type else "failed"
        return f"Payment {action} (attempt {invoice['attempt_count']})"
    return None


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
    )


def sync_invoice(
    runtime: Runtime,
    invoice_id: str,
    customer_id: str | None,
    event_type: str = "invoice.updated",
    *,
    settle_credit: bool = False,
) -> str:
    """Fetch the invoice now and write it to the mirror and (via the outbox) the CRM;
    ``settle_credit`` also queues the account's credit settlement with the write."""
    with runtime.db.session() as session:
        account_id = account_of_customer(runtime, session, customer_id, event_type)
        if account_id is None:
            return UNKNOWN_CUSTOMER
        lock(session, f"invoice:{invoice_id}")
        if settle_credit:
            credit.queue_settlement(session, account_id, runtime.clock())
        mirror = session.get(InvoiceMirror, invoice_id, with_for_update=True)
        try:
            invoice = plain(runtime.stripe.retrieve_invoice(invoice_id))
        except StripeRejected as exc:
            if exc.code != "resource_missing":
                raise
            invoice = None
        if invoice is None or event_type == "invoice.deleted":
            return _deleted(runtime, session, mirror)
        if mirror is not None and mirror.deleted:
            return "deleted draft"  # a deleted invoice never comes back
        apply_invoice(runtime, session, invoice, account_id, event_type, mirror=mirror)
        return f"invoice {invoice['status']}"


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
    deals: DealIndex | None = None,
) -> bool:
    """Write a freshly fetched invoice to the mirror and queue its CRM record; the caller
    holds the invoice's lock. True if its status changed (the account's open balance is
    then queued too, unless ``balance`` is False: the caller queues it once for many; and
    ``invoice.status_changed`` is emitted, unless ``announce`` is False: a backfill of
    history is not news). ``deals``: the invoice's deal looked up already, with others'."""
    invoice_id = invoice["id"]
    previous_status = mirror.status if mirror is not None else None
    subscription_id = _subscription_of(invoice)
    if deals is not None:
        deal_id = deals.deal_of(invoice, subscription_id)
    else:
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
    mirror.synced_at = runtime.clock()
    record = invoice_record(invoice, account_id, deal_id, _payment_error(invoice, event_type))
    crm_outbound.upsert_invoice(runtime, session, record)
    if previous_status == mirror.status:
        return False
    if announce:
        _status_changed(runtime, session, account_id, record, previous_status, balance=balance)
    elif balance:
        queue_open_balance(runtime, session, account_id, record.currency)
    return True


def _deleted(runtime: Runtime, session: Session, mirror: InvoiceMirror | None) -> str:
    """A deleted draft: its CRM record (if we wrote one) says ``deleted``, once."""
    if mirror is None or mirror.deleted:
        return "deleted draft"
    previous = mirror.status
    mirror.deleted = True
    mirror.status = DELETED
    mirror.amount_remaining = 0
    mirror.synced_at = runtime.clock()
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
    )
    crm_outbound.upsert_invoice(runtime, session, record)
    _status_changed(runtime, session, account_id, record, previous)
    return "deleted draft"


def _status_changed(
    runtime: Runtime,
    session: Session,
    account_id: str,
    record: InvoiceRecord,
    previous: str | None,
    *,
    balance: bool = True,
) -> None:
    if balance:
        queue_open_balance(runtime, session, account_id, record.currency)
    subscribers.emit(
        session,
        runtime,
        "invoice.status_changed",
        account_id,
        {
            "invoice_id": record.stripe_invoice_id,
            "number": record.number,
            "previous_status": previous,
            "status": record.status,
            "amount_remaining": record.amount_remaining,
            "currency": record.currency,
            "deal_id": record.deal_id,
        },
    )


def queue_open_balance(runtime: Runtime, session: Session, account_id: str, currency: str) -> None:
    """Queue the account's open balance for the CRM, computed under the account's lock.

    Only the newest balance matters, so a balance still waiting at the tail of the account's
    queue is brought up to date instead of queuing another: a billing run that changes a
    thousand invoices of one account writes its balance once, not a thousand times.
    """
    lock(session, f"account:{account_id}")
    session.flush()
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


def queue_open_balances(
    runtime: Runtime, session: Session, touched: Mapping[str, Iterable[str]]
) -> None:
    """``queue_open_balance`` for many accounts (account -> currencies) at once: the
    balances in one grouped query and the accounts' queue tails in one more per
    ``IN_CHUNK`` accounts, instead of several queries per account (an import touches
    thousands of accounts)."""
    accounts = sorted(touched)
    for account_id in accounts:
        lock(session, f"account:{account_id}")
    session.flush()
    for start in range(0, len(accounts), IN_CHUNK):
        chosen = accounts[start : start + IN_CHUNK]
        sums = _open_balances(session, chosen)
        tails = _queue_tails(session, [f"account:{a}" for a in chosen])
        for account_id in chosen:
            for currency in sorted(set(touched[account_id])):
                money = Money(sums.get((account_id, currency), 0), currency)
                update = {"open_balance": {"amount": money.amount, "currency": money.currency}}
                tail = tails.get(f"account:{account_id}")
                if (
                    tail is not None
                    and tail.kind == crm_outbound.UPDATE_ACCOUNT
                    and tail.status == PENDING
                    and set((tail.payload or {}).get("update") or {}) == {"open_balance"}
                ):
                    tail.payload = {"account_id": account_id, "update": update}
                    continue
                tails[f"account:{account_id}"] = crm_outbound.update_account(
                    runtime, session, account_id, {"open_balance": money}, flush=False
                )


def _open_balances(session: Session, accounts: list[str]) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(
            InvoiceMirror.crm_account_id,
            InvoiceMirror.currency,
            func.coalesce(func.sum(InvoiceMirror.amount_remaining), 0),
        )
        .where(
            InvoiceMirror.crm_account_id.in_(accounts),
            InvoiceMirror.status == "open",
            InvoiceMirror.deleted.is_(False),
        )
        .group_by(InvoiceMirror.crm_account_id, InvoiceMirror.currency)
    ).all()
    return {(str(account), str(currency)): int(total or 0) for account, currency, total in rows}


def _queue_tails(session: Session, keys: list[str]) -> dict[str, OutboxMessage | None]:
    """The newest message of each ordering key, locked (as ``queue_open_balance`` reads it)."""
    newest = select(func.max(OutboxMessage.id)).where(OutboxMessage.ordering_key.in_(keys))
    ids = session.scalars(newest.group_by(OutboxMessage.ordering_key)).all()
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.id.in_(ids)).with_for_update()
    ).all()
    return {row.ordering_key: row for row in rows}


def open_balance(session: Session, account_id: str, currency: str) -> int:
    """What the account owes: open invoices' remaining amounts, from the mirror."""
    total = session.scalar(
        select(func.coalesce(func.sum(InvoiceMirror.amount_remaining), 0)).where(
            InvoiceMirror.crm_account_id == account_id,
            InvoiceMirror.status == "open",
            InvoiceMirror.currency == currency,
            InvoiceMirror.deleted.is_(False),
        )
    )
    return int(total or 0)


def on_invoice_event(runtime: Runtime, event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    return sync_invoice(runtime, obj["id"], obj.get("customer"), event["type"], settle_credit=True)


# --------------------------------------------------------------------------- many at once

#: An event type whose payment error the CRM record shows, kept when it is coalesced.
_FAILING = ("invoice.payment_failed", "invoice.payment_action_required")


@dataclass
class _Fetched:
    """One invoice of a batch: its events, and its state as fetched (None: deleted/gone)."""

    event_type: str
    customer_id: str | None
    fetched_at: datetime
    invoice: dict[str, Any] | None


def on_invoice_events(
    runtime: Runtime, events: list[dict[str, Any]]
) -> list[str | BaseException | None]:
    """The worker's batch handler for invoice events that arrived together (``inbox``'s
    ``register_batch``): what ``on_invoice_event`` does for each, at the cost of one.

    * Several events of one invoice are *coalesced*: it is fetched once, and its CRM record
      written once, in its latest state (a payment error of a failing event is kept).
    * The CRM accounts of all the invoices' customers come from the link table in one
      query, their deals from the plans in one query per kind (``DealIndex``).
    * Stripe is read before the transaction; the mirror, the CRM records (outbox), the
      accounts' open balances (once per account and currency) and their credit settlement
      (once per account) are written in one transaction. An invoice whose mirror was
      written from a newer fetch meanwhile (another worker) is left as it is.

    One outcome per event, in order; an invoice Stripe could not return fails only its own
    events (retried with backoff), a failure of the transaction fails the batch.
    """
    results: list[str | BaseException | None] = [None] * len(events)
    groups: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        groups.setdefault(str(event["data"]["object"]["id"]), []).append(index)
    customers = {
        invoice_id: _customer_of(events, indexes) for invoice_id, indexes in groups.items()
    }
    with runtime.db.session() as session:
        accounts = linked_accounts(session, customers.values())
    fetched: dict[str, _Fetched] = {}
    for invoice_id, indexes in groups.items():
        types = [str(events[i]["type"]) for i in indexes]
        if accounts.get(customers[invoice_id] or "") is None:
            for i in indexes:
                runtime.metrics.count_unknown_customer("stripe", str(events[i]["type"]))
                results[i] = UNKNOWN_CUSTOMER
            continue
        failing = [t for t in types if t in _FAILING]
        event_type = "invoice.deleted" if "invoice.deleted" in types else (failing or types)[-1]
        fetched_at = runtime.clock()
        try:
            invoice = None if event_type == "invoice.deleted" else _fetch(runtime, invoice_id)
        except Exception as exc:
            for i in indexes:
                results[i] = exc
            continue
        fetched[invoice_id] = _Fetched(event_type, customers[invoice_id], fetched_at, invoice)
    if not fetched:
        return results
    with runtime.db.session() as session:
        outcomes = _write_fetched(runtime, session, fetched, accounts)
    for invoice_id, outcome in outcomes.items():
        for i in groups[invoice_id]:
            results[i] = outcome
    return results


def _customer_of(events: list[dict[str, Any]], indexes: list[int]) -> str | None:
    for i in indexes:
        customer = events[i]["data"]["object"].get("customer")
        if customer:
            return str(customer)
    return None


def _fetch(runtime: Runtime, invoice_id: str) -> dict[str, Any] | None:
    try:
        return plain(runtime.stripe.retrieve_invoice(invoice_id))
    except StripeRejected as exc:
        if exc.code != "resource_missing":
            raise
        return None


def _write_fetched(
    runtime: Runtime,
    session: Session,
    fetched: dict[str, _Fetched],
    accounts: Mapping[str, str],
) -> dict[str, str]:
    ids = sorted(fetched)  # one lock order for every worker
    for invoice_id in ids:
        lock(session, f"invoice:{invoice_id}")
    mirrors: dict[str, InvoiceMirror] = {}
    for start in range(0, len(ids), IN_CHUNK):
        chosen = ids[start : start + IN_CHUNK]
        query = select(InvoiceMirror).where(InvoiceMirror.id.in_(chosen)).with_for_update()
        mirrors.update({m.id: m for m in session.scalars(query)})
    now = runtime.clock()
    for account_id in sorted({accounts[str(f.customer_id)] for f in fetched.values()}):
        credit.queue_settlement(session, account_id, now)
    deals = DealIndex.load(session, [f.invoice for f in fetched.values() if f.invoice])
    touched: dict[str, set[str]] = {}
    outcomes: dict[str, str] = {}
    for invoice_id in ids:
        item = fetched[invoice_id]
        account_id = accounts[str(item.customer_id)]
        mirror = mirrors.get(invoice_id)
        if item.invoice is None:
            outcomes[invoice_id] = _deleted(runtime, session, mirror)
        elif mirror is not None and mirror.deleted:
            outcomes[invoice_id] = "deleted draft"  # a deleted invoice never comes back
        elif mirror is not None and mirror.synced_at > item.fetched_at:
            outcomes[invoice_id] = "a newer state is mirrored already"
        else:
            changed = apply_invoice(
                runtime, session, item.invoice, account_id, item.event_type,
                mirror=mirror, balance=False, deals=deals,
            )  # fmt: skip
            if changed:
                touched.setdefault(account_id, set()).add(item.invoice["currency"])
            outcomes[invoice_id] = f"invoice {item.invoice['status']}"
    queue_open_balances(runtime, session, touched)
    return outcomes
