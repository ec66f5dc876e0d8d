"""Credit notes of linked customers, mirrored as Stripe issues and voids them.

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

from connector.billing.gateway import StripeRejected
from connector.billing.objects import plain
from connector.domain.timestamps import datetime_from_unix
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.stripe_mirror import UNKNOWN_CUSTOMER, account_of_customer
from connector.store.locks import lock
from connector.store.models import CreditNoteMirror

CREDIT_NOTE_EVENTS = ("credit_note.created", "credit_note.updated", "credit_note.voided")


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
    row.synced_at = now
    return session.merge(row)


#: How many times a sync fetches again when another writer stored the note meanwhile.
MAX_REFETCH = 5


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
            mirror_credit_note(session, account_id, note, runtime.clock())
            crm_outbound.queue_account_figures(session, account_id, runtime.clock())
            return f"credit note {note['status']}"
    raise RuntimeError(f"credit note {note_id} changed during each of {MAX_REFETCH} fetches")


def on_credit_note_event(runtime: Runtime, event: dict[str, Any]) -> str:
    obj = event["data"]["object"]
    return sync_credit_note(runtime, obj["id"], obj.get("customer"), event["type"])
