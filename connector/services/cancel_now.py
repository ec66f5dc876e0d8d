"""Cancel a subscription now and credit the unused part of its paid period: preview, confirm.

The credit must be rounded (docs/billing-rules.md, "Cancelling now"), so nothing is sent to
Stripe before a person has seen the exact figure and its rounding:

1. ``preview`` computes the credit of the period's invoice lines at today's date and stores
   it on a ``LifecycleOperation`` in status ``previewed``; nothing is written to Stripe.
2. ``confirm`` (the operation's id) recomputes it; if it is no longer what was shown (the day
   changed, the invoice was credited meanwhile), it refuses and asks for a new preview.
   Otherwise it stores the Stripe parameters on the operation (``pending``), issues the credit
   note on the period's invoice, cancels the subscription, mirrors both (the credit note
   reaches the CRM invoice record through ``sync_credit_note``) and audits the outcome with
   the person who confirmed. A retried confirm sends the stored parameters with the same
   idempotency keys, so Stripe answers with the same note and cancellation; a confirm of a
   completed operation returns its outcome without calling Stripe.

The credit note is made of custom lines (one per credited invoice line, "Unused time: ...")
so Stripe applies no discount of its own on top of the net amount already computed. On an
open invoice it first lowers ``amount_due`` (Stripe's pre-payment part); whatever exceeds the
amount remaining goes to the customer's balance (``credit_amount``) or back to the card
(``refund_amount``), as the person chose. ``credit="none"`` cancels now with no credit note.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any, Literal

from sqlalchemy import select

from connector.billing.gateway import StripeGatewayError
from connector.billing.objects import plain
from connector.domain.money import format_money
from connector.domain.timestamps import datetime_from_unix
from connector.domain.unused_time import (
    BilledLine,
    UnusedCredit,
    UnusedTimeError,
    exact_text,
    unused_credit,
)
from connector.runtime import Runtime
from connector.services.credit_notes import sync_credit_note
from connector.services.lifecycle_operations import (
    INACTIVE_STATUSES,
    LifecycleError,
    NotFound,
    StripeRefused,
    call_stripe,
    finish,
    mirrored_subscription,
    new_operation,
    operation_key,
)
from connector.services.subscription_sync import sync_subscription
from connector.store.locks import lock
from connector.store.models import LifecycleOperation

KIND = "cancel_now_credit"
CreditChoice = Literal["customer_balance", "refund", "none"]
CREDIT_CHOICES: tuple[str, ...] = ("customer_balance", "refund", "none")
CREDITABLE_INVOICES = ("open", "paid")


@dataclass(frozen=True)
class CancelNowPreview:
    """What confirming operation ``operation_id`` will do, as shown to the person."""

    operation_id: str
    subscription_id: str
    status: str
    credit: str
    figures: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"operation_id": self.operation_id, "subscription_id": self.subscription_id,
                "status": self.status, "credit": self.credit, **self.figures}  # fmt: skip


def _fraction_text(value: Fraction) -> str:
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


def _period_lines(invoice: dict[str, Any], lines: list[dict[str, Any]]) -> list[BilledLine]:
    """The invoice's positive lines that bill a period (not a one-off moment)."""
    billed = []
    for line in lines:
        period = line.get("period") or {}
        start, end = datetime_from_unix(period.get("start")), datetime_from_unix(period.get("end"))
        amount = int(line.get("amount") or 0)
        if start is None or end is None or end <= start or amount <= 0:
            continue
        discount = sum(int(d.get("amount") or 0) for d in line.get("discount_amounts") or [])
        billed.append(
            BilledLine(str(line["id"]), str(line.get("description") or line["id"]), amount,
                       discount, start, end)
        )  # fmt: skip
    return billed


