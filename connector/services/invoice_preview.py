"""The first invoice of a plan as Stripe computes it: before activation a preview, after it
the invoice that was created.

Before activation, Stripe is asked what it would bill (``POST /v1/invoices/create_preview``):
for a subscription, a new subscription with the plan's recurring prices and its one-time
items on the first invoice; for a one-time bill, the one-off invoice of the plan's items.
Stripe applies the customer's discount and tax rates and computes the totals, so the page
shows what Stripe will bill, not our arithmetic. The prices are the ones activation uses
(``catalog.ensure_price`` finds or creates them, once). After activation the page shows the
invoice that exists, with its hosted page and PDF.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from connector.billing.gateway import StripeGatewayError
from connector.domain.plan import (
    BillingPlan,
    plan_from_json,
)
from connector.domain.plan_status import Status
from connector.domain.timestamps import date_from_unix, unix_at_midnight
from connector.runtime import Runtime
from connector.services import catalog
from connector.services.activation import deal_discounts, subscription_params
from connector.services.plans import compute, get_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int | None
    amount: int  # before discounts and exclusive tax
    discount: int
    tax: int


@dataclass(frozen=True)
class FirstInvoice:
    """One invoice as Stripe has it (``created``) or would create it (``preview``)."""

    kind: str  # "preview" | "created"
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal: int
    discount: int
    tax: int
    total: int
    amount_due: int
    date: dt.date
    due_date: dt.date | None
    invoice_id: str | None = None
    number: str | None = None
    status: str | None = None
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None


def to_json(invoice: FirstInvoice) -> dict[str, Any]:
    """The invoice as JSON: amounts in minor units, dates as ``YYYY-MM-DD``."""
    data = asdict(invoice)
    data["date"] = invoice.date.isoformat()
    data["due_date"] = invoice.due_date.isoformat() if invoice.due_date else None
    return data


@dataclass(frozen=True)
class Unavailable:
    """Why there is no first invoice to show (yet)."""

    reason: str


@dataclass(frozen=True)
class _PlanState:
    """What the preview needs of the plan row, read in a short transaction: Stripe is never
    called while the store is locked (finding the prices writes to it)."""

    plan_id: str
    status: str
    plan: BillingPlan | None
    customer_id: str | None
    invoice_id: str | None
    subscription_id: str | None


def first_invoice(runtime: Runtime, plan_id: str) -> FirstInvoice | Unavailable:
    """The plan's first invoice: created (after activation) or previewed (before)."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        computed = None if row.plan_data else compute(runtime, row)
        if (row.plan_data or {}).get("amendment") or (computed and computed.amendment):
            # A change to a live subscription has no first invoice of its own: the summary
            # shows the next invoice as Stripe previews the change.
            return Unavailable(
                "This deal changes a live subscription: the next invoice, as Stripe "
                "previews the change, is in the summary above."
            )
        state = _PlanState(
            plan_id=row.id,
            status=row.status,
            plan=plan_from_json(row.plan_data) if row.plan_data else compute(runtime, row).plan,
            customer_id=row.stripe_customer_id,
            invoice_id=row.stripe_invoice_id,
            subscription_id=row.stripe_subscription_id,
        )
    try:
        if state.status == Status.ACTIVE and (state.invoice_id or state.subscription_id):
            return _created(runtime, state)
        return _previewed(runtime, state)
    except catalog.ArchivedProduct as exc:
        return Unavailable(f"No preview: {exc}.")
    except StripeGatewayError as exc:
        log.warning("first-invoice preview of plan %s failed: %s", plan_id, exc)
        return Unavailable(f"Stripe could not compute the preview just now ({exc}).")


def _previewed(runtime: Runtime, state: _PlanState) -> FirstInvoice | Unavailable:
    plan = state.plan
    if plan is None:
        return Unavailable("No preview until the deal can be billed.")
    if plan.collection == "manual":
        return Unavailable("Invoiced manually: Stripe creates nothing for this deal.")
    if state.customer_id is None:
        return Unavailable(
            "The preview from Stripe appears once the Stripe customer is linked "
            "(it applies the customer's discounts and tax rates)."
        )
    params = _preview_params(runtime, plan, state.customer_id)
    invoice = runtime.stripe.preview_invoice(params)  # type: ignore[arg-type]
    today = runtime.today()
    starts = plan.start_date if plan.invoice_type == "recurring" else plan.send_date
    on = max(starts or today, today)
    return _read(invoice, kind="preview", on=on, due=on + timedelta(days=plan.days_until_due))


