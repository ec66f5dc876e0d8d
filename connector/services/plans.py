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
from connector.domain.amendment import (
    AMENDING_KINDS,
    PAYMENT_KEY,
    PERSON_KEYS,
    PREVIEW_KEY,
    RESERVED_KEYS,
    TARGET_KEY,
    Amendment,
    ChangeKind,
    amendment_from_json,
    amendment_summary,
    amendment_to_json,
    cancel_choice_problems,
    change_kind,
    live_from_json,
    plan_overrides_for,
    propose_amendment,
    split_overrides,
)
from connector.domain.charging import (
    CustomerPayment,
    amendment_problems,
    customer_payment_from_json,
)
from connector.domain.deal import Deal, InvalidDeal, Problem, parse_deal
from connector.domain.deal_changes import FLAG_KEY as CHANGED_KEY
from connector.domain.deal_changes import LABEL as CHANGED_LABEL
from connector.domain.money import format_money, minor_units_exponent
from connector.domain.plan import (
    BillingPlan,
    InvalidOverrides,
    PlanDefaults,
    PlanLine,
    ScheduledInvoice,
    overrides_from_json,
    overrides_to_json,
    plan_from_json,
    plan_to_json,
    suggest_plan,
)
from connector.domain.plan_status import Status
from connector.domain.timestamps import unix_at_midnight, unix_of
from connector.runtime import Runtime
from connector.services import amendment as amendments
from connector.services import cancel_now, catalog, crm_outbound, payment_on_file
from connector.services.backfill import queue_customer_history
from connector.services.lifecycle_operations import LifecycleError
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
    """The plan as it stands now, or why there is none.

    ``kind`` is what the deal is (new business, or a change to a live subscription);
    ``amendment`` the change it makes when the account has a live subscription to change.
    """

    deal: Deal | None
    plan: BillingPlan | None
    problems: tuple[Problem, ...]
    kind: ChangeKind = "new"
    amendment: Amendment | None = None


def compute(runtime: Runtime, row: Plan) -> Computed:
    """Recompute the plan from the stored deal and overrides (pure, no I/O)."""
    try:
        deal = parse_deal(row.deal_data)
    except InvalidDeal as exc:
        return Computed(None, None, exc.problems)
    kind: ChangeKind = "new"
    try:
        base, choices, target = split_overrides(row.overrides or {})
        kind = change_kind(row.deal_data or {}, choices)
        refused = cancel_choice_problems(kind, choices)
        if refused:
            raise InvalidOverrides(refused)
        amending = target is not None and kind in AMENDING_KINDS
        if amending and amendment_problems(deal):
            return Computed(deal, None, amendment_problems(deal), kind)
        if amending:
            assert target is not None
            scheduled = any(i.pricing_schedule != "one_time" for i in deal.line_items)
            base = plan_overrides_for(base, target, scheduled)
        overrides = overrides_from_json(base)
        plan = suggest_plan(deal, defaults(runtime), runtime.today(), overrides, payment_of(row))
        amendment: Amendment | None = None
        if amending:
            assert target is not None
            amendment = propose_amendment(
                kind,
                target,
                plan,
                [catalog.product_key(line) for line in plan.lines],
                choices.proration_behavior or _default_proration(runtime),
                proration_chosen=choices.proration_behavior is not None,
                today=runtime.today(),
                cancel_credit=choices.cancel_credit if choices.cancel_when == "now" else None,
                credit_confirmed="cancel_credit" in (overrides.confirmed or ()),
            )
    except (InvalidDeal, InvalidOverrides) as exc:
        return Computed(deal, None, exc.problems, kind)
    return Computed(deal, plan, (), kind, amendment)


def payment_of(row: Plan) -> CustomerPayment:
    """What Stripe last said of the customer's payment methods (``payment_on_file``)."""
    return customer_payment_from_json((row.overrides or {}).get(PAYMENT_KEY))


def _default_proration(runtime: Runtime) -> Any:
    return amendments.default_proration(runtime)


