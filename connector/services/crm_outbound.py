"""dealbridge -> CRM: writes owed to the CRM, queued in the outbox in the caller's transaction,
and the senders the worker delivers them with.

Queuing (rather than calling the CRM inline) means a CRM outage never loses a write and
never blocks billing: the state change and the write it owes commit together, and the
worker sends them, batched and in order, when the CRM answers again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.crm.base import (
    AccountUpdate,
    CrmAccount,
    DealUpdate,
    InvoiceRecord,
    Money,
    WriteResult,
)
from connector.runtime import Runtime
from connector.services import outbox
from connector.services.crm_changes import ACCOUNT_CHANGED, queue_change
from connector.store import audit
from connector.store.lease import DONE, PENDING
from connector.store.models import OutboxMessage

log = logging.getLogger(__name__)

UPDATE_DEAL = "crm.update_deal"
UPDATE_ACCOUNT = "crm.update_account"
UPSERT_INVOICE = "crm.upsert_invoice"
#: dealbridge's own credit hold or release: written only if the CRM still allows it.
SET_CREDIT_HOLD = "crm.set_credit_hold"
#: An account's derived figures (MRR, net billing, open balance) changed: recompute and write
#: them (``account_metrics.send_figures``), instead of waiting for the clock job.
ACCOUNT_FIGURES_DUE = "account.figures_due"


def queue_account_figures(session: Session, account_id: str | None, now: datetime) -> None:
    """In the caller's transaction: recompute the account's CRM figures soon (a subscription,
    invoice or credit note of it changed). One waiting recomputation per account is enough,
    so a burst of events queues one; the waiting row is locked, so no worker computes it
    before the change that owes it commits."""
    if not account_id:
        return
    outbox.enqueue_unless_waiting(
        session, ACCOUNT_FIGURES_DUE, f"figures:{account_id}", {"account_id": account_id}, now
    )


def update_deal(runtime: Runtime, session: Session, deal_id: str, update: DealUpdate) -> None:
    outbox.enqueue(
        session,
        kind=UPDATE_DEAL,
        ordering_key=f"deal:{deal_id}",
        payload={"deal_id": deal_id, "update": dict(update)},
        now=runtime.clock(),
    )


def update_account(
    runtime: Runtime,
    session: Session,
    account_id: str,
    update: AccountUpdate,
    *,
    flush: bool = True,
) -> OutboxMessage | None:
    """Queue the account's fields; returns the message (``flush=False``: no id yet)."""
    encoded = _encoded(update)
    return outbox.enqueue(
        session,
        kind=UPDATE_ACCOUNT,
        ordering_key=f"account:{account_id}",
        payload={"account_id": account_id, "update": encoded},
        now=runtime.clock(),
        flush=flush,
    )


def _encoded(update: AccountUpdate) -> dict[str, Any]:
    return {
        key: ({"amount": v.amount, "currency": v.currency} if isinstance(v, Money) else v)
        for key, v in update.items()
    }


def fold_into_waiting(tail: OutboxMessage | None, update: AccountUpdate) -> bool:
    """Put these account fields into ``tail`` -- the account's newest queued message -- if it
    is an account write still waiting to be sent; False (nothing changed) otherwise.

    The CRM then gets one write carrying the newest value of every field instead of two in a
    row (a burst's open balance and figures, written once per account). Only a ``pending``
    plain account write qualifies: one being sent or failing keeps what it was sent with,
    and a credit hold write is conditional (``send_credit_hold``), so never merged into.
    """
    if tail is None or tail.kind != UPDATE_ACCOUNT or tail.status != PENDING:
        return False
    payload = dict(tail.payload or {})
    payload["update"] = {**(payload.get("update") or {}), **_encoded(update)}
    tail.payload = payload
    return True


def queue_account_update(
    runtime: Runtime, session: Session, account_id: str, update: AccountUpdate
) -> None:
    """``update_account``, folded into the account's waiting write when there is one."""
    tail = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.ordering_key == f"account:{account_id}")
        .order_by(OutboxMessage.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if not fold_into_waiting(tail, update):
        update_account(runtime, session, account_id, update)


def set_credit_hold(
    runtime: Runtime, session: Session, account_id: str, *, hold: bool, note: str, epoch: int
) -> None:
    """Queue dealbridge's hold (or the release of its hold ``epoch``) for the account.

    Unlike other account writes this one is conditional, because a person may act on the
    same field between the decision and the write: see ``send_credit_hold``. It shares the
    account's ordering key, so it lands in order with the account's other writes.
    """
    outbox.enqueue(
        session,
        kind=SET_CREDIT_HOLD,
        ordering_key=f"account:{account_id}",
        payload={
            "account_id": account_id,
            "epoch": epoch,
            "update": {
                "credit_hold": hold,
                "credit_hold_source": "dealbridge" if hold else None,
                "credit_note": note,
            },
        },
        now=runtime.clock(),
    )


def link_account(runtime: Runtime, session: Session, account_id: str, customer_id: str) -> None:
    update_account(
        runtime,
        session,
        account_id,
        {
            "stripe_customer_id": customer_id,
            "stripe_customer_url": runtime.stripe.customer_url(customer_id),
        },
    )


def _invoice_payload(record: InvoiceRecord) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in record.__dict__.items()}


