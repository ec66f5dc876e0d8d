"""Subscription lifecycle after activation: list, cancel, reactivate, bill again, archive.

Every action is audited and, when it bills the customer (reactivate, bill again), refused
on an account that is on credit hold. Cancelling is allowed on hold (it lowers what the
customer will owe), and archiving touches the catalogue, not an account.

Each action first stores a ``LifecycleOperation`` row; its id is the root of the
idempotency keys of the Stripe writes it makes (``dealbridge:lifecycle:<id>:<step>``), so a
retried call never bills twice.

Reactivation
------------
A ``send_invoice`` subscription is ``active`` the moment it is created, whether or not its
first invoice is ever paid, and Stripe has no "start when paid" for invoices that are sent.
So reactivating works in two steps:

1. now: a one-time invoice for the first period of the old subscription's items (same
   products, amounts and quantities), finalized and sent; the operation is ``pending``;
2. when that invoice is paid (the ``invoice.paid`` webhook updates the invoice mirror; the
   ``complete_reactivations`` worker job watches for it): a new subscription with the same
   prices, whose billing cycle starts one period after the payment
   (``billing_cycle_anchor``, ``proration_behavior=none``), so the period just paid for is
   not billed again. The operation becomes ``completed``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from connector.billing.gateway import StripeGatewayError
from connector.billing.objects import plain
from connector.crm.base import CrmError
from connector.domain.plan import add_months
from connector.domain.timestamps import unix_of
from connector.runtime import Runtime
from connector.services import catalog
from connector.services.invoice_sync import sync_invoice, sync_subscription
from connector.services.overview import refresh_catalog
from connector.store import audit
from connector.store.links import link_of_customer
from connector.store.models import (
    CustomerLink,
    InvoiceMirror,
    LifecycleOperation,
    Plan,
    PriceMirror,
    ProductMirror,
    SubscriptionMirror,
)

CURRENT_STATUSES = ("active", "past_due", "trialing", "unpaid", "paused", "incomplete")
INACTIVE_STATUSES = ("canceled", "incomplete_expired")


class LifecycleError(Exception):
    """The action cannot be done; the message says why, fit to show a person."""

    status = 409


class NotFound(LifecycleError):
    status = 404


class OnCreditHold(LifecycleError):
    status = 409


class StripeRefused(LifecycleError):
    status = 502


# --------------------------------------------------------------------------- listing


@dataclass
class CustomerSubscriptions:
    stripe_customer_id: str
    crm_account_id: str
    current: list[dict[str, Any]] = field(default_factory=list)
    one_time: list[dict[str, Any]] = field(default_factory=list)
    inactive: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _link(session: Any, customer_id: str) -> CustomerLink:
    link = link_of_customer(session, customer_id)
    if link is None:
        raise NotFound(f"No CRM account is linked to Stripe customer {customer_id}.")
    return link


def _items(data: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in (data.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        recurring = price.get("recurring") or {}
        product = price.get("product")
        out.append(
            {
                "price": price.get("id"),
                "product": product if isinstance(product, str) else (product or {}).get("id"),
                "currency": price.get("currency"),
                "unit_amount": int(price.get("unit_amount") or 0),
                "quantity": int(item.get("quantity") or 1),
                "interval": recurring.get("interval"),
                "interval_count": int(recurring.get("interval_count") or 1),
            }
        )
    return out


def _sub_view(row: SubscriptionMirror) -> dict[str, Any]:
    data = row.data or {}
    return {
        "id": row.id,
        "status": row.status,
        "items": _items(data),
        "started": row.created.isoformat(),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        "cancel_at": data.get("cancel_at"),
        "cancel_at_period_end": bool(data.get("cancel_at_period_end")),
    }


def list_subscriptions(runtime: Runtime, customer_id: str) -> CustomerSubscriptions:
    """Current (active, past due, scheduled, reactivation awaiting payment), one-time
    invoices dealbridge sent, and inactive (canceled, expired) subscriptions."""
    with runtime.db.session() as session:
        link = _link(session, customer_id)
        result = CustomerSubscriptions(customer_id, link.crm_account_id)
        subs = session.scalars(
            select(SubscriptionMirror)
            .where(SubscriptionMirror.stripe_customer_id == customer_id)
            .order_by(SubscriptionMirror.created.desc())
        ).all()
        for sub in subs:
            group = result.inactive if sub.status in INACTIVE_STATUSES else result.current
            group.append(_sub_view(sub))
        started = {s.id for s in subs}
        for plan in session.scalars(
            select(Plan).where(
                Plan.stripe_customer_id == customer_id, Plan.stripe_schedule_id.is_not(None)
            )
        ):
            if plan.stripe_subscription_id not in started:
                start = (plan.plan_data or {}).get("start_date")
                result.current.append(
                    {"id": plan.stripe_schedule_id, "status": "scheduled", "items": [],
                     "started": start, "deal_id": plan.deal_id}
                )  # fmt: skip
        ops = session.scalars(
            select(LifecycleOperation).where(LifecycleOperation.stripe_customer_id == customer_id)
        ).all()
        for op in ops:
            if op.kind == "reactivate" and op.status == "pending":
                result.current.append(
                    {"id": op.id, "status": "pending", "items": op.details.get("items", []),
                     "started": None, "invoice_id": op.invoice_id, "reactivates": op.source_id}
                )  # fmt: skip
        ours = {op.invoice_id for op in ops if op.invoice_id}
        for invoice in session.scalars(
            select(InvoiceMirror)
            .where(
                InvoiceMirror.stripe_customer_id == customer_id,
                InvoiceMirror.subscription_id.is_(None),
                InvoiceMirror.deleted.is_(False),
                InvoiceMirror.status != "draft",
            )
            .order_by(InvoiceMirror.created.desc())
        ):
            if invoice.crm_deal_id is None and invoice.id not in ours:
                continue  # not sent by dealbridge
            result.one_time.append(
                {"id": invoice.id, "number": invoice.number, "status": invoice.status,
                 "currency": invoice.currency, "total": invoice.total_excluding_tax,
                 "amount_remaining": invoice.amount_remaining,
                 "created": invoice.created.isoformat(), "deal_id": invoice.crm_deal_id}
            )  # fmt: skip
    return result


# --------------------------------------------------------------------------- helpers


def ensure_not_on_hold(runtime: Runtime, account_id: str, action: str) -> None:
    """Refuse an action that bills the customer while the account is on credit hold."""
    try:
        account = runtime.crm.get_account(account_id)
    except CrmError as exc:
        raise LifecycleError(
            f"Cannot {action} now: the CRM did not answer about the account's credit ({exc})."
        ) from exc
    if account.credit_hold:
        raise OnCreditHold(
            f"Cannot {action}: {account.name} is on credit hold. Lift the hold in the CRM "
            "first (finance)."
        )


def _new_operation(
    runtime: Runtime,
    kind: str,
    customer_id: str,
    account_id: str | None,
    source_id: str,
    actor: str,
    details: dict[str, Any],
) -> str:
    op_id = str(uuid.uuid4())
    with runtime.db.session() as session:
        session.add(
            LifecycleOperation(
                id=op_id, kind=kind, status="pending", stripe_customer_id=customer_id,
                crm_account_id=account_id, source_id=source_id, details=details, actor=actor,
                created_at=runtime.clock(),
            )
        )  # fmt: skip
    return op_id


def _key(op_id: str, step: str) -> str:
    return f"dealbridge:lifecycle:{op_id}:{step}"


def _finish(
    runtime: Runtime,
    op_id: str,
    status: str,
    *,
    action: str,
    subject_type: str,
    subject_id: str,
    **details: Any,
) -> None:
    with runtime.db.session() as session:
        op = session.get(LifecycleOperation, op_id)
        assert op is not None
        op.status = status
        if status != "pending":
            op.completed_at = runtime.clock()
        for key in ("invoice_id", "new_subscription_id"):
            if details.get(key):
                setattr(op, key, details[key])
        if details.get("error"):
            op.details = {**op.details, "error": details["error"]}
        audit.record(
            session, actor=op.actor, action=action, subject_type=subject_type,
            subject_id=subject_id, operation=op_id, stripe_customer_id=op.stripe_customer_id,
            crm_account_id=op.crm_account_id, **details,
        )  # fmt: skip


def _subscription(runtime: Runtime, subscription_id: str) -> SubscriptionMirror:
    with runtime.db.session() as session:
        row = session.get(SubscriptionMirror, subscription_id)
        if row is None:
            raise NotFound(f"No subscription {subscription_id} among linked customers.")
        session.expunge(row)
        return row


def _stripe(call: Any, what: str) -> Any:
    try:
        return call()
    except StripeGatewayError as exc:
        raise StripeRefused(f"Stripe refused to {what}: {exc}") from exc


# --------------------------------------------------------------------------- cancel


def cancel(runtime: Runtime, subscription_id: str, *, at_period_end: bool, actor: str) -> str:
    """Cancel now, or at the end of the current period. Returns the subscription's status."""
    row = _subscription(runtime, subscription_id)
    if row.status in INACTIVE_STATUSES:
        raise LifecycleError(f"Subscription {subscription_id} is already {row.status}.")
    kind = "cancel_at_period_end" if at_period_end else "cancel"
    op_id = _new_operation(
        runtime, kind, row.stripe_customer_id, row.crm_account_id, subscription_id, actor, {}
    )
    if at_period_end:
        _stripe(
            lambda: runtime.stripe.update_subscription(
                subscription_id, {"cancel_at_period_end": True}, _key(op_id, "cancel")
            ),
            "cancel the subscription at period end",
        )
    else:
        _stripe(
            lambda: runtime.stripe.cancel_subscription(subscription_id, _key(op_id, "cancel")),
            "cancel the subscription",
        )
    status = sync_subscription(runtime, subscription_id, row.stripe_customer_id)
    _finish(
        runtime, op_id, "completed", action=f"subscription.{kind}",
        subject_type="subscription", subject_id=subscription_id,
    )  # fmt: skip
    return status


