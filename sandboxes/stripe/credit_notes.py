"""Credit notes (``/v1/credit_notes``): issue, list, retrieve, update and void.

A credit note adjusts a finalized (open or paid) invoice, as Stripe's do. Its amount first
lowers the invoice's ``amount_due`` and ``amount_remaining`` (not below zero): that part is
its ``pre_payment_amount`` and adds to the invoice's ``pre_payment_credit_notes_amount``; an
invoice whose ``amount_remaining`` reaches zero this way is paid. The rest is its
``post_payment_amount`` (adding to ``post_payment_credit_notes_amount``), which must be
covered exactly by ``credit_amount`` (a credit to the customer's balance) and
``out_of_band_amount``. The ``type`` says which part there is: ``pre_payment``,
``post_payment`` or ``mixed``. Voiding gives a note's pre-payment amount back to its invoice,
which must still be open.
"""

from __future__ import annotations

import copy
from typing import Any

from . import invoices, payments
from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .params import Params, metadata_patch
from .state import State
from .store import created_filter
from .timeutil import format_money

JSON = dict[str, Any]

REASONS = ["duplicate", "fraudulent", "order_change", "product_unsatisfactory"]
LINE_TYPES = ["custom_line_item", "invoice_line_item"]
#: Invoice statuses a credit note can be issued for.
CREDITABLE = ("open", "paid")

_CREATE = [
    "invoice",
    "amount",
    "lines",
    "memo",
    "reason",
    "metadata",
    "out_of_band_amount",
    "credit_amount",
    "effective_at",
    "email_type",
    "refund_amount",
    "refunds",
]
_LINE = [
    "type",
    "amount",
    "description",
    "invoice_line_item",
    "quantity",
    "unit_amount",
    "metadata",
]


# -- amounts ------------------------------------------------------------------------------------


def _live_notes(state: State, invoice_id: str) -> list[JSON]:
    """The invoice's credit notes that still count (not voided)."""
    return [
        n
        for n in state.store.all("credit_note")
        if n["invoice"] == invoice_id and n["status"] == "issued"
    ]


def _credited_on_line(state: State, invoice_id: str, line_id: str) -> int:
    return sum(
        int(line["amount"])
        for note in _live_notes(state, invoice_id)
        for line in note["lines"]["data"]
        if line.get("invoice_line_item") == line_id
    )


def _unit_amount(invoice_line: JSON) -> int | None:
    """The invoice line's whole-unit price, when it has one."""
    quantity = int(invoice_line.get("quantity") or 0)
    if quantity <= 0 or int(invoice_line["amount"]) % quantity:
        return None
    return int(invoice_line["amount"]) // quantity


# -- lines --------------------------------------------------------------------------------------


def _line_metadata(p: Params) -> dict[str, str] | None:
    if not p.has("metadata"):
        return None
    patch = p.metadata() or {}
    return {k: v for k, v in patch.items() if v != ""}


def _custom_line(state: State, p: Params) -> JSON:
    for key in ("amount", "invoice_line_item"):
        if p.has(key):
            raise invalid_param(
                p.name(key),
                f"You may only specify `{key}` for a credit note line item of type "
                "`invoice_line_item`.",
                None,
            )
    unit = p.get_int("unit_amount", required=True, minimum=0)
    quantity = p.get_int("quantity", minimum=1)
    description = p.get_str("description", required=True)
    assert unit is not None
    quantity = 1 if quantity is None else quantity
    return {
        "id": state.store.new_id("cnli_"),
        "object": "credit_note_line_item",
        "amount": unit * quantity,
        "description": description,
        "discount_amount": 0,
        "discount_amounts": [],
        "livemode": False,
        "quantity": quantity,
        "tax_rates": [],
        "type": "custom_line_item",
        "unit_amount": unit,
        "unit_amount_decimal": str(unit),
        "pretax_credit_amounts": [],
        "taxes": [],
        "metadata": _line_metadata(p),
    }


