"""Billing plans under review: computed, adjusted, approved, shown, written to the CRM deal.

A plan is recomputed from the deal (as last read) and a person's overrides by the pure
domain function, so what the page shows is always exactly what activation would bill. On
approval the plan is frozen into ``plan_data``; activation bills that snapshot. Intake from
the CRM is ``plan_intake``; the statuses and their rules are ``domain/plan_status``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.billing.gateway import StripeGatewayError
from connector.domain.adjustments import contradictions
from connector.domain.deal import Deal, InvalidDeal, Problem, parse_deal
from connector.domain.money import format_money, minor_units_exponent
from connector.domain.plan import (
    BillingPlan,
    InvalidOverrides,
    PlanDefaults,
    PlanLine,
    overrides_from_json,
    overrides_to_json,
    plan_from_json,
    plan_to_json,
    suggest_plan,
)
from connector.domain.plan_status import Status
from connector.domain.timestamps import unix_of
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.backfill import queue_customer_history
from connector.store import audit
from connector.store.models import CustomerLink, Plan, StripeOperation

log = logging.getLogger(__name__)


MANUAL_REASON = "Manual invoicing: invoice from the customer's Stripe page."
#: Steps whose Stripe object bills the customer (a draft invoice does not).
BILLING_STEPS = ("subscription", "schedule", "finalize")


class PlanNotFound(LookupError):
    pass


class PlanStateError(Exception):
    """The plan's state does not allow the action; the message says why and what to do."""


def defaults(runtime: Runtime) -> PlanDefaults:
    section = runtime.config.section("plans")
    return PlanDefaults(
        payment_method_types=tuple(section["default_payment_method_types"]),
        days_until_due=section["default_days_until_due"],
    )


@dataclass(frozen=True)
class Computed:
    """The plan as it stands now, or why there is none."""

    deal: Deal | None
    plan: BillingPlan | None
    problems: tuple[Problem, ...]


def compute(runtime: Runtime, row: Plan) -> Computed:
    """Recompute the plan from the stored deal and overrides (pure, no I/O)."""
    try:
        deal = parse_deal(row.deal_data)
    except InvalidDeal as exc:
        return Computed(None, None, exc.problems)
    try:
        overrides = overrides_from_json(row.overrides or {})
        plan = suggest_plan(deal, defaults(runtime), runtime.today(), overrides)
    except (InvalidDeal, InvalidOverrides) as exc:
        return Computed(deal, None, exc.problems)
    return Computed(deal, plan, ())


def problems_json(problems: tuple[Problem, ...]) -> list[dict[str, str]]:
    return [{"field": p.field, "message": p.message} for p in problems]


def review_url(runtime: Runtime, plan_id: str) -> str:
    return f"{runtime.config.base_url}/plans/{plan_id}"


def get_plan(session: Session, plan_id: str) -> Plan:
    row = session.get(Plan, plan_id)
    if row is None:
        raise PlanNotFound(f"no plan {plan_id}")
    return row


def plan_for_deal(session: Session, deal_id: str) -> Plan | None:
    return session.scalars(select(Plan).where(Plan.deal_id == deal_id)).first()


# --------------------------------------------------------------------------- review


def adjust(runtime: Runtime, plan_id: str, changes: dict[str, Any], *, actor: str) -> Plan:
    """Apply a person's overrides; invalid ones raise InvalidOverrides naming each field,
    and so do fields that contradict each other (a one-time bill with a frequency)."""
    overrides = overrides_from_json(changes)  # raises InvalidOverrides
    clashes = contradictions(changes)
    if clashes:
        raise InvalidOverrides(clashes)
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status not in Status.EDITABLE:
            raise PlanStateError(
                f"this plan is {Status.LABELS.get(row.status, row.status).lower()} and can no "
                "longer be changed"
            )
        deal = parse_deal(row.deal_data)
        suggest_plan(deal, defaults(runtime), runtime.today(), overrides)  # validates
        row.overrides = overrides_to_json(overrides)
        if row.status == Status.AWAITING_CREDIT:
            # The approval froze the plan as it was; a change needs a new approval, or the
            # waiting plan would activate without it when the hold lifts.
            row.status = Status.IN_REVIEW
            row.plan_data = None
            row.status_reason = "Changed while waiting on credit: activate it again to queue it."
            write_status_to_crm(runtime, session, row)
        audit.record(
            session,
            actor=actor,
            action="plan.adjusted",
            subject_type="deal",
            subject_id=row.deal_id,
            overrides=row.overrides,
        )
        return row