def _preview_params(runtime: Runtime, plan: BillingPlan, customer_id: str) -> dict[str, Any]:
    """``create_preview`` parameters for what activation would create now: a subscription
    (its anchor, backdated start and end as activation sets them, its one-time items on the
    first invoice), or, for a future start or a one-time bill, the items themselves."""
    today = runtime.today()
    if plan.invoice_type == "recurring" and plan.start_date <= today:
        created = subscription_params(runtime, plan, customer_id)
        details: dict[str, Any] = {
            "items": created["items"],
            "cancel_at": created["cancel_at"],
        }
        if "billing_cycle_anchor" in created:
            details["billing_cycle_anchor"] = created["billing_cycle_anchor"]
        if "backdate_start_date" in created:
            details["start_date"] = created["backdate_start_date"]
        if "trial_end" in created:
            details["trial_end"] = created["trial_end"]
        params: dict[str, Any] = {"customer": customer_id, "subscription_details": details}
        if created.get("add_invoice_items"):
            params["invoice_items"] = created["add_invoice_items"]
        if created.get("discounts"):
            params["discounts"] = created["discounts"]
        return params
    recurring, one_time = catalog.stripe_items(runtime, plan)
    params = {"customer": customer_id}
    discounts = deal_discounts(runtime, plan)
    if discounts:
        params["discounts"] = discounts
    if recurring:  # a schedule starting later: its first invoice, as if it started now
        params["subscription_details"] = {"items": recurring, "proration_behavior": "none"}
        if plan.trial_end is not None:  # ... with its trial as long as it will be
            trial = plan.trial_end - plan.start_date
            params["subscription_details"]["trial_end"] = unix_at_midnight(runtime.today() + trial)
    if one_time:
        params["invoice_items"] = one_time
    return params


def _created(runtime: Runtime, state: _PlanState) -> FirstInvoice | Unavailable:
    invoice_id = state.invoice_id
    if invoice_id is None:
        assert state.subscription_id is not None
        subscription = runtime.stripe.retrieve_subscription(state.subscription_id)
        latest = subscription.latest_invoice
        invoice_id = latest if isinstance(latest, str) else getattr(latest, "id", None)
        if invoice_id is None:
            return Unavailable("Stripe has not created the first invoice yet.")
    invoice = runtime.stripe.retrieve_invoice(invoice_id)
    on = date_from_unix(invoice.created) or runtime.today()
    return _read(invoice, kind="created", on=on, due=date_from_unix(invoice.due_date))


def _amounts(entries: Any) -> int:
    return sum(int(e["amount"]) for e in entries or [])


def _read(stripe_invoice: Any, *, kind: str, on: dt.date, due: dt.date | None) -> FirstInvoice:
    invoice: dict[str, Any] = stripe_invoice.to_dict()
    lines = tuple(
        InvoiceLine(
            description=str(line.get("description") or ""),
            quantity=line.get("quantity"),
            amount=int(line["amount"]),
            discount=_amounts(line.get("discount_amounts")),
            tax=_amounts(line.get("taxes")),
        )
        for line in invoice["lines"]["data"]
    )
    created = kind == "created"
    return FirstInvoice(
        kind=kind,
        currency=str(invoice["currency"]),
        lines=lines,
        subtotal=int(invoice["subtotal"]),
        discount=_amounts(invoice.get("total_discount_amounts")),
        tax=_amounts(invoice.get("total_taxes")),
        total=int(invoice["total"]),
        amount_due=int(invoice["amount_due"]),
        date=on,
        due_date=due,
        invoice_id=str(invoice["id"]) if created else None,
        number=invoice.get("number") if created else None,
        status=invoice.get("status") if created else None,
        hosted_invoice_url=invoice.get("hosted_invoice_url") if created else None,
        invoice_pdf=invoice.get("invoice_pdf") if created else None,
    )
