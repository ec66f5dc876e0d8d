"""A linked customer's subscriptions, as the customer page and the CLI list them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from connector.runtime import Runtime
from connector.services.lifecycle_operations import INACTIVE_STATUSES, NotFound
from connector.store.links import link_of_customer
from connector.store.models import (
    CustomerLink,
    InvoiceMirror,
    LifecycleOperation,
    Plan,
    SubscriptionMirror,
)


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


def subscription_items(data: dict[str, Any]) -> list[dict[str, Any]]:
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
        "items": subscription_items(data),
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