def choose_customer(runtime: Runtime, plan_id: str, customer_id: str, *, actor: str) -> Plan:
    """A person settles which of several same-email Stripe customers this account uses."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        candidates = {c["id"] for c in row.customer_candidates or []}
        if row.status != Status.NEEDS_CUSTOMER or customer_id not in candidates:
            raise PlanStateError("choose one of the Stripe customers listed for this plan")
        assert row.crm_account_id is not None
        existing = session.get(CustomerLink, row.crm_account_id)
        if existing is None:
            session.add(
                CustomerLink(
                    crm_account_id=row.crm_account_id,
                    stripe_customer_id=customer_id,
                    source="chosen",
                    linked_at=runtime.clock(),
                )
            )
        else:
            existing.stripe_customer_id = customer_id
            existing.source = "chosen"
        row.stripe_customer_id = customer_id
        row.customer_candidates = []
        row.status = Status.IN_REVIEW
        row.status_reason = None
        audit.record(
            session,
            actor=actor,
            action="customer.chosen",
            subject_type="account",
            subject_id=row.crm_account_id,
            stripe_customer_id=customer_id,
        )
        crm_outbound.link_account(runtime, session, row.crm_account_id, customer_id)
        queue_customer_history(session, row.crm_account_id, customer_id)
        write_status_to_crm(runtime, session, row)
        return row


def approve(runtime: Runtime, plan_id: str, *, actor: str) -> Plan:
    """Freeze the reviewed plan and queue it for activation, in approval order."""
    with runtime.db.session() as session:
        row = session.get(Plan, plan_id, with_for_update=True)
        if row is None:
            raise PlanNotFound(f"no plan {plan_id}")
        if row.status not in Status.ACTIVATABLE:
            raise PlanStateError(_not_activatable(row))
        computed = compute(runtime, row)
        if computed.plan is None:
            raise PlanStateError(
                "the plan cannot be activated: "
                + "; ".join(f"{p.field}: {p.message}" for p in computed.problems)
            )
        if row.stripe_customer_id is None:
            raise PlanStateError("the Stripe customer is not linked yet; try again shortly")
        billed = _earlier_billing(session, row)
        if billed:
            raise PlanStateError(
                "an earlier activation of this plan already created "
                + ", ".join(billed)
                + " in Stripe; cancel or void it there and mark the plan manual, rather than "
                "billing the customer twice"
            )
        if computed.plan.collection == "manual":
            row.plan_data = plan_to_json(computed.plan)
            _settle_manual(runtime, session, row, actor)
            return row
        next_seq = session.scalar(select(func.coalesce(func.max(Plan.approval_seq), 0))) or 0
        row.plan_data = plan_to_json(computed.plan)
        row.approved_at = runtime.clock()
        row.approved_by = actor
        row.approval_seq = next_seq + 1
        row.status = Status.APPROVED
        row.status_reason = None
        row.attempts = 0
        row.next_attempt_at = runtime.clock()
        audit.record(
            session,
            actor=actor,
            action="plan.approved",
            subject_type="deal",
            subject_id=row.deal_id,
            plan=row.plan_data,
        )
        return row


def _earlier_billing(session: Any, row: Plan) -> list[str]:
    """The Stripe objects an earlier approval of this plan created that bill the customer."""
    steps = session.scalars(select(StripeOperation).where(StripeOperation.plan_id == row.id)).all()
    return sorted({op.result_id for op in steps if op.step.partition(":")[2] in BILLING_STEPS})


def mark_manual(runtime: Runtime, plan_id: str, *, actor: str) -> Plan:
    """Manual invoicing: keep the customer link, create nothing else in Stripe."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status not in Status.ACTIVATABLE | {Status.AWAITING_CREDIT}:
            raise PlanStateError(_not_activatable(row))
        if row.stripe_customer_id is None:
            raise PlanStateError("the Stripe customer is not linked yet; try again shortly")
        row.overrides = {**(row.overrides or {}), "collection": "manual"}
        _settle_manual(runtime, session, row, actor)
        return row


def manual_invoices_sent(runtime: Runtime, row: Plan) -> list[str]:
    """Invoices sent to the plan's customer since it was marked manual (asked of Stripe: the
    mirror may lag), which make undoing manual invoicing a way to bill twice."""
    if row.status != Status.MANUAL or row.stripe_customer_id is None:
        return []
    since = unix_of(row.approved_at) if row.approved_at else 0
    invoices = runtime.stripe.iter_invoices(
        {"customer": row.stripe_customer_id, "created": {"gte": since}}
    )
    return [str(i.id) for i in invoices if i.status != "draft"]


