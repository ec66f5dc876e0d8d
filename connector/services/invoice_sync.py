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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from connector.billing.event_shape import MalformedEvent, event_object
from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.billing.gateway import StripeGatewayError, StripeRejected
from connector.crm.base import InvoiceRecord, Money
from connector.domain.metrics import OWED_INVOICE_STATUSES
from connector.domain.timestamps import date_from_unix, datetime_from_unix
from connector.runtime import Runtime
from connector.services import credit, crm_outbound, subscribers
from connector.services.stripe_mirror import (
    MAX_REFETCH,
    UNKNOWN_CUSTOMER,
    KeptChanging,
    account_of_customer,
)
from connector.store.links import IN_CHUNK, linked_accounts
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


def _fetch_invoice(runtime: Runtime, invoice_id: str) -> dict[str, Any] | None:
    """The invoice as Stripe holds it now; None if Stripe has no such invoice."""
    try:
        return runtime.stripe.retrieve_invoice_data(invoice_id)
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


def mirror_values(
    runtime: Runtime, invoice: dict[str, Any], account_id: str, deal_id: str | None
) -> dict[str, Any]:
    """The mirror's columns for a freshly fetched invoice (all but ``id``, ``deleted`` and
    the write counter ``stripe_updated``): one definition for the row a handler updates
    and the rows a backfill inserts many at a time."""
    transitions = invoice.get("status_transitions") or {}
    return {
        "stripe_customer_id": invoice["customer"],
        "crm_account_id": account_id,
        "crm_deal_id": deal_id,
        "subscription_id": _subscription_of(invoice),
        "number": invoice.get("number"),
        "status": invoice["status"],
        "currency": invoice["currency"],
        "amount_due": int(invoice.get("amount_due") or 0),
        "amount_paid": int(invoice.get("amount_paid") or 0),
        "amount_remaining": int(invoice.get("amount_remaining") or 0),
        "total_excluding_tax": int(invoice.get("total_excluding_tax") or invoice.get("total") or 0),
        "attempt_count": int(invoice.get("attempt_count") or 0),
        "created": datetime_from_unix(invoice["created"]) or runtime.clock(),
        "due_date": datetime_from_unix(invoice.get("due_date")),
        "paid_at": datetime_from_unix(transitions.get("paid_at")),
        "billing_reason": invoice.get("billing_reason"),
        "effective_at": datetime_from_unix(
            invoice.get("effective_at") or transitions.get("finalized_at")
        ),
        "amount_credited": amount_credited(invoice),
        "synced_at": runtime.clock(),
    }


def insert_new_invoices(
    runtime: Runtime,
    session: Session,
    invoices: list[tuple[dict[str, Any], str]],
    deals: DealIndex,
) -> None:
    """``apply_invoice(..., mirror=None, balance=False, announce=False)`` for many invoices
    the mirror does not have yet (``(invoice, account)`` each, distinct ids, their locks
    held): their mirror rows in one multi-row INSERT and their CRM records in another,
    instead of an ORM object and a flush each. The backfill's path: it writes tens of
    thousands. The caller queues the accounts' balances (every new invoice's status is new).
    """
    rows: list[dict[str, Any]] = []
    records: list[InvoiceRecord] = []
    for invoice, account_id in invoices:
        deal_id = deals.deal_of(invoice, _subscription_of(invoice))
        rows.append(
            {
                "id": invoice["id"],
                **mirror_values(runtime, invoice, account_id, deal_id),
                "deleted": False,
                "stripe_updated": 1,
            }
        )
        records.append(
            invoice_record(invoice, account_id, deal_id, _payment_error(invoice, "invoice.updated"))
        )
    if rows:
        session.execute(insert(cast(Table, InvoiceMirror.__table__)), rows)
    crm_outbound.upsert_invoices(runtime, session, records)


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
    for column, value in mirror_values(runtime, invoice, account_id, deal_id).items():
        setattr(mirror, column, value)
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
    the account's own currency, learnt by account metrics; while it is not known, the
    account's figures are queued instead (they read it), never a balance in the invoice's
    currency, which could land in a field of another currency.

    Only the newest balance matters, so an account write still waiting at the tail of the
    account's queue takes the balance instead of queuing another (``fold_into_waiting``): a
    billing run that changes a thousand invoices of one account writes it once, not a
    thousand times.
    """
    lock(session, f"account:{account_id}")
    session.flush()
    known = session.get(AccountMetrics, account_id)
    if known is None or not known.account_currency:
        # The account's currency is not known yet: a balance in the invoice's currency could
        # land in a field of another currency. Its figures are recomputed instead, after the
        # account's currency is read (account_metrics), open balance included.
        crm_outbound.queue_account_figures(session, account_id, runtime.clock())
        return
    if known.account_currency != currency:
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
    if crm_outbound.fold_into_waiting(tail, {"open_balance": money}):
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
        own = _account_currencies(session, chosen)
        for account_id in chosen:
            if account_id not in own:
                # As ``queue_open_balance``: the account's currency is read first.
                crm_outbound.queue_account_figures(session, account_id, runtime.clock())
                continue
            # In the account's own currency, learnt by account metrics.
            currency = own[account_id]
            money = Money(sums.get((account_id, currency), 0), currency)
            tail = tails.get(f"account:{account_id}")
            if crm_outbound.fold_into_waiting(tail, {"open_balance": money}):
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
            InvoiceMirror.status.in_(sorted(OWED_INVOICE_STATUSES)),
            InvoiceMirror.deleted.is_(False),
        )
        .group_by(InvoiceMirror.crm_account_id, InvoiceMirror.currency)
    ).all()
    return {(str(account), str(currency)): int(total or 0) for account, currency, total in rows}


def _account_currencies(session: Session, accounts: list[str]) -> dict[str, str]:
    rows = session.execute(
        select(AccountMetrics.crm_account_id, AccountMetrics.account_currency).where(
            AccountMetrics.crm_account_id.in_(accounts)
        )
    ).all()
    return {str(account): str(currency) for account, currency in rows if currency}


def _queue_tails(session: Session, keys: list[str]) -> dict[str, OutboxMessage | None]:
    """The newest message of each ordering key, locked (as ``queue_open_balance`` reads it)."""
    newest = select(func.max(OutboxMessage.id)).where(OutboxMessage.ordering_key.in_(keys))
    ids = session.scalars(newest.group_by(OutboxMessage.ordering_key)).all()
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.id.in_(ids)).with_for_update()
    ).all()
    return {row.ordering_key: row for row in rows}


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


# --------------------------------------------------------------------------- many at once


@dataclass
class _Fetched:
    """One invoice of a batch: the type its events stand for, the customer they name, the
    mirror's write counter before the fetch, and the invoice as fetched (None: not found)."""

    event_type: str
    customer_id: str | None
    seen: int | None
    invoice: dict[str, Any] | None
    #: Why its last payment attempt failed (a failing event's invoice only).
    decline: str | None = None