def _invoice_line(state: State, invoice: JSON, p: Params, pending: dict[str, int]) -> JSON:
    """A line crediting (part of) one of the invoice's own lines; ``pending`` holds what earlier
    lines of the same request already credit, by invoice line id."""
    if p.has("unit_amount"):
        raise invalid_param(
            p.name("unit_amount"),
            "You may only specify `unit_amount` for a credit note line item of type "
            "`custom_line_item`.",
            None,
        )
    line_id = p.get_str("invoice_line_item", required=True)
    assert line_id is not None
    target = next((line for line in invoice["lines"]["data"] if line["id"] == line_id), None)
    if target is None:
        raise no_such("line_item", line_id, param=p.name("invoice_line_item"), status=400)
    amount = p.get_int("amount", minimum=0)
    quantity = p.get_int("quantity", minimum=1)
    unit = _unit_amount(target)
    if amount is not None and quantity is not None:
        raise StripeError(
            400,
            "You may only specify one of these parameters: "
            f"{p.name('amount')}, {p.name('quantity')}.",
            param=p.name("amount"),
        )
    if quantity is not None:
        if quantity > int(target["quantity"]):
            raise invalid_param(
                p.name("quantity"),
                f"The quantity to credit ({quantity}) exceeds the quantity of invoice line item "
                f"{line_id} ({target['quantity']}).",
                None,
            )
        if unit is None:
            raise invalid_param(
                p.name("quantity"),
                f"Invoice line item {line_id} has no whole unit amount; credit it by `amount`.",
                None,
            )
        amount = unit * quantity
    elif amount is None:
        amount = int(target["amount"])
        quantity = int(target["quantity"])
    else:
        quantity = 1
    creditable = (
        int(target["amount"])
        - _credited_on_line(state, invoice["id"], line_id)
        - pending.get(line_id, 0)
    )
    if amount > creditable:
        raise invalid_param(
            p.name("quantity") if p.has("quantity") else p.name("amount"),
            f"The amount to credit for invoice line item {line_id} "
            f"({format_money(amount, invoice['currency'])}) exceeds the amount that remains "
            f"creditable on it ({format_money(max(creditable, 0), invoice['currency'])}).",
            None,
        )
    pending[line_id] = pending.get(line_id, 0) + amount
    return {
        "id": state.store.new_id("cnli_"),
        "object": "credit_note_line_item",
        "amount": amount,
        "description": target["description"],
        "discount_amount": 0,
        "discount_amounts": [],
        "invoice_line_item": line_id,
        "livemode": False,
        "quantity": quantity,
        "tax_rates": [],
        "type": "invoice_line_item",
        "unit_amount": unit,
        "unit_amount_decimal": str(unit) if unit is not None else None,
        "pretax_credit_amounts": [],
        "taxes": [],
        "metadata": _line_metadata(p),
    }


def _lines(state: State, invoice: JSON, p: Params) -> list[JSON]:
    pending: dict[str, int] = {}
    lines = []
    for entry in p.items("lines"):
        entry.reject_unknown(_LINE)
        kind = entry.get_enum("type", LINE_TYPES, required=True)
        if kind == "custom_line_item":
            lines.append(_custom_line(state, entry))
        else:
            lines.append(_invoice_line(state, invoice, entry, pending))
    return lines


# -- effects ------------------------------------------------------------------------------------


def _credit_balance(state: State, note: JSON, amount: int, at: int) -> str:
    """Move ``amount`` into the customer's balance (negative: credit); returns the
    customer_balance_transaction's id."""
    customer = state.store.objects[note["customer"]]
    before = state.store.render(customer)
    customer["balance"] = int(customer["balance"]) - amount
    if customer.get("currency") is None:
        customer["currency"] = note["currency"]
    txn: JSON = {
        "id": state.store.new_id("cbtxn_"),
        "object": "customer_balance_transaction",
        "amount": -amount,
        "checkout_session": None,
        "created": at,
        "credit_note": note["id"],
        "currency": note["currency"],
        "customer": customer["id"],
        "customer_account": None,
        "description": None,
        "ending_balance": customer["balance"],
        "invoice": note["invoice"],
        "livemode": False,
        "metadata": None,
        "type": "credit_note",
    }
    state.store.add(txn)
    state.emit("customer.updated", customer, previous=before, at=at)
    return str(txn["id"])


def _apply_to_invoice(state: State, invoice: JSON, pre: int, post: int, at: int) -> None:
    """Lower (or, negated, restore) the invoice's amounts; a fully credited open invoice is
    paid."""
    before = state.store.render(invoice)
    invoice["amount_due"] = int(invoice["amount_due"]) - pre
    invoice["amount_remaining"] = int(invoice["amount_remaining"]) - pre
    invoice["pre_payment_credit_notes_amount"] = (
        int(invoice["pre_payment_credit_notes_amount"]) + pre
    )
    invoice["post_payment_credit_notes_amount"] = (
        int(invoice["post_payment_credit_notes_amount"]) + post
    )
    state.emit("invoice.updated", invoice, previous=before, at=at)
    if invoice["status"] == "open" and invoice["amount_remaining"] == 0:
        invoices.mark_paid(state, invoice, at, out_of_band=False, emit_payment=False)


