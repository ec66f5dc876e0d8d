"""Credit notes and refunds of linked customers, mirrored as Stripe issues and voids them.

Net billing subtracts credit notes, and the overview reads its figures from dealbridge's own
records: so the mirror follows ``credit_note.*`` webhooks (and reconciliation, which replays
missed events through the same handler) instead of waiting for a ``?refresh=1``. Like the
invoice handlers, the handler re-reads the credit note from Stripe before writing, so an
older event delivered late never overwrites a newer state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from connector.billing.event_shape import event_object
from connector.billing.gateway import StripeRejected
from connector.billing.objects import plain
from connector.domain.timestamps import datetime_from_unix
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.invoice_sync import sync_invoice
from connector.services.stripe_mirror import (
    MAX_REFETCH,
    UNKNOWN_CUSTOMER,
    KeptChanging,
    account_of_customer,
)
from connector.store.locks import lock
from connector.store.models import CreditNoteMirror, RefundMirror

CREDIT_NOTE_EVENTS = ("credit_note.created", "credit_note.updated", "credit_note.voided")
REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed")


def mirror_credit_note(
    session: Session, account_id: str, note: dict[str, Any], now: datetime
) -> CreditNoteMirror:
    """Write a credit note as Stripe holds it now to the mirror."""
    row = session.get(CreditNoteMirror, note["id"]) or CreditNoteMirror(id=note["id"])
    row.stripe_customer_id = note["customer"]
    row.crm_account_id = account_id
    row.status = str(note["status"])
    row.currency = str(note["currency"])
    total = note.get("total_excluding_tax")
    row.total_excluding_tax = int(total if total is not None else note["total"])
    row.created = datetime_from_unix(note.get("created")) or now
    row.effective_at = datetime_from_unix(note.get("effective_at"))
    invoice = note.get("invoice")
    row.invoice_id = invoice if isinstance(invoice, str) else (invoice or {}).get("id")
    row.refund_ids = refunds_carried(note)
    row.synced_at = now
    return session.merge(row)


def refunds_carried(note: dict[str, Any]) -> list[str]:
    """The refunds a credit note carries: ``refunds[].refund`` (``refund`` before API
    2024-10-28), ids or expanded objects."""
    found: list[str] = []
    for entry in note.get("refunds") or []:
        refund = (entry or {}).get("refund")
        refund_id = refund if isinstance(refund, str) else (refund or {}).get("id")
        if refund_id:
            found.append(str(refund_id))
    single = note.get("refund")
    single_id = single if isinstance(single, str) else (single or {}).get("id")
    if single_id and single_id not in found:
        found.append(str(single_id))
    return found


def mirror_refund(
    session: Session, account_id: str, customer_id: str, refund: dict[str, Any], now: datetime
) -> RefundMirror:
    """Write a refund as Stripe holds it now to the mirror."""
    row = session.get(RefundMirror, refund["id"]) or RefundMirror(id=refund["id"])
    charge = refund.get("charge")
    row.stripe_customer_id = customer_id
    row.crm_account_id = account_id
    row.charge_id = charge if isinstance(charge, str) else (charge or {}).get("id")
    row.status = str(refund.get("status") or "succeeded")
    row.currency = str(refund["currency"])
    row.amount = int(refund["amount"])
    row.created = datetime_from_unix(refund.get("created")) or now
    row.synced_at = now
    return session.merge(row)


def _customer_of_refund(refund: dict[str, Any]) -> str | None:
    charge = refund.get("charge")
    customer = refund.get("customer") or (
        charge.get("customer") if isinstance(charge, dict) else None
    )
    return customer if isinstance(customer, str) else (customer or {}).get("id")


def on_refund_event(runtime: Runtime, event: dict[str, Any]) -> str:
    """``refund.*``: fetch the refund now (its charge names the customer) and mirror it."""
    refund_id = event["data"]["object"]["id"]
    try:
        refund = plain(runtime.stripe.retrieve_refund(refund_id))
    except StripeRejected as exc:
        if exc.code != "resource_missing":
            raise
        return "refund no longer exists"
    customer_id = _customer_of_refund(refund)
    with runtime.db.session() as session:
        account_id = account_of_customer(runtime, session, customer_id, event["type"])
        if account_id is None or customer_id is None:
            return UNKNOWN_CUSTOMER
        lock(session, f"refund:{refund_id}")
        mirror_refund(session, account_id, customer_id, refund, runtime.clock())
        crm_outbound.queue_account_figures(session, account_id, runtime.clock())
        return f"refund {refund.get('status')}"


def _snapshot(row: CreditNoteMirror | None) -> tuple[str, int] | None:
    return None if row is None else (row.status, row.total_excluding_tax)


def sync_credit_note(
    runtime: Runtime, note_id: str, customer_id: str | None, event_type: str
) -> str:
    """Fetch the credit note now and mirror it, if its customer is linked.

    Read, call, write: Stripe is called with no store session open, and the note is written
    only if its mirror did not change meanwhile (else fetched again), like invoices."""
    for _ in range(MAX_REFETCH):
        with runtime.db.session() as session:
            account_id = account_of_customer(runtime, session, customer_id, event_type)
            if account_id is None:
                return UNKNOWN_CUSTOMER
            seen = _snapshot(session.get(CreditNoteMirror, note_id))
        try:
            note = plain(runtime.stripe.retrieve_credit_note(note_id))
        except StripeRejected as exc:
            if exc.code != "resource_missing":
                raise
            return "credit note no longer exists"  # credit notes are never deleted; be safe
        with runtime.db.session() as session:
            lock(session, f"credit_note:{note_id}")
            if _snapshot(session.get(CreditNoteMirror, note_id, with_for_update=True)) != seen:
                continue  # written meanwhile: fetch again
            if note["customer"] != customer_id:
                # The payload named another customer than Stripe has: Stripe's word counts.
                customer_id = note["customer"]
                account_id = account_of_customer(runtime, session, customer_id, event_type)
                if account_id is None:
                    return UNKNOWN_CUSTOMER
            row = mirror_credit_note(session, account_id, note, runtime.clock())
            crm_outbound.queue_account_figures(session, account_id, runtime.clock())
            invoice_id = row.invoice_id
        if invoice_id:
            # The invoice's credited amount changed (Stripe may send no invoice event for a
            # credit note on a paid invoice): its CRM record is rewritten from Stripe.
            sync_invoice(runtime, invoice_id, customer_id, "invoice.updated")
        return f"credit note {note['status']}"
    raise KeptChanging(f"credit note {note_id} changed during each of {MAX_REFETCH} fetches")


def on_credit_note_event(runtime: Runtime, event: dict[str, Any]) -> str:
    about = event_object(event)
    return sync_credit_note(runtime, about.object_id, about.customer_id, about.event_type)