def undo_manual(runtime: Runtime, plan_id: str, *, actor: str) -> Plan:
    """Back to review from manual invoicing, as long as no invoice was sent meanwhile."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status != Status.MANUAL:
            raise PlanStateError("this plan is not invoiced manually; there is nothing to undo")
        try:
            sent = manual_invoices_sent(runtime, row)
        except StripeGatewayError as exc:
            raise PlanStateError(
                f"could not check with Stripe whether an invoice was sent ({exc}); try again"
            ) from exc
        if sent:
            raise PlanStateError(
                f"invoice {', '.join(sent)} was already sent to the customer by hand; billing "
                "this plan through Stripe too would bill the customer twice"
            )
        row.overrides = {k: v for k, v in (row.overrides or {}).items() if k != "collection"}
        row.status = Status.IN_REVIEW
        row.status_reason = None
        row.plan_data = None
        row.approved_at = None
        row.approved_by = None
        audit.record(
            session,
            actor=actor,
            action="plan.manual_undone",
            subject_type="deal",
            subject_id=row.deal_id,
        )
        write_status_to_crm(runtime, session, row)
        return row


def _settle_manual(runtime: Runtime, session: Any, row: Plan, actor: str) -> None:
    """Manual invoicing settles the plan: the customer link stays, Stripe gets nothing."""
    row.status = Status.MANUAL
    row.status_reason = MANUAL_REASON
    row.approved_at = runtime.clock()
    row.approved_by = actor
    audit.record(
        session, actor=actor, action="plan.manual", subject_type="deal", subject_id=row.deal_id
    )
    write_status_to_crm(runtime, session, row)


def _not_activatable(row: Plan) -> str:
    label = Status.LABELS.get(row.status, row.status)
    if row.status == Status.AWAITING_CREDIT:
        return f"Waiting on credit: {row.status_reason}"
    if row.status == Status.NEEDS_CUSTOMER:
        return "Choose which Stripe customer this account uses before activating."
    if row.status == Status.INVALID:
        return f"The deal cannot be billed as it is: {row.status_reason}"
    return f"This plan is {label.lower()}; there is nothing to activate."


# --------------------------------------------------------------------------- presentation


def summary_lines(plan: BillingPlan, customer: str | None, today: date) -> list[str]:
    """Exactly what activation will create in Stripe, in words a rep can check."""
    cur = plan.currency
    who = customer or "the linked customer"
    methods = ", ".join(_METHOD_LABELS.get(m, m) for m in plan.payment_method_types)
    due = (
        "due on receipt"
        if plan.days_until_due == 0
        else f"due {plan.days_until_due} days after sending"
    )
    if plan.collection == "manual":
        return [f"Nothing is created in Stripe: {who} is linked and invoiced by hand."]
    lines: list[str] = []
    one_time = [line for line in plan.lines if line.kind == "one_time"]
    recurring = [line for line in plan.lines if line.kind == "recurring"]
    if plan.invoice_type == "recurring":
        every = _frequency(plan.interval, plan.interval_count)
        kind = "Subscription schedule" if plan.start_date > today else "Subscription"
        through = plan.billed_through or plan.end_date
        lines.append(
            f"{kind} for {who}: {format_money(plan.recurring_amount, cur)} {every}, "
            f"{plan.periods} full period(s) from {plan.start_date.isoformat()} to "
            f"{through.isoformat()}"
            + (
                f" (the contract ends {plan.end_date.isoformat()})."
                if through != plan.end_date
                else "."
            )
        )
        if plan.catch_up_periods:
            caught_up = format_money(plan.catch_up_periods * plan.recurring_amount, cur)
            lines.append(
                f"Started in the past: {plan.catch_up_periods} elapsed period(s) are billed as "
                f"catch-up on the first invoice ({caught_up})."
            )
        for line in recurring:
            lines.append(_item_line(line, cur))
        if one_time:
            lines.append(
                f"One-time items on the first invoice ({format_money(plan.one_time_amount, cur)}):"
            )
            for line in one_time:
                lines.append(_item_line(line, cur))
    else:
        when = plan.send_date.isoformat() if plan.send_date else "now"
        lines.append(
            f"One invoice to {who} for {format_money(plan.total_amount, cur)}, sent {when}."
        )
        for line in plan.lines:
            lines.append(_item_line(line, cur))
    lines.append(f"Invoices are emailed with Stripe's payment page, {due}; payment by {methods}.")
    if plan.invoices:
        lines.append(f"Invoice schedule ({len(plan.invoices)} invoice(s)):")
        for invoice in plan.invoices:
            lines.append(
                f"  {invoice.date.isoformat()}  {format_money(invoice.amount, cur)}  "
                f"{invoice.description}"
            )
    lines.append(f"Contract total: {format_money(plan.total_amount, cur)}.")
    return lines


def _item_line(line: PlanLine, currency: str) -> str:
    if line.unit_amount_decimal is not None:
        exact = Decimal(line.unit_amount_decimal).scaleb(-minor_units_exponent(currency))
        unit = f"{currency.upper()} {exact:f} (exact unit price)"
    else:
        unit = format_money(line.unit_amount, currency)
    text = f"  - {line.description}: {line.quantity} x {unit}"
    if line.discount_amount:
        text += f", less {format_money(line.discount_amount, currency)} (line discount)"
    if line.unit_amount_decimal is not None or line.discount_amount:
        text += f" = {format_money(line.amount, currency)}"
    return text


_METHOD_LABELS = {
    "card": "card",
    "us_bank_account": "ACH debit",
    "customer_balance": "bank transfer (ACH/wire details on the invoice)",
}


def _frequency(interval: str | None, count: int | None) -> str:
    if interval == "year":
        return "per year" if count == 1 else f"every {count} years"
    if interval == "month":
        return {1: "per month", 3: "per quarter", 6: "every six months"}.get(
            count or 1, f"every {count} months"
        )
    return ""


def plan_view(runtime: Runtime, row: Plan) -> dict[str, Any]:
    """The plan as the page and the API show it."""
    computed = compute(runtime, row)
    frozen = plan_from_json(row.plan_data) if row.plan_data else None
    shown = frozen or computed.plan
    dashboard = runtime.config.section("stripe")["dashboard_url"].rstrip("/")
    view: dict[str, Any] = {
        "id": row.id,
        "deal_id": row.deal_id,
        "account_id": row.crm_account_id,
        "status": row.status,
        "status_label": Status.LABELS.get(row.status, row.status),
        "status_reason": row.status_reason,
        "problems": row.problems or problems_json(computed.problems),
        "customer_candidates": row.customer_candidates or [],
        "stripe_customer_id": row.stripe_customer_id,
        "stripe_customer_url": (
            f"{dashboard}/customers/{row.stripe_customer_id}"
            if dashboard and row.stripe_customer_id
            else None
        ),
        "stripe_subscription_id": row.stripe_subscription_id,
        "stripe_subscription_url": (
            f"{dashboard}/subscriptions/{row.stripe_subscription_id}"
            if dashboard and row.stripe_subscription_id
            else None
        ),
        "stripe_schedule_id": row.stripe_schedule_id,
        "stripe_invoice_id": row.stripe_invoice_id,
        "overrides": row.overrides or {},
        "deal": row.deal_data,
        "plan": plan_to_json(shown) if shown else None,
        "summary": summary_lines(shown, _contact_name(row), runtime.today()) if shown else [],
        "invoice_amounts": (
            [format_money(i.amount, shown.currency) for i in shown.invoices] if shown else []
        ),
        "contract_total": format_money(shown.total_amount, shown.currency) if shown else None,
        "editable": row.status in Status.EDITABLE,
        "activatable": row.status in Status.ACTIVATABLE and computed.plan is not None,
        "approved_at": row.approved_at.isoformat() if row.approved_at else None,
        "approved_by": row.approved_by,
        "crm_deal_url": runtime.crm.record_url("deal", row.deal_id) if _has_crm(runtime) else None,
    }
    return view


def _has_crm(runtime: Runtime) -> bool:
    try:
        runtime.crm  # noqa: B018 - builds the adapter lazily; may fail without credentials
    except Exception:
        return False
    return True


def _contact_name(row: Plan) -> str | None:
    contact = (row.deal_data or {}).get("billing_contact") or {}
    name, email = contact.get("name"), contact.get("email")
    if name and email:
        return f"{name} <{email}>"
    return name or email


def write_status_to_crm(runtime: Runtime, session: Session, row: Plan) -> None:
    """Queue the plan's status, reason and review link onto the CRM deal."""
    computed = compute(runtime, row)
    shown = plan_from_json(row.plan_data) if row.plan_data else computed.plan
    label = Status.LABELS.get(row.status, row.status)
    summary = "\n".join(summary_lines(shown, _contact_name(row), runtime.today())) if shown else ""
    if row.status_reason:
        summary = f"{row.status_reason}\n\n{summary}".strip()
    crm_outbound.update_deal(
        runtime,
        session,
        row.deal_id,
        {
            "plan_status": label,
            "plan_summary": summary,
            "plan_url": review_url(runtime, row.id),
            "subscription_id": row.stripe_subscription_id or row.stripe_schedule_id,
        },
    )