def frozen_amendment(row: Plan) -> tuple[Amendment | None, dict[str, Any] | None]:
    """The approved amendment and the preview the person saw, from the frozen plan."""
    data = (row.plan_data or {}).get("amendment")
    if not isinstance(data, dict):
        return None, None
    preview = data.get("preview")
    return amendment_from_json(data), preview if isinstance(preview, dict) else None


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
    and so do fields that contradict each other (a one-time bill with a frequency).

    ``change`` (new, upgrade, downgrade, replacement...), ``proration_behavior`` and, for a
    cancellation, ``cancel_when`` and ``cancel_credit`` are the amendment choices; the live
    subscription snapshot is dealbridge's, never a person's.
    """
    if not isinstance(changes, dict):
        overrides_from_json(changes)  # raises InvalidOverrides: must be an object
    reserved = [k for k in RESERVED_KEYS if k in changes]
    if reserved:
        raise InvalidOverrides(
            [Problem(k, "is not something that can be changed") for k in reserved]
        )
    base_changes, _, _ = split_overrides(changes)  # raises InvalidOverrides
    overrides = overrides_from_json(base_changes)  # raises InvalidOverrides
    clashes = contradictions(base_changes)
    if clashes:
        raise InvalidOverrides(clashes)
    person = {k: changes[k] for k in PERSON_KEYS if changes.get(k) is not None}
    _adjust(runtime, plan_id, overrides, person, actor=actor)
    # A change of kind may make the deal a change to the live subscription, or no longer.
    try:
        amendments.refresh_target(runtime, plan_id)
    except StripeGatewayError as exc:
        raise PlanStateError(
            "saved, but Stripe could not be reached to read the live subscription this deal "
            f"would change ({exc}); save again in a moment"
        ) from exc
    refresh_preview(runtime, plan_id)
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status == Status.INVALID:
            # A person's choice (a renewal rather than an upgrade) may make the deal billable:
            # back to review, as a CRM change that fixes it would.
            computed = compute(runtime, row)
            row.problems = problems_json(computed.problems)
            if computed.plan is not None:
                row.status = Status.IN_REVIEW
                row.status_reason = None
        return row


def _adjust(
    runtime: Runtime,
    plan_id: str,
    overrides: Any,
    person: dict[str, Any],
    *,
    actor: str,
) -> Plan:
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status not in Status.EDITABLE:
            raise PlanStateError(
                f"this plan is {Status.LABELS.get(row.status, row.status).lower()} and can no "
                "longer be changed"
            )
        deal = parse_deal(row.deal_data)
        suggest_plan(deal, defaults(runtime), runtime.today(), overrides, payment_of(row))
        _, choices, _ = split_overrides(person)
        refused = cancel_choice_problems(change_kind(row.deal_data or {}, choices), choices)
        if refused:
            raise InvalidOverrides(refused)
        kept = {k: v for k, v in (row.overrides or {}).items() if k in RESERVED_KEYS}
        row.overrides = {**overrides_to_json(overrides), **person, **kept}
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
    """Freeze the reviewed plan and queue it for activation, in approval order.

    An amendment is frozen with Stripe's preview of the change, taken just before (with the
    ``proration_date`` activation sends again), so what was previewed is what is billed.
    Automatic charging is decided on the payment method Stripe has just now.
    """
    payment_on_file.refresh(runtime, plan_id)
    previewed = _credit_shown(runtime, plan_id)
    if previewed is None:
        previewed = _preview_for_approval(runtime, plan_id)
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
        if computed.amendment is not None and computed.amendment.needs_confirmation.count(
            "cancel_credit"
        ):
            raise PlanStateError(
                "cancelling now credits the figure shown on the page: confirm the credit "
                "(cancel_credit) before approving"
            )
        billed = _earlier_billing(session, row)
        if computed.amendment is not None:
            # A deal changed after activation amends the subscription it made: not twice.
            billed = [b for b in billed if b != computed.amendment.subscription_id]
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
        plan_data = plan_to_json(computed.plan)
        if computed.amendment is not None:
            plan_data["amendment"] = _checked_preview(computed.amendment, previewed)
        next_seq = session.scalar(select(func.coalesce(func.max(Plan.approval_seq), 0))) or 0
        row.plan_data = plan_data
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


def _preview_for_approval(runtime: Runtime, plan_id: str) -> dict[str, Any] | None:
    """The amendment as it stands and Stripe's preview of it (None: not an amendment)."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        computed = compute(runtime, row)
        customer_id = row.stripe_customer_id
        target = (row.overrides or {}).get(TARGET_KEY)
        metadata = amendments.phase_metadata(row.id, row.deal_id)
    if computed.amendment is None or computed.plan is None or customer_id is None:
        return None
    if computed.amendment.cancels_now:
        if row.status not in Status.REFRESHABLE:
            return None  # approved or done: its credit is the one frozen, no new operation
        return _cancel_now_preview(runtime, row, computed.amendment)
    # A change that starts when the period ends is previewed as the schedule phase it becomes.
    phase = (
        amendments.PhaseContext(live_from_json(target), metadata)
        if isinstance(target, dict)
        else None
    )
    # A change that starts later is prorated from its day, when Stripe's schedule makes it.
    proration_date = (
        unix_at_midnight(computed.amendment.effective_date)
        if computed.amendment.starts_later
        else unix_of(runtime.clock())
    )
    preview = amendments.preview(
        runtime, customer_id, computed.plan, computed.amendment, proration_date, phase
    )
    return {**amendment_to_json(computed.amendment), "preview": preview}


