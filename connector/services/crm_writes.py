"""Writes owed to the CRM, queued in the outbox inside the caller's transaction.

Queuing (rather than calling the CRM inline) means a CRM outage never loses a write and
never blocks billing: the state change and the write it owes commit together, and the
worker sends them, batched and in order, when the CRM answers again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from connector.crm.base import AccountUpdate, DealUpdate, InvoiceRecord, Money, WriteResult
from connector.runtime import Runtime
from connector.services import outbox

UPDATE_DEAL = "crm.update_deal"
UPDATE_ACCOUNT = "crm.update_account"
UPSERT_INVOICE = "crm.upsert_invoice"


def update_deal(runtime: Runtime, session: Session, deal_id: str, update: DealUpdate) -> None:
    outbox.enqueue(
        session,
        kind=UPDATE_DEAL,
        ordering_key=f"deal:{deal_id}",
        payload={"deal_id": deal_id, "update": dict(update)},
        now=runtime.clock(),
    )


def update_account(
    runtime: Runtime, session: Session, account_id: str, update: AccountUpdate
) -> None:
    encoded = {
        key: ({"amount": v.amount, "currency": v.currency} if isinstance(v, Money) else v)
        for key, v in update.items()
    }
    outbox.enqueue(
        session,
        kind=UPDATE_ACCOUNT,
        ordering_key=f"account:{account_id}",
        payload={"account_id": account_id, "update": encoded},
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


def upsert_invoice(runtime: Runtime, session: Session, record: InvoiceRecord) -> None:
    payload = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in record.__dict__.items()}
    outbox.enqueue(
        session,
        kind=UPSERT_INVOICE,
        ordering_key=f"invoice:{record.stripe_invoice_id}",
        payload=payload,
        now=runtime.clock(),
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


def _crm_batch_size(runtime: Runtime) -> int:
    return runtime.crm.batch_size


@outbox.senders.single(UPDATE_DEAL)
def send_deal_update(runtime: Runtime, payload: dict[str, Any]) -> None:
    runtime.crm.update_deal(payload["deal_id"], payload["update"])


@outbox.senders.batched(UPDATE_ACCOUNT, max_batch=_crm_batch_size)
def send_account_updates(runtime: Runtime, payloads: list[dict[str, Any]]) -> list[WriteResult]:
    return runtime.crm.update_accounts(
        [(p["account_id"], _decode_account_update(p["update"])) for p in payloads]
    )


@outbox.senders.batched(UPSERT_INVOICE, max_batch=_crm_batch_size)
def send_invoice_upserts(runtime: Runtime, payloads: list[dict[str, Any]]) -> list[WriteResult]:
    return runtime.crm.upsert_invoices([invoice_record_from_payload(p) for p in payloads])