def _figures(
    runtime: Runtime, subscription_id: str, credit: str, moment: datetime
) -> dict[str, Any]:
    """The credit at ``moment`` and how it will be issued, read from Stripe now."""
    subscription = plain(
        call_stripe(
            lambda: runtime.stripe.retrieve_subscription(subscription_id), "read the subscription"
        )
    )
    if subscription.get("status") in INACTIVE_STATUSES:
        raise LifecycleError(
            f"Subscription {subscription_id} is already {subscription['status']} in Stripe."
        )
    latest = subscription.get("latest_invoice")
    invoice_id = latest if isinstance(latest, str) else (latest or {}).get("id")
    figures: dict[str, Any] = {"as_of": moment.isoformat(), "invoice_id": invoice_id}
    if invoice_id is None:
        if credit != "none":
            raise LifecycleError(
                f"Subscription {subscription_id} has no invoice to credit; cancel it now with "
                'credit "none".'
            )
        return {**figures, "currency": None, "lines": [], "credit_amount": 0, "actions": {}}
    invoice = call_stripe(
        lambda: runtime.stripe.retrieve_invoice_data(invoice_id), "read the invoice"
    )
    lines = [
        plain(line)
        for line in call_stripe(
            lambda: list(runtime.stripe.iter_invoice_lines(invoice_id)), "read the invoice lines"
        )
    ]
    currency = str(invoice["currency"])
    try:
        result = unused_credit(currency, _period_lines(invoice, lines), moment)
    except UnusedTimeError as exc:
        raise LifecycleError(f"Invoice {invoice_id}: {exc}") from exc
    figures.update(_shown(result))
    figures["invoice_status"] = invoice["status"]
    figures["actions"] = credit_allocation(invoice, result.total, credit)
    return figures


def _shown(result: UnusedCredit) -> dict[str, Any]:
    currency = result.currency
    return {
        "currency": currency,
        "credit_amount": result.total,
        "credit_amount_text": format_money(result.total, currency),
        "exact_minor_units": _fraction_text(result.exact),
        "exact_text": exact_text(result.exact, currency),
        "rounding_minor_units": _fraction_text(result.total - result.exact),
        "rule": "per whole UTC day left in the line's period; each line rounded half up to "
        "the minor unit",
        "lines": [
            {"invoice_line": line.line_id, "description": line.description, "net": line.net,
             "period_days": line.period_days, "unused_days": line.unused_days,
             "exact_minor_units": _fraction_text(line.exact),
             "exact_text": exact_text(line.exact, currency), "credit": line.credit,
             "rounding_minor_units": _fraction_text(line.rounding)}
            for line in result.lines
        ],
    }  # fmt: skip


def credit_allocation(invoice: dict[str, Any], total: int, credit: str) -> dict[str, int]:
    """How Stripe will take the credit: ``reduce_amount_due`` first on an open invoice, then
    the chosen ``credit_amount`` (customer balance) or ``refund_amount``."""
    if credit == "none" or total == 0:
        return {}
    status = invoice["status"]
    if status not in CREDITABLE_INVOICES:
        raise LifecycleError(
            f"Invoice {invoice['id']} of the period is {status}; Stripe credits only open or "
            'paid invoices. Cancel now with credit "none", or credit it by hand in Stripe.'
        )
    credited = int(invoice.get("pre_payment_credit_notes_amount") or 0) + int(
        invoice.get("post_payment_credit_notes_amount") or 0
    )
    creditable = int(invoice["total"]) - credited
    if total > creditable:
        currency = str(invoice["currency"])
        raise LifecycleError(
            f"The unused time ({format_money(total, currency)}) exceeds what remains "
            f"creditable on invoice {invoice['id']} ({format_money(creditable, currency)}) "
            "after its earlier credit notes; credit it by hand in Stripe."
        )
    remaining = int(invoice["amount_remaining"]) if status == "open" else 0
    pre = min(total, max(remaining, 0))
    post = total - pre
    actions: dict[str, int] = {}
    if pre:
        actions["reduce_amount_due"] = pre
    if post:
        actions["credit_amount" if credit == "customer_balance" else "refund_amount"] = post
    return actions


def _check_choice(credit: str) -> None:
    if credit not in CREDIT_CHOICES:
        raise LifecycleError(f"credit must be one of {', '.join(CREDIT_CHOICES)}; got {credit!r}.")