def _refunds(call: Call, invoice: JSON) -> tuple[int, list[tuple[JSON, int]]]:
    """``refund_amount`` (a new refund of the invoice's payment) or ``refunds[]`` (existing
    refunds of it, each with ``amount_refunded``): the amount and the existing refunds."""
    p = call.params
    existing: list[tuple[JSON, int]] = []
    for entry in p.items("refunds"):
        entry.reject_unknown(["refund", "amount_refunded", "payment_record_refund", "type"])
        refund_id = entry.get_str("refund", required=True)
        assert refund_id is not None
        refund = call.store.require(refund_id, "refund", param=entry.name("refund"), status=400)
        amount = entry.get_int("amount_refunded", minimum=1)
        existing.append((refund, int(refund["amount"]) if amount is None else amount))
    new = p.get_int("refund_amount", minimum=0) or 0
    if new and existing:
        raise StripeError(
            400, "You may only specify one of these parameters: refund_amount, refunds."
        )
    return new + sum(amount for _, amount in existing), existing


def _refund(
    state: State,
    invoice: JSON,
    note: JSON,
    amount: int,
    existing: list[tuple[JSON, int]],
    at: int,
) -> list[JSON]:
    """The note's ``refunds``: the existing ones, or a new refund of the invoice's charge."""
    if existing:
        return [
            {
                "amount_refunded": refunded,
                "payment_record_refund": None,
                "refund": refund["id"],
                "type": "refund",
            }
            for refund, refunded in existing
        ]
    if not amount:
        return []
    intent = payments.intent_of(state, invoice)
    charge = state.store.objects.get((intent or {}).get("latest_charge") or "")
    if charge is None or charge["status"] != "succeeded":
        raise invalid_param(
            "refund_amount",
            "The invoice was not paid through Stripe, so there is no payment to refund; use "
            "`out_of_band_amount` or `credit_amount`.",
            None,
        )
    refund = payments.refund_charge(state, charge, amount, at, metadata=None, param="refund_amount")
    refund["metadata"] = {}
    return [
        {
            "amount_refunded": amount,
            "payment_record_refund": None,
            "refund": refund["id"],
            "type": "refund",
        }
    ]


# -- HTTP handlers ------------------------------------------------------------------------------


def _require(call: Call) -> JSON:
    note = call.store.get(call.arg(), "credit_note")
    if note is None:
        raise no_such("credit_note", call.arg())
    return note


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(_CREATE)
    invoice_id = p.get_str("invoice", required=True)
    assert invoice_id is not None
    invoice = call.store.require(invoice_id, "invoice", param="invoice", status=400)
    if invoice["status"] not in CREDITABLE:
        raise invalid_request(
            "Credit notes can only be issued for finalized invoices with a status of `open` or "
            f"`paid`; this invoice's status is `{invoice['status']}`.",
            param="invoice",
        )
    amount = p.get_int("amount", minimum=1)
    credit_amount = p.get_int("credit_amount", minimum=0)
    out_of_band = p.get_int("out_of_band_amount", minimum=0)
    refund_amount, existing_refunds = _refunds(call, invoice)
    memo = p.get_str("memo", allow_empty=True) or None
    reason = p.get_enum("reason", REASONS)
    effective_at = p.get_int("effective_at", minimum=0)
    p.get_enum("email_type", ["credit_note", "none"])
    lines = _lines(call.state, invoice, p)
    if amount is None and not lines:
        raise StripeError(400, "One of `amount`, `lines`, or `shipping_cost` must be provided.")
    total = sum(int(line["amount"]) for line in lines) if lines else amount
    assert total is not None
    currency = invoice["currency"]
    if amount is not None and lines and amount != total:
        raise invalid_param(
            "amount",
            f"The amount ({format_money(amount, currency)}) must equal the sum of the credit "
            f"note's line items ({format_money(total, currency)}).",
            None,
        )
    if total <= 0:
        raise invalid_param("lines", "The credit note amount must be greater than zero.", None)
    credited = sum(int(n["amount"]) for n in _live_notes(call.state, invoice["id"]))
    if credited + total > int(invoice["total"]):
        raise invalid_param(
            "amount" if amount is not None else "lines",
            f"The credit note amount ({format_money(total, currency)}) exceeds the amount that "
            "remains creditable on the invoice "
            f"({format_money(max(int(invoice['total']) - credited, 0), currency)}): the sum of "
            "all credit notes can't exceed the invoice's total.",
            None,
        )
    remaining = int(invoice["amount_remaining"]) if invoice["status"] == "open" else 0
    pre = min(total, max(remaining, 0))
    post = total - pre
    covered = (credit_amount or 0) + (out_of_band or 0) + refund_amount
    if covered != post:
        raise invalid_request(
            "The sum of credit amount, refund amount and out of band amount "
            f"({format_money(covered, currency)}) must equal the credit note amount "
            f"({format_money(post, currency)})."
            if post == total
            else "The sum of credit amount, refund amount and out of band amount "
            f"({format_money(covered, currency)}) must equal the credit note's post-payment "
            f"amount ({format_money(post, currency)})."
        )
    at = call.state.time_for_customer(invoice["customer"])
    sequence = 1 + sum(1 for n in call.store.all("credit_note") if n["invoice"] == invoice["id"])
    note_id = call.store.new_id("cn_")
    note: JSON = {
        "id": note_id,
        "object": "credit_note",
        "amount": total,
        "amount_shipping": 0,
        "created": at,
        "currency": currency,
        "customer": invoice["customer"],
        "customer_account": None,
        "customer_balance_transaction": None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": effective_at if effective_at is not None else at,
        "invoice": invoice["id"],
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "url": f"/v1/credit_notes/{note_id}/lines",
        },
        "livemode": False,
        "memo": memo,
        "metadata": {},
        "number": f"{invoice['number']}-CN-{sequence:02d}",
        "out_of_band_amount": out_of_band,
        "pdf": f"{call.state.base_url}/credit_note/{note_id}/pdf",
        "post_payment_amount": post,
        "pre_payment_amount": pre,
        "pretax_credit_amounts": [],
        "reason": reason,
        "refunds": [],
        "shipping_cost": None,
        "status": "issued",
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_excluding_tax": total,
        "total_taxes": [],
        "type": "mixed" if pre and post else ("post_payment" if post else "pre_payment"),
        "voided_at": None,
        "_credit_amount": credit_amount or 0,
    }
    metadata_patch(p, note["metadata"])
    call.store.add(note)
    _apply_to_invoice(call.state, invoice, pre, post, at)
    if credit_amount:
        note["customer_balance_transaction"] = _credit_balance(call.state, note, credit_amount, at)
    note["refunds"] = _refund(call.state, invoice, note, refund_amount, existing_refunds, at)
    call.state.emit("credit_note.created", note, at=at)
    return call.store.render(note)