def _same_credit(stored: Any, amendment: Amendment, today: date) -> bool:
    """The stored cancel-now preview is of this cancellation and credit, made today (UTC):
    the credit counts whole UTC days, so the same day gives the same figure."""
    if not isinstance(stored, dict) or not isinstance(stored.get("preview"), dict):
        return False
    shown = stored["preview"]
    return (
        stored.get("subscription_id") == amendment.subscription_id
        and stored.get("cancel_credit") == amendment.cancel_credit
        and not shown.get("error")
        and str(shown.get("as_of", ""))[:10] == today.isoformat()
    )


def _cancel_now_preview(runtime: Runtime, row: Plan, amendment: Amendment) -> dict[str, Any]:
    """Cancelling now: the exact credit from ``cancel_now.preview`` (nothing sent to Stripe),
    with its operation, which activation confirms. The one shown today is kept (a preview
    per refresh would only pile up operations); another day, or another choice, previews
    again."""
    stored = (row.overrides or {}).get(PREVIEW_KEY)
    expected = amendment_to_json(amendment)
    if _same_credit(stored, amendment, runtime.today()):
        assert isinstance(stored, dict)
        return {**expected, "preview": stored["preview"]}
    assert amendment.cancel_credit is not None
    try:
        shown = cancel_now.preview(
            runtime,
            amendment.subscription_id,
            credit=amendment.cancel_credit,
            actor=f"plan {row.id}",
        ).as_json()
    except (LifecycleError, StripeGatewayError) as exc:
        shown = {"error": str(exc)}
    return {**expected, "preview": shown}


def _credit_shown(runtime: Runtime, plan_id: str) -> dict[str, Any] | None:
    """Approving a cancellation now freezes the credit the page showed, not a new one: if a
    new day moved it, the page shows the new figure and the person approves again."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        computed = compute(runtime, row)
        stored = (row.overrides or {}).get(PREVIEW_KEY)
    if computed.amendment is None or not computed.amendment.cancels_now:
        return None
    if _same_credit(stored, computed.amendment, runtime.today()):
        assert isinstance(stored, dict)
        return {**amendment_to_json(computed.amendment), "preview": stored["preview"]}
    refresh_preview(runtime, plan_id)
    before = stored.get("preview") if isinstance(stored, dict) else None
    was = (before or {}).get("credit_amount_text") or "none"
    on = str((before or {}).get("as_of") or "")[:10] or "no day"
    raise PlanStateError(
        f"the credit of cancelling now was shown as {was} on {on}; it is previewed again for "
        "today: check the new figure on the page and approve again (nothing was sent)"
    )


def refresh_preview(runtime: Runtime, plan_id: str) -> None:
    """Ask Stripe for a preview of the change under review and keep it for the page (which
    never calls Stripe while it renders), and what Stripe says of the customer's payment
    methods. Called outside any database transaction."""
    payment_on_file.refresh(runtime, plan_id)
    previewed = _preview_for_approval(runtime, plan_id)
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status not in Status.REFRESHABLE:
            return
        overrides = {k: v for k, v in (row.overrides or {}).items() if k != PREVIEW_KEY}
        if previewed is not None:
            overrides[PREVIEW_KEY] = previewed
        if overrides != (row.overrides or {}):
            row.overrides = overrides


def _checked_preview(amendment: Amendment, previewed: dict[str, Any] | None) -> dict[str, Any]:
    expected = amendment_to_json(amendment)
    if previewed is None or {k: v for k, v in previewed.items() if k != "preview"} != expected:
        raise PlanStateError("the change moved while it was being previewed; try again")
    preview = previewed["preview"]
    if preview is not None and preview.get("error"):
        raise PlanStateError(
            f"Stripe could not preview the change, so it cannot be approved: {preview['error']}"
        )
    return previewed


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


def manual_invoices_sent(runtime: Runtime, plan_id: str) -> list[str]:
    """Invoices sent to the plan's customer since it was marked manual (asked of Stripe: the
    mirror may lag), which make undoing manual invoicing a way to bill twice."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status != Status.MANUAL or row.stripe_customer_id is None:
            return []
        customer_id = row.stripe_customer_id
        since = unix_of(row.approved_at) if row.approved_at else 0
    invoices = runtime.stripe.iter_invoices({"customer": customer_id, "created": {"gte": since}})
    return [str(i.id) for i in invoices if i.status != "draft"]