def upsert_invoice(runtime: Runtime, session: Session, record: InvoiceRecord) -> None:
    outbox.enqueue(
        session,
        kind=UPSERT_INVOICE,
        ordering_key=f"invoice:{record.stripe_invoice_id}",
        payload=_invoice_payload(record),
        now=runtime.clock(),
        flush=False,  # nobody needs its id; a batch of invoices is inserted at once
    )


def upsert_invoices(runtime: Runtime, session: Session, records: list[InvoiceRecord]) -> None:
    """``upsert_invoice`` for many records, in one multi-row insert (a backfill's chunk)."""
    outbox.enqueue_many(
        session,
        UPSERT_INVOICE,
        [(f"invoice:{r.stripe_invoice_id}", _invoice_payload(r)) for r in records],
        runtime.clock(),
    )


# --------------------------------------------------------------------------- senders


def _decode_account_update(encoded: Mapping[str, Any]) -> AccountUpdate:
    update: dict[str, Any] = {}
    for key, value in encoded.items():
        if isinstance(value, Mapping) and set(value) == {"amount", "currency"}:
            update[key] = Money(int(value["amount"]), str(value["currency"]))
        else:
            update[key] = value
    return update  # type: ignore[return-value]


def invoice_record_from_payload(payload: Mapping[str, Any]) -> InvoiceRecord:
    values = dict(payload)
    for key in ("issue_date", "due_date", "paid_date"):
        if values.get(key):
            values[key] = date.fromisoformat(values[key])
    return InvoiceRecord(**values)


def crm_batch_size(runtime: Runtime) -> int:
    """The largest batch of writes the CRM adapter sends in one call."""
    return runtime.crm.batch_size


def crm_bulk_size(runtime: Runtime) -> int:
    """The most records worth handing the adapter at once: just above its bulk threshold
    when it has one (one Bulk API 2.0 job, a handful of calls for thousands of records;
    below it the adapter sends Collections of ``batch_size``), else ``batch_size``."""
    threshold = getattr(runtime.crm, "bulk_threshold", None)
    if isinstance(threshold, int) and threshold > 0:
        return threshold + 1
    return runtime.crm.batch_size


def send_deal_update(runtime: Runtime, payload: dict[str, Any]) -> None:
    runtime.crm.update_deal(payload["deal_id"], payload["update"])


def send_account_updates(runtime: Runtime, payloads: list[dict[str, Any]]) -> list[WriteResult]:
    return runtime.crm.update_accounts(
        [(p["account_id"], _decode_account_update(p["update"])) for p in payloads]
    )


def send_invoice_upserts(runtime: Runtime, payloads: list[dict[str, Any]]) -> list[WriteResult]:
    return runtime.crm.upsert_invoices([invoice_record_from_payload(p) for p in payloads])


def send_credit_hold(runtime: Runtime, payload: dict[str, Any]) -> None:
    """Write dealbridge's hold or release unless a person got there first.

    The account is read just before the write. A hold is written only if the account is not
    on hold: a person's hold keeps its source, so paying never lifts it. A release is written
    only if the account is still on hold and not marked as a person's. When the write no
    longer applies it is skipped, audited, and the account is queued to be settled again
    from what the CRM now says; a release waiting behind a skipped hold is dropped with it,
    since the hold it would release never landed.
    """
    account_id = str(payload["account_id"])
    hold = bool(payload["update"]["credit_hold"])
    account = runtime.crm.get_account(account_id)
    if hold:
        applies = not account.credit_hold
    else:
        applies = account.credit_hold and account.credit_hold_source != "person"
    if applies:
        [result] = runtime.crm.update_accounts(
            [(account_id, _decode_account_update(payload["update"]))]
        )
        if not result.ok:
            error = result.error or "the CRM refused the credit hold"
            raise outbox.RetryableError(error) if result.retryable else outbox.PermanentError(error)
        return
    _skip_credit_hold(runtime, account, payload)


def _skip_credit_hold(runtime: Runtime, account: CrmAccount, payload: dict[str, Any]) -> None:
    """Record the skip and queue the account to be settled again, in one transaction."""
    hold = bool(payload["update"]["credit_hold"])
    epoch = int(payload.get("epoch") or 0)
    now = runtime.clock()
    with runtime.db.session() as session:
        if hold:
            _drop_queued_release(session, account.id, epoch, now)
        audit.record(
            session,
            actor="dealbridge",
            action="credit.write_skipped",
            subject_type="account",
            subject_id=account.id,
            wanted="hold" if hold else "release",
            epoch=epoch,
            crm_credit_hold=account.credit_hold,
            crm_credit_hold_source=account.credit_hold_source,
        )
        queue_change(
            session,
            f"credit-write-skipped:{account.id}:{uuid.uuid4().hex}",
            ACCOUNT_CHANGED,
            {"id": account.id},
            now,
        )
    log.info(
        "not writing dealbridge's %s for account %s: the CRM already shows hold=%s (source %s)",
        "hold" if hold else "release", account.id, account.credit_hold,
        account.credit_hold_source,
    )  # fmt: skip


def _drop_queued_release(session: Session, account_id: str, epoch: int, now: datetime) -> None:
    queued = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.kind == SET_CREDIT_HOLD,
            OutboxMessage.ordering_key == f"account:{account_id}",
            OutboxMessage.status == PENDING,
        )
    )
    for message in queued:
        payload = message.payload or {}
        if payload.get("epoch") == epoch and not (payload.get("update") or {}).get("credit_hold"):
            message.status = DONE
            message.done_at = now
            message.last_error = "skipped: the hold it releases was never written"
