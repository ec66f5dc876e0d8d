"""Bill again: a new invoice with the same prices and quantities as a one-time invoice."""

from __future__ import annotations

from typing import Any

from connector.billing.objects import plain
from connector.runtime import Runtime
from connector.services.lifecycle_operations import (
    LifecycleError,
    NotFound,
    call_stripe,
    ensure_not_on_hold,
    finish,
    new_operation,
    send_invoice,
)
from connector.store.models import InvoiceMirror, PriceMirror


def bill_again(runtime: Runtime, invoice_id: str, *, actor: str) -> str:
    """A new invoice with the same prices and quantities as a one-time invoice, sent now."""
    with runtime.db.session() as session:
        row = session.get(InvoiceMirror, invoice_id)
        if row is None or row.deleted:
            raise NotFound(f"No invoice {invoice_id} among linked customers.")
        if row.subscription_id is not None:
            raise LifecycleError(
                f"Invoice {invoice_id} belongs to subscription {row.subscription_id}; only "
                "one-time invoices can be billed again."
            )
        customer_id, account_id = row.stripe_customer_id, row.crm_account_id or ""
        due_days = 30
        if row.due_date is not None:
            due_days = max(0, (row.due_date - row.created).days)
    ensure_not_on_hold(runtime, account_id, "bill again")
    lines: list[dict[str, Any]] = []
    for line in call_stripe(lambda: list(runtime.stripe.iter_invoice_lines(invoice_id)), "read"):
        data = plain(line)
        details = (data.get("pricing") or {}).get("price_details") or {}
        quantity = int(data.get("quantity") or 1)
        price = details.get("price")
        if price and _is_one_time(runtime, price):
            lines.append({"pricing": {"price": price}, "quantity": quantity})
        elif details.get("product"):
            lines.append(
                {"price_data": {"currency": data["currency"], "product": details["product"],
                                "unit_amount": int(data["amount"]) // quantity},
                 "quantity": quantity}
            )  # fmt: skip
        else:
            lines.append(
                {"amount": int(data["amount"]), "currency": data["currency"],
                 "description": data.get("description") or "Billed again"}
            )  # fmt: skip
    op_id = new_operation(
        runtime, "bill_again", customer_id, account_id, invoice_id, actor, {"lines": lines}
    )
    metadata = {
        "dealbridge_lifecycle_id": op_id,
        "dealbridge_billed_again_from": invoice_id,
        "crm_account_id": account_id,
    }
    new_id = send_invoice(runtime, op_id, customer_id, due_days, metadata, lines, "bill again")
    finish(
        runtime, op_id, "completed", action="invoice.billed_again", subject_type="invoice",
        subject_id=invoice_id, invoice_id=new_id,
    )  # fmt: skip
    return new_id


def _is_one_time(runtime: Runtime, price_id: str) -> bool:
    with runtime.db.session() as session:
        mirrored = session.get(PriceMirror, price_id)
        if mirrored is not None:
            return mirrored.type == "one_time"
    price = call_stripe(lambda: runtime.stripe.retrieve_price(price_id), "read the price")
    return price.recurring is None