def retrieve(call: Call) -> JSON:
    return call.store.render(_require(call))


def update(call: Call) -> JSON:
    note = _require(call)
    p = call.params
    p.reject_unknown(["memo", "metadata"])
    before = call.store.render(note)
    given, memo = p.get_nullable_str("memo")
    if given:
        note["memo"] = memo
    metadata_patch(p, note["metadata"])
    after = call.store.render(note)
    if after != before:
        call.state.emit("credit_note.updated", note, previous=before)
    return after


def void_(call: Call) -> JSON:
    note = _require(call)
    call.params.reject_unknown([])
    if note["status"] == "void":
        raise invalid_request("This credit note has already been voided.")
    invoice = call.store.objects[note["invoice"]]
    if invoice["status"] != "open":
        raise invalid_request("You can only void a credit note if the associated invoice is open.")
    at = call.state.time_for_customer(note["customer"])
    note["status"] = "void"
    note["voided_at"] = at
    _apply_to_invoice(
        call.state,
        invoice,
        -int(note["pre_payment_amount"]),
        -int(note["post_payment_amount"]),
        at,
    )
    if note["_credit_amount"]:
        _credit_balance(call.state, note, -int(note["_credit_amount"]), at)
    call.state.emit("credit_note.voided", note, at=at)
    return call.store.render(note)


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        [
            "created",
            "customer",
            "customer_account",
            "ending_before",
            "invoice",
            "limit",
            "starting_after",
        ]
    )
    customer = p.get_str("customer")
    customer_account = p.get_str("customer_account")
    invoice = p.get_str("invoice")
    in_range = created_filter(p)

    def keep(n: JSON) -> bool:
        return (
            (customer is None or n["customer"] == customer)
            and (customer_account is None or n["customer_account"] == customer_account)
            and (invoice is None or n["invoice"] == invoice)
            and in_range(n["created"])
        )

    return call.store.list_kind("credit_note", keep, p, "/v1/credit_notes")


def lines(call: Call) -> JSON:
    note = _require(call)
    call.params.reject_unknown(["limit", "starting_after", "ending_before"])
    data = note["lines"]["data"]
    limit = call.params.get_int("limit", minimum=1, maximum=100) or 10
    ids = [line["id"] for line in data]
    after = call.params.get_str("starting_after")
    before = call.params.get_str("ending_before")
    start, end = 0, len(data)
    if after is not None:
        if after not in ids:
            raise no_such("credit_note_line_item", after, param="starting_after", status=400)
        start = ids.index(after) + 1
        end = min(start + limit, len(data))
        has_more = len(data) > end
    elif before is not None:
        if before not in ids:
            raise no_such("credit_note_line_item", before, param="ending_before", status=400)
        end = ids.index(before)
        start = max(end - limit, 0)
        has_more = start > 0
    else:
        end = min(limit, len(data))
        has_more = len(data) > end
    return {
        "object": "list",
        "data": copy.deepcopy(data[start:end]),
        "has_more": has_more,
        "url": f"/v1/credit_notes/{note['id']}/lines",
    }