# --------------------------------------------------------------------------- reactivate


def reactivate(runtime: Runtime, subscription_id: str, *, actor: str) -> LifecycleOperation:
    """Send an invoice for the first period now; the subscription starts when it is paid."""
    row = _subscription(runtime, subscription_id)
    if row.status not in INACTIVE_STATUSES:
        raise LifecycleError(
            f"Subscription {subscription_id} is {row.status}; only canceled or expired "
            "subscriptions can be reactivated."
        )
    items = _items(row.data or {})
    if not items or any(i["interval"] is None for i in items):
        raise LifecycleError(f"Subscription {subscription_id} has no recurring items to renew.")
    account_id = row.crm_account_id or ""
    ensure_not_on_hold(runtime, account_id, "reactivate the subscription")
    with runtime.db.session() as session:
        pending = session.scalars(
            select(LifecycleOperation).where(
                LifecycleOperation.kind == "reactivate",
                LifecycleOperation.source_id == subscription_id,
                LifecycleOperation.status == "pending",
            )
        ).first()
        if pending is not None:
            raise LifecycleError(
                f"A reactivation of {subscription_id} is already waiting for invoice "
                f"{pending.invoice_id} to be paid."
            )
    days = int((row.data or {}).get("days_until_due") or 30)
    op_id = _new_operation(
        runtime, "reactivate", row.stripe_customer_id, account_id, subscription_id, actor,
        {"items": items, "days_until_due": days,
         "payment_method_types": ((row.data or {}).get("payment_settings") or {}).get(
             "payment_method_types")},
    )  # fmt: skip
    metadata = {
        "dealbridge_lifecycle_id": op_id,
        "dealbridge_reactivates": subscription_id,
        "crm_account_id": account_id,
    }
    invoice_id = _send_invoice(
        runtime, op_id, row.stripe_customer_id, days, metadata,
        [{"price_data": {"currency": i["currency"], "product": i["product"],
                         "unit_amount": i["unit_amount"]},
          "quantity": i["quantity"], "description": "First period of the renewed subscription"}
         for i in items],
        "send the reactivation invoice",
    )  # fmt: skip
    _finish(
        runtime, op_id, "pending", action="subscription.reactivation_requested",
        subject_type="subscription", subject_id=subscription_id, invoice_id=invoice_id,
    )  # fmt: skip
    with runtime.db.session() as session:
        op = session.get(LifecycleOperation, op_id)
        assert op is not None
        session.expunge(op)
        return op


