"""Cancel a subscription, or reactivate a canceled one.

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

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from connector.billing.gateway import StripeGatewayError
from connector.domain.plan import add_months
from connector.domain.timestamps import unix_of
from connector.runtime import Runtime
from connector.services.amendment import SubscriptionMoved, release_schedule
from connector.services.lifecycle_operations import (
    INACTIVE_STATUSES,
    LifecycleError,
    call_stripe,
    ensure_not_on_hold,
    finish,
    mirrored_subscription,
    new_operation,
    operation_key,
    send_invoice,
)
from connector.services.subscription_listing import subscription_items
from connector.services.subscription_sync import sync_subscription
from connector.store.models import InvoiceMirror, LifecycleOperation


def cancel(runtime: Runtime, subscription_id: str, *, at_period_end: bool, actor: str) -> str:
    """Cancel now, or at the end of the current period. Returns the subscription's status."""
    row = mirrored_subscription(runtime, subscription_id)
    if row.status in INACTIVE_STATUSES:
        raise LifecycleError(f"Subscription {subscription_id} is already {row.status}.")
    kind = "cancel_at_period_end" if at_period_end else "cancel"
    op_id = new_operation(
        runtime, kind, row.stripe_customer_id, row.crm_account_id, subscription_id, actor, {}
    )
    if at_period_end:
        # Stripe refuses to set the end of a subscription a schedule manages (a contract that
        # started later, a change made by a phase): the schedule is released first.
        try:
            call_stripe(
                lambda: release_schedule(runtime, subscription_id, operation_key(op_id, "release")),
                "release the subscription from its schedule",
            )
        except SubscriptionMoved as exc:
            raise LifecycleError(
                f"Subscription {subscription_id} has a change scheduled in Stripe, so it "
                "cannot be set to end at period end without dropping that change; cancel it "
                "now, or change its schedule in Stripe."
            ) from exc
        call_stripe(
            lambda: runtime.stripe.update_subscription(
                subscription_id, {"cancel_at_period_end": True}, operation_key(op_id, "cancel")
            ),
            "cancel the subscription at period end",
        )
    else:
        call_stripe(
            lambda: runtime.stripe.cancel_subscription(
                subscription_id, operation_key(op_id, "cancel")
            ),
            "cancel the subscription",
        )
    status = sync_subscription(runtime, subscription_id, row.stripe_customer_id)
    finish(
        runtime, op_id, "completed", action=f"subscription.{kind}",
        subject_type="subscription", subject_id=subscription_id,
    )  # fmt: skip
    return status


def reactivate(runtime: Runtime, subscription_id: str, *, actor: str) -> LifecycleOperation:
    """Send an invoice for the first period now; the subscription starts when it is paid."""
    row = mirrored_subscription(runtime, subscription_id)
    if row.status not in INACTIVE_STATUSES:
        raise LifecycleError(
            f"Subscription {subscription_id} is {row.status}; only canceled or expired "
            "subscriptions can be reactivated."
        )
    items = subscription_items(row.data or {})
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
    op_id = new_operation(
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
    invoice_id = send_invoice(
        runtime, op_id, row.stripe_customer_id, days, metadata,
        [{"price_data": {"currency": i["currency"], "product": i["product"],
                         "unit_amount": i["unit_amount"]},
          "quantity": i["quantity"], "description": "First period of the renewed subscription"}
         for i in items],
        "send the reactivation invoice",
    )  # fmt: skip
    finish(
        runtime, op_id, "pending", action="subscription.reactivation_requested",
        subject_type="subscription", subject_id=subscription_id, invoice_id=invoice_id,
    )  # fmt: skip
    with runtime.db.session() as session:
        op = session.get(LifecycleOperation, op_id)
        assert op is not None
        session.expunge(op)
        return op


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
        sub = runtime.stripe.create_subscription(params, operation_key(op.id, "subscription"))  # type: ignore[arg-type]
    except StripeGatewayError as exc:
        if exc.retryable:
            raise
        finish(
            runtime, op.id, "failed", action="subscription.reactivation_failed",
            subject_type="subscription", subject_id=op.source_id, error=str(exc),
        )  # fmt: skip
        return
    sync_subscription(runtime, sub.id, op.stripe_customer_id)
    finish(
        runtime, op.id, "completed", action="subscription.reactivated",
        subject_type="subscription", subject_id=op.source_id, new_subscription_id=sub.id,
    )  # fmt: skip