def preview(runtime: Runtime, subscription_id: str, *, credit: str, actor: str) -> CancelNowPreview:
    """Compute the credit of cancelling now and store it for confirmation; Stripe unchanged."""
    _check_choice(credit)
    row = mirrored_subscription(runtime, subscription_id)
    if row.status in INACTIVE_STATUSES:
        raise LifecycleError(f"Subscription {subscription_id} is already {row.status}.")
    figures = _figures(runtime, subscription_id, credit, runtime.clock())
    op_id = new_operation(
        runtime, KIND, row.stripe_customer_id, row.crm_account_id, subscription_id, actor,
        {"credit": credit, "previewed": figures},
    )  # fmt: skip
    with runtime.db.session() as session:
        op = session.get(LifecycleOperation, op_id)
        assert op is not None
        op.status = "previewed"
    return CancelNowPreview(op_id, subscription_id, "previewed", credit, figures)


def _load(runtime: Runtime, operation_id: str, subscription_id: str | None) -> LifecycleOperation:
    with runtime.db.session() as session:
        op = session.scalars(
            select(LifecycleOperation).where(
                LifecycleOperation.id == operation_id, LifecycleOperation.kind == KIND
            )
        ).first()
        if op is None or (subscription_id is not None and op.source_id != subscription_id):
            raise NotFound(f"No preview {operation_id} of cancelling this subscription now.")
        session.expunge(op)
        return op


def _same(shown: dict[str, Any], now: dict[str, Any]) -> bool:
    keys = ("invoice_id", "credit_amount", "lines", "actions")
    return all(shown.get(k) == now.get(k) for k in keys)


def _note_params(op: LifecycleOperation, figures: dict[str, Any]) -> dict[str, Any] | None:
    actions = figures.get("actions") or {}
    if not actions:
        return None
    lines = [
        {"type": "custom_line_item", "quantity": 1, "unit_amount": line["credit"],
         "description": f"Unused time: {line['description']}, {line['unused_days']} of "
                        f"{line['period_days']} days"}
        for line in figures["lines"] if line["credit"] > 0
    ]  # fmt: skip
    params: dict[str, Any] = {
        "invoice": figures["invoice_id"],
        "lines": lines,
        "reason": "order_change",
        "memo": f"Unused time of subscription {op.source_id}, cancelled "
        f"{figures['as_of'][:10]} (UTC)",
        "metadata": {"dealbridge_lifecycle_id": op.id, "dealbridge_cancels": op.source_id},
    }
    for key in ("credit_amount", "refund_amount"):
        if key in actions:
            params[key] = actions[key]
    return params


def _start(runtime: Runtime, op: LifecycleOperation, actor: str) -> dict[str, Any]:
    """Recompute, compare with the preview, and store what will be sent (``pending``)."""
    shown = op.details["previewed"]
    now = _figures(runtime, op.source_id, op.details["credit"], runtime.clock())
    if not _same(shown, now):
        raise LifecycleError(
            f"The credit is no longer what was shown ({shown.get('credit_amount_text', 'none')} "
            f"on {shown['as_of'][:10]}; now {now.get('credit_amount_text', 'none')}). Nothing was "
            "sent; preview again."
        )
    params = _note_params(op, shown)
    with runtime.db.session() as session:
        lock(session, f"cancel_now:{op.source_id}")
        row = session.get(LifecycleOperation, op.id, with_for_update=True)
        assert row is not None
        other = session.scalars(
            select(LifecycleOperation.id).where(
                LifecycleOperation.kind == KIND,
                LifecycleOperation.source_id == op.source_id,
                LifecycleOperation.status.in_(("pending", "completed")),
                LifecycleOperation.id != op.id,
            )
        ).first()
        if other is not None:
            # Another preview of the same subscription was confirmed: crediting this one
            # too would credit the same days twice. (Checked under the lock, for two
            # confirmations at the same moment; one after the other, the subscription's
            # status in Stripe already refuses it.)
            raise LifecycleError(
                f"Subscription {op.source_id} was already cancelled now by operation {other}; "
                "nothing was sent."
            )
        if row.status == "previewed":
            row.status = "pending"
            row.details = {**row.details, "note_params": params, "previewed_by": row.actor}
            row.actor = actor
        return dict(row.details)