def _send_invoice(
    runtime: Runtime,
    op_id: str,
    customer_id: str,
    days_until_due: int,
    metadata: dict[str, str],
    lines: list[dict[str, Any]],
    what: str,
) -> str:
    params: dict[str, Any] = {
        "customer": customer_id,
        "collection_method": "send_invoice",
        "days_until_due": days_until_due,
        "pending_invoice_items_behavior": "exclude",
        "auto_advance": False,
        "metadata": metadata,
    }
    invoice = _stripe(lambda: runtime.stripe.create_invoice(params, _key(op_id, "invoice")), what)  # type: ignore[arg-type]
    for index, line in enumerate(lines):
        item = {"customer": customer_id, "invoice": invoice.id, "metadata": metadata, **line}
        _stripe(
            lambda item=item, index=index: runtime.stripe.create_invoice_item(
                item,
                _key(op_id, f"item:{index}"),
            ),
            what,
        )
    _stripe(lambda: runtime.stripe.finalize_invoice(invoice.id, _key(op_id, "finalize")), what)
    _stripe(lambda: runtime.stripe.send_invoice(invoice.id, _key(op_id, "send")), what)
    sync_invoice(runtime, invoice.id, customer_id, "invoice.sent")
    return str(invoice.id)


def _one_period_after(moment: datetime, interval: str, count: int) -> datetime:
    if interval in ("month", "year"):
        months = count * (12 if interval == "year" else 1)
        day = add_months(moment.date(), months)
        return datetime.combine(day, moment.timetz())
    return moment + timedelta(days=count * (7 if interval == "week" else 1))


