"""Bill again: a new invoice for what is still owed on a one-time invoice: the same prices and
quantities, less what its credit notes credited."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connector.billing.objects import plain
from connector.domain.money import format_money
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
    """A new invoice for what is still owed on a one-time invoice (its lines less its credit
    notes; see ``still_owed``), sent now. Refused when credit notes cover it all."""
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
    originals = call_stripe(
        lambda: [plain(line) for line in runtime.stripe.iter_invoice_lines(invoice_id)], "read"
    )
    notes = call_stripe(
        lambda: [
            (plain(note), [plain(line) for line in lines])
            for note, lines in runtime.stripe.iter_invoice_credit_notes(invoice_id)
        ],
        "read the credit notes",
    )
    owed = still_owed(originals, notes)
    if sum(line.amount for line in owed) <= 0:
        raise LifecycleError(
            f"Nothing is still owed on invoice {invoice_id}: its credit notes cover it."
        )
    lines = [_invoice_item(runtime, line) for line in owed]
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


@dataclass(frozen=True)
class OwedLine:
    """What is still owed on one line of the original invoice (or, with a negative amount,
    a credit not tied to any line)."""

    amount: int
    currency: str
    quantity: int
    description: str
    price: str | None = None
    product: str | None = None
    credited: int = 0


def still_owed(
    lines: list[dict[str, Any]], notes: list[tuple[dict[str, Any], list[dict[str, Any]]]]
) -> list[OwedLine]:
    """The original invoice's lines less what its credit notes (not void) credited: a line's
    own credit lowers it (a fully credited line is dropped); what a note credits on no line
    (custom lines, or an amount without lines) becomes one negative line. Amounts are before
    tax, as both Stripe's invoice lines and credit note lines state them."""
    credited: dict[str, int] = defaultdict(int)
    loose: list[tuple[str, int]] = []
    for note, note_lines in notes:
        if note.get("status") == "void":
            continue
        on_lines = 0
        for entry in note_lines:
            target = entry.get("invoice_line_item")
            if entry.get("type") == "invoice_line_item" and target:
                credited[str(target)] += int(entry.get("amount") or 0)
                on_lines += int(entry.get("amount") or 0)
        # The rest of the note (custom lines, or an ``amount`` with no lines at all) credits
        # the invoice as a whole. ``subtotal`` is before tax, like the lines.
        subtotal = note.get("subtotal")
        whole = int(subtotal if subtotal is not None else note.get("amount") or 0)
        if whole - on_lines:
            loose.append((str(note.get("number") or note.get("id")), whole - on_lines))
    owed: list[OwedLine] = []
    currency = ""
    for data in lines:
        currency = str(data["currency"])
        details = (data.get("pricing") or {}).get("price_details") or {}
        amount = int(data["amount"])
        credit = credited.get(str(data.get("id")), 0)
        if amount - credit <= 0 and amount > 0:
            continue
        owed.append(
            OwedLine(
                amount=amount - credit,
                currency=currency,
                quantity=int(data.get("quantity") or 1),
                description=str(data.get("description") or "Billed again"),
                price=details.get("price"),
                product=details.get("product"),
                credited=credit,
            )
        )
    if loose:
        total = sum(amount for _, amount in loose)
        numbers = ", ".join(sorted({number for number, _ in loose}))
        owed.append(
            OwedLine(-total, currency, 1, f"Credited on credit note {numbers}", credited=total)
        )
    return owed


def _invoice_item(runtime: Runtime, line: OwedLine) -> dict[str, Any]:
    """One invoice item for a line still owed, billing exactly ``line.amount``: the same
    one-time price when nothing of it was credited, else the product at an exact unit amount
    (``unit_amount_decimal`` when the amount does not divide by the quantity), else an amount.
    """
    if line.credited == 0 and line.price and _is_one_time(runtime, line.price):
        return {"pricing": {"price": line.price}, "quantity": line.quantity}
    if line.product and line.amount > 0:
        price_data: dict[str, Any] = {"currency": line.currency, "product": line.product}
        quantity = line.quantity
        unit = Decimal(line.amount) / quantity
        if line.amount % quantity == 0:
            price_data["unit_amount"] = line.amount // quantity
        elif unit == unit.quantize(Decimal(1).scaleb(-12)):
            price_data["unit_amount_decimal"] = str(unit)
        else:
            price_data["unit_amount"], quantity = line.amount, 1  # never a lost minor unit
        return {"price_data": price_data, "quantity": quantity}
    description = line.description
    if line.credited and line.amount > 0:
        description = f"{description} (less {format_money(line.credited, line.currency)} credited)"
    return {"amount": line.amount, "currency": line.currency, "description": description}


def _is_one_time(runtime: Runtime, price_id: str) -> bool:
    with runtime.db.session() as session:
        mirrored = session.get(PriceMirror, price_id)
        if mirrored is not None:
            return mirrored.type == "one_time"
    price = call_stripe(lambda: runtime.stripe.retrieve_price(price_id), "read the price")
    return price.recurring is None