def on_invoice_events(
    runtime: Runtime, events: list[dict[str, Any]]
) -> list[str | BaseException | None]:
    """The worker's batch handler for invoice events that arrived together (``inbox``'s
    ``register_batch``): what ``on_invoice_event`` does for each, at the cost of one.

    * Several events of one invoice are *coalesced*: it is fetched once, and its CRM record
      written once, in its latest state (a payment error of a failing event is kept).
    * The CRM accounts of the invoices' customers come from the link table in one query,
      the mirrors and their write counters in one more, the deals from the plans in one
      query per kind (``DealIndex``).
    * Read, call, write, as ``sync_invoice``: Stripe is read between two store sessions;
      the mirror, the CRM records (outbox), the accounts' open balances (once per account,
      ``queue_open_balances``) and credit settlements (once per account) are written in one
      transaction. An invoice another writer stored meanwhile (its write counter moved) is
      handed to ``sync_invoice``, which fetches it again.

    One outcome per event, in order; an invoice Stripe could not return fails only its own
    events (retried with backoff); a malformed event is returned as its ``MalformedEvent``.
    """
    results: list[str | BaseException | None] = [None] * len(events)
    groups: dict[str, list[int]] = {}
    hints: dict[str, str | None] = {}
    types: dict[str, list[str]] = {}
    for index, event in enumerate(events):
        try:
            about = event_object(event)
        except MalformedEvent as exc:
            results[index] = exc
            continue
        groups.setdefault(about.object_id, []).append(index)
        types.setdefault(about.object_id, []).append(about.event_type)
        hints[about.object_id] = hints.get(about.object_id) or about.customer_id
    with runtime.db.reading() as session:
        accounts = linked_accounts(session, hints.values())
        seen = _write_counters(session, list(groups))
    wanted: list[str] = []
    for invoice_id, indexes in groups.items():
        if accounts.get(hints[invoice_id] or "") is None:
            for i in indexes:
                runtime.metrics.count_unknown_customer("stripe", types[invoice_id][0])
                results[i] = UNKNOWN_CUSTOMER
        else:
            wanted.append(invoice_id)
    fetched: dict[str, _Fetched] = {}
    for invoice_id, answer in _fetch_all(runtime, wanted):
        if isinstance(answer, BaseException):
            for i in groups[invoice_id]:
                results[i] = answer
            continue
        failing = [t for t in types[invoice_id] if t in FAILING_EVENTS]
        event_type = (failing or types[invoice_id])[-1]
        decline = _decline(runtime, answer, event_type) if answer is not None else None
        fetched[invoice_id] = _Fetched(
            event_type, hints[invoice_id], seen.get(invoice_id), answer, decline
        )
    if fetched:
        with runtime.db.session() as session:
            outcomes = _write_fetched(runtime, session, fetched, accounts)
        for invoice_id, outcome in outcomes.items():
            if outcome is None:  # stored by another writer meanwhile: fetch it again
                item = fetched[invoice_id]
                try:
                    outcome = sync_invoice(
                        runtime, invoice_id, item.customer_id, item.event_type, settle_credit=True
                    )
                except Exception as exc:
                    outcome = exc
            for i in groups[invoice_id]:
                results[i] = outcome
    return results