def undo_manual(runtime: Runtime, plan_id: str, *, actor: str) -> Plan:
    """Back to review from manual invoicing, as long as no invoice was sent meanwhile."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status != Status.MANUAL:
            raise PlanStateError("this plan is not invoiced manually; there is nothing to undo")
        marked_at = row.approved_at
    try:
        sent = manual_invoices_sent(runtime, plan_id)  # Stripe, outside any store session
    except StripeGatewayError as exc:
        raise PlanStateError(
            f"could not check with Stripe whether an invoice was sent ({exc}); try again"
        ) from exc
    if sent:
        raise PlanStateError(
            f"invoice {', '.join(sent)} was already sent to the customer by hand; billing "
            "this plan through Stripe too would bill the customer twice"
        )
    with runtime.db.session() as session:
        locked = session.get(Plan, plan_id, with_for_update=True)
        if locked is None:
            raise PlanNotFound(f"no plan {plan_id}")
        row = locked
        if row.status != Status.MANUAL or row.approved_at != marked_at:
            raise PlanStateError("the plan changed meanwhile; reload the page and try again")
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
    lines.extend(_charging_lines(plan, due, methods))
    if plan.invoices:
        lines.append(f"Invoice schedule ({len(plan.invoices)} invoice(s)):")
        lines.extend(_schedule_lines(plan))
    lines.append(f"Contract total: {format_money(plan.total_amount, cur)}.")
    return lines


def _charging_lines(plan: BillingPlan, due: str, methods: str) -> list[str]:
    """How the invoices are paid, the trial and the deal discount, in a rep's words."""
    cur = plan.currency
    lines: list[str] = []
    if plan.collection_method == "charge_automatically" and plan.payment_method is not None:
        lines.append(
            f"Charged automatically to {plan.payment_method.label} when each invoice is "
            "finalized (collection_method charge_automatically); a decline shows on the CRM "
            "invoice record."
        )
    else:
        lines.append(
            f"Invoices are emailed with Stripe's payment page, {due}; payment by {methods}."
        )
        if plan.collection_fallback:
            lines.append(
                "Not charged automatically although the deal asks: " + plan.collection_fallback
            )
    if plan.trial_end is not None:
        lines.append(
            f"Free trial of {plan.trial_days} day(s) until {plan.trial_end.isoformat()}: the "
            "first period is billed when it ends."
        )
    if plan.discount_percent is not None:
        lines.append(
            f"Deal discount {plan.discount_percent}% (a Stripe coupon on every invoice): "
            f"{format_money(plan.discount_total, cur)} off the contract."
        )
    if plan.discount_amount:
        capped = (
            ""
            if plan.discount_amount_taken == plan.discount_amount
            else f" (capped at what that invoice bills, "
            f"{format_money(plan.discount_amount_taken, cur)})"
        )
        lines.append(
            f"Deal discount {format_money(plan.discount_amount, cur)} off the contract (a "
            f"Stripe coupon of duration once, on the first invoice){capped}."
        )
    return lines