def confirm(
    runtime: Runtime, operation_id: str, *, actor: str, subscription_id: str | None = None
) -> tuple[CancelNowPreview, bool]:
    """Do what preview ``operation_id`` showed. Returns the outcome and whether it was done
    by this call (False: an earlier confirm had done it, nothing was sent again)."""
    op = _load(runtime, operation_id, subscription_id)
    if op.status == "completed":
        return _outcome(op), False
    if op.status == "failed":
        raise LifecycleError(f"Cancelling {op.source_id} now failed: {op.details.get('error')}")
    retry = op.status == "pending"
    details = op.details if retry else _start(runtime, op, actor)
    params = details.get("note_params")
    note_id = _issued_note(runtime, op.id, params["invoice"]) if retry and params else None
    if params is not None and note_id is None:
        note_id = _issue_note(runtime, op, params)
    _cancel(runtime, op)
    sync_subscription(runtime, op.source_id, op.stripe_customer_id)
    if note_id is not None:
        sync_credit_note(runtime, note_id, op.stripe_customer_id, "credit_note.created")
    shown = details["previewed"]
    with runtime.db.session() as session:
        row = session.get(LifecycleOperation, op.id)
        assert row is not None
        row.details = {**row.details, "credit_note_id": note_id}
    finish(
        runtime, op.id, "completed", action="subscription.cancel_now", subject_type="subscription",
        subject_id=op.source_id, credit=details["credit"], credit_note_id=note_id,
        credit_amount=shown.get("credit_amount", 0), currency=shown.get("currency"),
        invoice_id=shown.get("invoice_id"), previewed_by=details.get("previewed_by"),
    )  # fmt: skip
    return _outcome(_load(runtime, op.id, None)), True


def _issued_note(runtime: Runtime, op_id: str, invoice_id: str) -> str | None:
    """The credit note an earlier attempt of the operation issued, if any: Stripe keeps
    idempotency keys for 24 hours only, so a later retry looks before issuing."""
    notes = call_stripe(
        lambda: list(runtime.stripe.iter_invoice_credit_notes(invoice_id)),
        "list the invoice's credit notes",
    )
    for note, _lines in notes:
        if (plain(note).get("metadata") or {}).get("dealbridge_lifecycle_id") == op_id:
            return str(note.id)
    return None


def _issue_note(runtime: Runtime, op: LifecycleOperation, params: dict[str, Any]) -> str:
    """Issue the credit note. Stripe refusing it (a refund of an invoice paid outside
    Stripe) ends the operation as failed before anything changed: a new preview may choose
    otherwise. An outage leaves it pending, to be confirmed again with the same key."""
    try:
        note = runtime.stripe.create_credit_note(params, operation_key(op.id, "credit_note"))  # type: ignore[arg-type]
    except StripeGatewayError as exc:
        if exc.retryable:
            raise StripeRefused(
                f"Stripe did not answer while issuing the credit note ({exc}); nothing was "
                "cancelled. Confirm again: the same credit note is sent, never a second."
            ) from exc
        finish(
            runtime, op.id, "failed", action="subscription.cancel_now_failed",
            subject_type="subscription", subject_id=op.source_id, error=str(exc),
        )  # fmt: skip
        raise StripeRefused(
            f"Stripe refused the credit note: {exc} Nothing was cancelled; preview again with "
            "another choice."
        ) from exc
    return str(note.id)


def _cancel(runtime: Runtime, op: LifecycleOperation) -> None:
    """Cancel now. Stripe takes no idempotency key on this DELETE, so a retry (or another
    confirm at the same time) gets "already canceled": that is the outcome wanted."""
    try:
        runtime.stripe.cancel_subscription(op.source_id, operation_key(op.id, "cancel"))
    except StripeGatewayError as exc:
        live = call_stripe(
            lambda: runtime.stripe.retrieve_subscription(op.source_id), "read the subscription"
        )
        if live.status != "canceled":
            raise StripeRefused(f"Stripe refused to cancel the subscription: {exc}") from exc


def _outcome(op: LifecycleOperation) -> CancelNowPreview:
    figures = {**op.details["previewed"], "credit_note_id": op.details.get("credit_note_id")}
    return CancelNowPreview(op.id, op.source_id, op.status, op.details["credit"], figures)