def _fetch_all(
    runtime: Runtime, invoice_ids: list[str]
) -> list[tuple[str, dict[str, Any] | BaseException | None]]:
    """Each invoice as Stripe holds it now (None: not found) or the error fetching it, in
    order; fetched concurrently on the runtime's Stripe threads. No store session is open
    meanwhile."""

    def fetch(invoice_id: str) -> dict[str, Any] | BaseException | None:
        try:
            return _fetch_invoice(runtime, invoice_id)
        except Exception as exc:
            return exc

    if len(invoice_ids) <= 1:
        return [(i, fetch(i)) for i in invoice_ids]
    return list(zip(invoice_ids, runtime.stripe_calls.map(fetch, invoice_ids), strict=True))


def _write_counters(session: Session, invoice_ids: list[str]) -> dict[str, int | None]:
    wanted = sorted(invoice_ids)
    found: dict[str, int | None] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        rows = session.execute(
            select(InvoiceMirror.id, InvoiceMirror.stripe_updated).where(
                InvoiceMirror.id.in_(wanted[start : start + IN_CHUNK])
            )
        ).all()
        found.update({invoice_id: counter for invoice_id, counter in rows})
    return found


def _write_fetched(
    runtime: Runtime,
    session: Session,
    fetched: dict[str, _Fetched],
    accounts: dict[str, str],
) -> dict[str, str | BaseException | None]:
    """Write a batch's fetched invoices under their locks; None for an invoice whose mirror
    another writer stored since we read its counter."""
    ids = sorted(fetched)  # one lock order for every writer
    for invoice_id in ids:
        lock(session, f"invoice:{invoice_id}")
    mirrors: dict[str, InvoiceMirror] = {}
    for start in range(0, len(ids), IN_CHUNK):
        chosen = ids[start : start + IN_CHUNK]
        query = select(InvoiceMirror).where(InvoiceMirror.id.in_(chosen)).with_for_update()
        mirrors.update({m.id: m for m in session.scalars(query)})
    actual = {f.invoice["customer"] for f in fetched.values() if f.invoice is not None}
    accounts = {**accounts, **linked_accounts(session, actual - set(accounts))}
    deals = DealIndex.load(session, [f.invoice for f in fetched.values() if f.invoice])
    touched: dict[str, set[str]] = {}
    settle: set[str] = set()
    outcomes: dict[str, str | BaseException | None] = {}
    for invoice_id in ids:
        item = fetched[invoice_id]
        mirror = mirrors.get(invoice_id)
        if (mirror.stripe_updated if mirror is not None else None) != item.seen:
            outcomes[invoice_id] = None
            continue
        settle.add(accounts[str(item.customer_id)])
        invoice = item.invoice
        if invoice is None:
            if mirror is not None and not mirror.deleted and mirror.status != "draft":
                outcomes[invoice_id] = InvoiceNotFound(
                    f"Stripe has no invoice {invoice_id}, but dealbridge saw it "
                    f"{mirror.status}; only draft invoices can be deleted, so it is not "
                    "marked deleted (is STRIPE_API_KEY for the account that sent the event?)"
                )
            else:
                outcomes[invoice_id] = _deleted(runtime, session, mirror)
            continue
        if mirror is not None and mirror.deleted:
            outcomes[invoice_id] = "deleted draft"  # a deleted invoice never comes back
            continue
        account_id = accounts.get(invoice["customer"])
        if account_id is None:  # Stripe names another customer than the payload, unlinked
            runtime.metrics.count_unknown_customer("stripe", item.event_type)
            outcomes[invoice_id] = UNKNOWN_CUSTOMER
            continue
        changed = apply_invoice(
            runtime, session, invoice, account_id, item.event_type,
            mirror=mirror, balance=False, deals=deals, decline=item.decline,
        )  # fmt: skip
        if changed:
            touched.setdefault(account_id, set()).add(invoice["currency"])
        outcomes[invoice_id] = f"invoice {invoice['status']}"
    now = runtime.clock()
    for account_id in sorted(settle):
        credit.queue_settlement(session, account_id, now)
    queue_open_balances(runtime, session, touched)
    return outcomes