def complete_reactivations(runtime: Runtime) -> int:
    """Worker job: start the subscription of every reactivation whose invoice is now paid."""
    with runtime.db.session() as session:
        due = session.execute(
            select(LifecycleOperation.id, InvoiceMirror.paid_at)
            .join(InvoiceMirror, InvoiceMirror.id == LifecycleOperation.invoice_id)
            .where(
                LifecycleOperation.kind == "reactivate",
                LifecycleOperation.status == "pending",
                InvoiceMirror.status == "paid",
            )
        ).all()
    done = 0
    for op_id, paid_at in due:
        _start_reactivated(runtime, op_id, paid_at or runtime.clock())
        done += 1
    return done


def _start_reactivated(runtime: Runtime, op_id: str, paid_at: datetime) -> None:
    with runtime.db.session() as session:
        op = session.get(LifecycleOperation, op_id)
        assert op is not None
        session.expunge(op)
    items = op.details["items"]
    first = items[0]
    anchor = _one_period_after(paid_at, first["interval"], first["interval_count"])
    now = runtime.clock()
    params: dict[str, Any] = {
        "customer": op.stripe_customer_id,
        "items": [{"price": i["price"], "quantity": i["quantity"]} for i in items],
        "collection_method": "send_invoice",
        "days_until_due": op.details.get("days_until_due") or 30,
        "proration_behavior": "none",
        "metadata": {
            "dealbridge_lifecycle_id": op.id,
            "dealbridge_reactivates": op.source_id,
            "crm_account_id": op.crm_account_id or "",
        },
    }
    if op.details.get("payment_method_types"):
        params["payment_settings"] = {"payment_method_types": op.details["payment_method_types"]}
    if anchor > now:
        params["billing_cycle_anchor"] = unix_of(anchor)
    try:
        sub = runtime.stripe.create_subscription(params, _key(op.id, "subscription"))  # type: ignore[arg-type]
    except StripeGatewayError as exc:
        if exc.retryable:
            raise
        _finish(
            runtime, op.id, "failed", action="subscription.reactivation_failed",
            subject_type="subscription", subject_id=op.source_id, error=str(exc),
        )  # fmt: skip
        return
    sync_subscription(runtime, sub.id, op.stripe_customer_id)
    _finish(
        runtime, op.id, "completed", action="subscription.reactivated",
        subject_type="subscription", subject_id=op.source_id, new_subscription_id=sub.id,
    )  # fmt: skip


# --------------------------------------------------------------------------- bill again


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
    for line in _stripe(lambda: list(runtime.stripe.iter_invoice_lines(invoice_id)), "read"):
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
    op_id = _new_operation(
        runtime, "bill_again", customer_id, account_id, invoice_id, actor, {"lines": lines}
    )
    metadata = {
        "dealbridge_lifecycle_id": op_id,
        "dealbridge_billed_again_from": invoice_id,
        "crm_account_id": account_id,
    }
    new_id = _send_invoice(runtime, op_id, customer_id, due_days, metadata, lines, "bill again")
    _finish(
        runtime, op_id, "completed", action="invoice.billed_again", subject_type="invoice",
        subject_id=invoice_id, invoice_id=new_id,
    )  # fmt: skip
    return new_id