def _schedule_lines(plan: BillingPlan) -> list[str]:
    """The invoice schedule in a few lines: the first invoice, then each run of equal
    invoices as one line (the summary also goes to a CRM text field of limited length; the
    review page lists every invoice)."""
    cur = plan.currency
    first, rest = plan.invoices[0], plan.invoices[1:]
    lines = [f"  {first.date.isoformat()}  {format_money(first.amount, cur)}  {first.description}"]
    run: list[ScheduledInvoice] = []
    for invoice in [*rest, None]:
        if invoice is not None and (not run or invoice.amount == run[0].amount):
            run.append(invoice)
            continue
        if len(run) == 1:
            only = run[0]
            lines.append(
                f"  {only.date.isoformat()}  {format_money(only.amount, cur)}  {only.description}"
            )
        elif run:
            lines.append(
                f"  {run[0].date.isoformat()} to {run[-1].date.isoformat()}  {len(run)} invoices "
                f"of {format_money(run[0].amount, cur)}, one per period"
            )
        run = [] if invoice is None else [invoice]
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
    amendment, preview = _shown_amendment(runtime, row, computed)
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
        "summary": _summary(runtime, row, shown, amendment, preview),
        "invoice_amounts": (
            [format_money(i.amount, shown.currency) for i in shown.invoices] if shown else []
        ),
        "contract_total": format_money(shown.total_amount, shown.currency) if shown else None,
        "kind": computed.kind,
        "changed_after_activation": _changed_after_activation(row),
        "amendment": None
        if amendment is None
        else {
            **amendment_to_json(amendment),
            "preview": preview,
            "schedule_phase": _schedule_phase(row, amendment),
        },
        "editable": row.status in Status.EDITABLE,
        "activatable": row.status in Status.ACTIVATABLE and computed.plan is not None,
        "approved_at": row.approved_at.isoformat() if row.approved_at else None,
        "approved_by": row.approved_by,
        "crm_deal_url": runtime.crm.record_url("deal", row.deal_id) if _has_crm(runtime) else None,
    }
    if computed.kind in AMENDING_KINDS and amendment is None and row.plan_data is None:
        view["amendment_notice"] = (
            f"The deal is a {computed.kind}, but the account has no live subscription made by "
            "dealbridge to change; activating it starts a new subscription."
        )
    return view


def _schedule_phase(row: Plan, amendment: Amendment) -> dict[str, Any] | None:
    """Where a change that starts later is: the phase of the subscription's schedule in
    Stripe that makes it (once activated), or the phase it will be."""
    if not amendment.starts_later:
        return None
    return {
        "schedule_id": row.stripe_schedule_id if row.status == Status.ACTIVE else None,
        "start_date": amendment.effective_date.isoformat(),
    }


def _changed_after_activation(row: Plan) -> dict[str, Any] | None:
    flag = (row.plan_data or {}).get(CHANGED_KEY)
    return flag if isinstance(flag, dict) else None


def _shown_amendment(
    runtime: Runtime, row: Plan, computed: Computed
) -> tuple[Amendment | None, dict[str, Any] | None]:
    """The frozen amendment and its approved preview, or the one under review with the
    last preview Stripe gave of exactly that change (None until there is one)."""
    if row.plan_data is not None:
        return frozen_amendment(row)
    if computed.amendment is None:
        return None, None
    stored = (row.overrides or {}).get(PREVIEW_KEY)
    if not isinstance(stored, dict):
        return computed.amendment, None
    previewed = {k: v for k, v in stored.items() if k != "preview"}
    if previewed != amendment_to_json(computed.amendment):
        return computed.amendment, None  # the change moved since: the next refresh previews
    return computed.amendment, stored.get("preview")


def _summary(
    runtime: Runtime,
    row: Plan,
    shown: BillingPlan | None,
    amendment: Amendment | None,
    preview: dict[str, Any] | None,
) -> list[str]:
    if amendment is not None:
        return amendment_summary(amendment, preview)
    return summary_lines(shown, _contact_name(row), runtime.today()) if shown else []


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
    changed = _changed_after_activation(row)
    amendment, preview = (
        frozen_amendment(row) if row.plan_data is not None else (computed.amendment, None)
    )
    summary = "\n".join(_summary(runtime, row, shown, amendment, preview))
    if changed is not None:
        label = CHANGED_LABEL
        summary = "\n".join(
            [
                "The deal changed after activation; Stripe is unchanged until someone decides "
                f"on the review page ({', '.join(changed.get('actions') or [])}):",
                *(f"  - {line}" for line in changed.get("summary") or []),
                "",
                summary,
            ]
        )
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