def _is_one_time(runtime: Runtime, price_id: str) -> bool:
    with runtime.db.session() as session:
        mirrored = session.get(PriceMirror, price_id)
        if mirrored is not None:
            return mirrored.type == "one_time"
    price = _stripe(lambda: runtime.stripe.retrieve_price(price_id), "read the price")
    return price.recurring is None


# --------------------------------------------------------------------------- catalogue


def archive_product(runtime: Runtime, product_id: str, *, actor: str) -> None:
    """Archive (never delete): no new subscriptions; existing ones keep billing."""
    op_id = _new_operation(runtime, "archive_product", "", None, product_id, actor, {})
    product = _stripe(
        lambda: runtime.stripe.archive_product(product_id, _key(op_id, "archive")),
        "archive the product",
    )
    with runtime.db.session() as session:
        # Activation reads the mirror to refuse new subscriptions of an archived product.
        row = session.get(ProductMirror, product_id)
        if row is None:
            session.add(ProductMirror(id=product_id, name=str(product.name), active=False))
        else:
            row.active = False
    _finish(
        runtime, op_id, "completed", action="product.archived", subject_type="product",
        subject_id=product_id,
    )  # fmt: skip


def archive_price(runtime: Runtime, price_id: str, *, actor: str) -> None:
    op_id = _new_operation(runtime, "archive_price", "", None, price_id, actor, {})
    _stripe(
        lambda: runtime.stripe.archive_price(price_id, _key(op_id, "archive")),
        "archive the price",
    )
    with runtime.db.session() as session:
        row = session.get(PriceMirror, price_id)
        if row is not None:
            row.active = False
    catalog.forget(runtime, price_id)
    _finish(
        runtime, op_id, "completed", action="price.archived", subject_type="price",
        subject_id=price_id,
    )  # fmt: skip


def change_price(
    runtime: Runtime,
    price_id: str,
    *,
    unit_amount: int | None,
    interval: str | None,
    interval_count: int | None,
    actor: str,
) -> str:
    """Stripe prices are immutable: a new price with the change, then the old one archived.
    Subscriptions on the old price keep it. Returns the new price's id."""
    if unit_amount is not None and unit_amount < 0:
        raise LifecycleError("unit_amount must be 0 or more (in the currency's smallest unit).")
    old = _stripe(lambda: runtime.stripe.retrieve_price(price_id), "read the price")
    product: Any = old.product
    params: dict[str, Any] = {
        "currency": old.currency,
        "product": product if isinstance(product, str) else product.id,
        "unit_amount": old.unit_amount if unit_amount is None else unit_amount,
        "metadata": {
            **(old.metadata.to_dict() if old.metadata else {}),
            "dealbridge_replaces": price_id,
        },
    }
    if old.recurring is not None or interval is not None:
        if interval is not None and interval not in ("day", "week", "month", "year"):
            raise LifecycleError("interval must be day, week, month or year.")
        params["recurring"] = {
            "interval": interval or (old.recurring.interval if old.recurring else "month"),
            "interval_count": interval_count
            or (old.recurring.interval_count if old.recurring else 1),
        }
    if old.lookup_key and not catalog.is_dealbridge_lookup_key(old.lookup_key):
        # A key of the user's own names "this product's price": it follows the change.
        # dealbridge's keys name exact terms, so the new terms get their own key later.
        params["lookup_key"] = old.lookup_key
        params["transfer_lookup_key"] = True
    op_id = _new_operation(runtime, "change_price", "", None, price_id, actor, {"new": params})
    new = _stripe(
        lambda: runtime.stripe.create_price(params, _key(op_id, "price")),  # type: ignore[arg-type]
        "create the new price",
    )
    _stripe(
        lambda: runtime.stripe.archive_price(price_id, _key(op_id, "archive")),
        "archive the old price",
    )
    catalog.forget(runtime, price_id)
    refresh_catalog(runtime)
    _finish(
        runtime, op_id, "completed", action="price.changed", subject_type="price",
        subject_id=price_id, new_price_id=new.id,
    )  # fmt: skip
    return str(new.id)
