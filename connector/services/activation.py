"""Activation: turn an approved plan into Stripe objects, exactly once.

Safety comes from three layers:
1. a *claim*: a plan moves approved -> activating under a row lock with a lease, so two
   activations of one deal at once do the work once (the loser sees it activating);
2. *steps*: each Stripe write is a named step whose result is stored; a re-run skips done
   steps, and re-sends an unrecorded one with the same idempotency key
   (``dealbridge:plan:<id>:<approval>:<step>``), so Stripe answers with the object it already
   made — a crash between two calls ends with exactly one set of objects;
3. the *credit gate* runs before the first Stripe write and never after it, so a hold that
   lands mid-activation either stops it before anything exists or applies after it.

Activation sits above the credit service and calls it directly: the gate reads the CRM as it
will be (``credit.as_it_will_be``), a plan that waits shows why on the account
(``credit.plan_waiting``), and an activated plan gets the account's hold policy at once
(``credit.plan_activated``: a hold that landed mid-activation pauses the new subscription
before anyone has to wait for a worker). The other way round goes through the store: when
the credit service finds an account's credit free again it stores an
``account.waiting_plans_due`` follow-up, and ``on_waiting_plans_due`` here handles it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.billing.gateway import StripeGatewayError, StripeRejected
from connector.crm.base import CrmError
from connector.domain.amendment import TARGET_KEY, Amendment, live_from_json
from connector.domain.credit import CreditDecision, CreditStatus, decide_activation
from connector.domain.plan import BillingPlan, catch_up_lines, plan_from_json, subscription_timing
from connector.domain.plan_status import Status
from connector.domain.timestamps import unix_at_midnight, unix_of
from connector.runtime import Runtime
from connector.services import amendment as amendments
from connector.services import cancel_now, catalog, credit, subscribers
from connector.services.lifecycle_operations import LifecycleError, StripeRefused
from connector.services.plans import (
    MANUAL_REASON,
    frozen_amendment,
    get_plan,
    refresh_preview,
    write_status_to_crm,
)
from connector.store import audit
from connector.store.lease import SHORT_LEASE
from connector.store.locks import lock
from connector.store.models import Plan, StripeOperation

log = logging.getLogger(__name__)

#: A claim's lease, renewed while the activation runs (``store.lease.LeaseKeeper``): a plan
#: whose process died is taken over by the next worker within this, not minutes later.
LEASE = SHORT_LEASE
#: "In the order they were approved": two approvals racing on PostgreSQL can draw the same
#: sequence number, so the approval time and the id break ties deterministically.
APPROVAL_ORDER = (Plan.approval_seq, Plan.approved_at, Plan.id)
MAX_BACKOFF = timedelta(hours=6)


# --------------------------------------------------------------------------- claim


def _claim(runtime: Runtime, plan_id: str) -> int | None:
    """Claim the plan for activation; its attempt number (the fencing token) or None."""
    now = runtime.clock()
    with runtime.db.session() as session:
        row = session.get(Plan, plan_id, with_for_update=True)
        if row is None:
            return None
        due = row.next_attempt_at is None or row.next_attempt_at <= now
        claimable = (row.status in (Status.APPROVED, Status.SCHEDULED) and due) or (
            row.status == Status.ACTIVATING and (row.lease_until or now) < now
        )
        if not claimable:
            return None
        if row.crm_account_id is not None and _account_busy(session, row, now):
            return None  # one activation per account at a time: each raises its exposure
        row.status = Status.ACTIVATING
        row.lease_until = now + LEASE
        row.attempts = (row.attempts or 0) + 1
        return row.attempts


def _renewal(plan_id: str, attempts: int) -> Callable[[Session, datetime], None]:
    """Push the activation's lease forward while this process still holds the plan."""

    def renew(session: Session, until: datetime) -> None:
        session.execute(
            update(Plan)
            .where(Plan.id == plan_id, Plan.status == Status.ACTIVATING, Plan.attempts == attempts)
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )

    return renew


def _account_busy(session: Any, row: Plan, now: datetime) -> bool:
    """Another plan of the account is being activated (its lease is live).

    The credit gate reads the account's open balance before the first Stripe write; two
    plans of one account passing it at once could together exceed the limit. The account
    lock (an advisory lock on PostgreSQL; SQLite serialises writers anyway) makes this check
    and the claim one step for every worker.
    """
    lock(session, f"activation:{row.crm_account_id}")
    other = session.scalars(
        select(Plan.id).where(
            Plan.crm_account_id == row.crm_account_id,
            Plan.id != row.id,
            Plan.status == Status.ACTIVATING,
            Plan.lease_until > now,
        )
    ).first()
    return other is not None


def activate(runtime: Runtime, plan_id: str) -> Plan:
    """Activate an approved plan if it is due; returns the plan as it stands afterwards."""
    attempts = _claim(runtime, plan_id)
    if attempts is not None:
        try:
            with runtime.leases.hold(_renewal(plan_id, attempts)):
                _run(runtime, plan_id)
        except StripeRejected as exc:
            _settle(
                runtime, plan_id, Status.FAILED, f"Stripe refused the activation: {exc.message}"
            )
        except (catalog.ArchivedProduct, amendments.SubscriptionMoved) as exc:
            _settle(runtime, plan_id, Status.FAILED, f"Not activated: {exc}")
        except (StripeGatewayError, CrmError) as exc:
            if exc.retryable:
                _retry_later(runtime, plan_id, str(exc))
            else:
                _settle(runtime, plan_id, Status.FAILED, str(exc))
        except Exception as exc:
            log.exception("activation of plan %s failed unexpectedly", plan_id)
            _retry_later(runtime, plan_id, f"{type(exc).__name__}: {exc}")
    with runtime.db.session() as session:
        return get_plan(session, plan_id)


def _retry_later(runtime: Runtime, plan_id: str, reason: str) -> None:
    base = timedelta(seconds=runtime.config.section("jobs")["backoff_base_seconds"])
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status != Status.ACTIVATING:
            log.warning("plan %s is %s; not retrying it (%s)", plan_id, row.status, reason)
            return
        delay = min(base * (2 ** max(row.attempts - 1, 0)), MAX_BACKOFF)
        row.status = Status.APPROVED
        row.lease_until = None
        row.next_attempt_at = runtime.clock() + delay
        row.status_reason = f"Retrying: {reason}"


def _settle(runtime: Runtime, plan_id: str, status: str, reason: str | None) -> None:
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status != Status.ACTIVATING:
            # Only the run that holds the plan settles it: an error after the plan became
            # active must not make a billing plan look failed (and invite a second run).
            log.warning(
                "plan %s is %s; not marking it %s (%s)", plan_id, row.status, status, reason
            )
            return
        row.status = status
        row.status_reason = reason
        row.lease_until = None
        audit.record(
            session,
            actor="dealbridge",
            action=f"plan.{status}",
            subject_type="deal",
            subject_id=row.deal_id,
            reason=reason,
        )
        write_status_to_crm(runtime, session, row)


# --------------------------------------------------------------------------- credit


def credit_decision(runtime: Runtime, row: Plan, plan: BillingPlan) -> CreditDecision:
    """Read the account's credit fields fresh from the CRM and decide."""
    assert row.crm_account_id is not None
    # Fresh from the CRM, with dealbridge's own hold changes still queued for it applied.
    account = credit.as_it_will_be(runtime, runtime.crm.get_account(row.crm_account_id))
    limit = account.credit_limit
    applicable = limit.amount if limit is not None and limit.currency == plan.currency else None
    status = CreditStatus(
        on_hold=account.credit_hold,
        hold_source="dealbridge"
        if account.credit_hold_source == "dealbridge"
        else ("person" if account.credit_hold else None),
        credit_limit=applicable,
    )
    open_balance = 0
    if applicable and row.stripe_customer_id and not account.credit_hold:
        open_balance = runtime.stripe.open_balance(row.stripe_customer_id, plan.currency)
    return decide_activation(
        status,
        open_balance,
        plan.first_invoice_amount,
        plan.currency,
        zero_limit_means_no_limit=runtime.config.section("credit")["zero_limit_means_no_limit"],
    )


def _has_written(runtime: Runtime, plan_id: str, seq: int) -> bool:
    """This approval already wrote to Stripe: its run is past the credit gate."""
    with runtime.db.session() as session:
        return (
            session.scalars(
                select(StripeOperation.id)
                .where(
                    StripeOperation.plan_id == plan_id,
                    StripeOperation.step.like(f"{seq}:%"),
                )
                .limit(1)
            ).first()
            is not None
        )


# --------------------------------------------------------------------------- the run

BRANCH_STEP = "branch"


def _recorded_branch(runtime: Runtime, plan_id: str, seq: int) -> str | None:
    with runtime.db.session() as session:
        return session.scalars(
            select(StripeOperation.result_id).where(
                StripeOperation.plan_id == plan_id,
                StripeOperation.step == f"{seq}:{BRANCH_STEP}",
            )
        ).first()


def _record_branch(runtime: Runtime, plan_id: str, seq: int, branch: str) -> str:
    """Write down, before the first billing write, what this approval creates in Stripe.

    A retry follows it instead of deciding again: after a lost response at 23:59 UTC, a
    retry past midnight would otherwise create a subscription beside the schedule that
    Stripe did create; and a retry never runs the credit gate again (the open balance may
    already include this plan's own first invoice).
    """
    try:
        with runtime.db.session() as session:
            session.add(
                StripeOperation(
                    plan_id=plan_id,
                    step=f"{seq}:{BRANCH_STEP}",
                    idempotency_key="",
                    result_id=branch,
                )
            )
    except IntegrityError:
        pass  # a concurrent run wrote it first: follow that one
    recorded = _recorded_branch(runtime, plan_id, seq)
    assert recorded is not None
    return recorded


def _run(runtime: Runtime, plan_id: str) -> None:
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        assert row.plan_data is not None, "approved plans are frozen"
        plan = plan_from_json(row.plan_data)
        seq = row.approval_seq or 0
        customer_id = row.stripe_customer_id
        deal_id, account_id = row.deal_id, row.crm_account_id
        amendment, preview = frozen_amendment(row)
    assert customer_id is not None
    if plan.collection == "manual":
        _settle(runtime, plan_id, Status.MANUAL, MANUAL_REASON)
        return
    today = runtime.today()
    branch = _recorded_branch(runtime, plan_id, seq)
    if branch is None:
        ends = amendment is not None and (amendment.cancel_at_period_end or amendment.cancels_now)
        if not ends and not _has_written(runtime, plan_id, seq):
            # An amendment's first invoice is the one Stripe previewed for the change; a
            # cancellation bills nothing more, so it never waits on credit.
            gated = plan
            if amendment is not None and preview is not None:
                gated = replace(plan, first_invoice_amount=int(preview.get("amount_due") or 0))
            decision = credit_decision(runtime, row, gated)
            if not decision.allowed:
                _await_credit(runtime, plan_id, decision)
                return
        if amendment is not None and amendment.cancels_now:
            branch = "cancel_now"
        elif amendment is not None:
            # A change that starts later is Stripe's to make on its day: a schedule phase.
            branch = "phase" if amendment.effective_date > today else "amendment"
        elif plan.invoice_type == "recurring":
            branch = "schedule" if plan.start_date > today else "subscription"
        elif plan.send_date and plan.send_date > today:
            _schedule_for(runtime, plan_id, plan.send_date)
            return
        else:
            branch = "invoice"
        branch = _record_branch(runtime, plan_id, seq, branch)
    metadata = {
        "dealbridge_plan_id": plan_id,
        "crm_deal_id": deal_id,
        "crm_account_id": account_id or "",
    }
    step = _Steps(runtime, plan_id, seq)
    ids: dict[str, str] = {}
    reason: str | None = None
    if branch == "cancel_now":
        assert amendment is not None
        done = _cancel_now(runtime, plan_id, row.approved_by or "dealbridge", preview)
        if done is None:
            return
        ids["subscription"], reason = amendment.subscription_id, done
    elif branch == "amendment":
        assert amendment is not None
        ids["subscription"] = _amend_subscription(runtime, step, row, plan, amendment, preview)
    elif branch == "phase":
        assert amendment is not None
        ids["subscription"] = amendment.subscription_id
        ids["schedule"] = _schedule_change(runtime, step, row, plan, amendment)
        reason = (
            f"The change is scheduled in Stripe: subscription schedule {ids['schedule']} "
            f"changes subscription {amendment.subscription_id} on "
            f"{amendment.effective_date.isoformat()} (00:00 UTC)."
        )
    elif branch == "schedule":
        ids["schedule"] = _create_schedule(runtime, step, plan, customer_id, metadata)
    elif branch == "subscription":
        ids["subscription"] = _create_subscription(runtime, step, plan, customer_id, metadata)
    else:
        ids["invoice"] = _send_one_time_invoice(runtime, step, plan, customer_id, metadata)
    _activated(runtime, plan_id, ids, reason)


def _await_credit(runtime: Runtime, plan_id: str, decision: CreditDecision) -> None:
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        row.status = Status.AWAITING_CREDIT
        row.status_reason = decision.message
        row.lease_until = None
        audit.record(
            session,
            actor="dealbridge",
            action="plan.awaiting_credit",
            subject_type="deal",
            subject_id=row.deal_id,
            reason=decision.reason,
            exposure=decision.exposure,
            credit_limit=decision.credit_limit,
        )
        write_status_to_crm(runtime, session, row)
        account_id = row.crm_account_id
    credit.plan_waiting(runtime, account_id)


def _cancel_now(
    runtime: Runtime, plan_id: str, approver: str, preview: dict[str, Any] | None
) -> str | None:
    """Confirm the cancel-now operation the person reviewed (``cancel_now.confirm``: it
    recomputes the credit, refuses a figure that moved and is idempotent per operation, so
    a re-run after a crash never credits twice). Returns the active plan's reason, or None
    when the plan went back to review because the credit is no longer the one shown."""
    operation = (preview or {}).get("operation_id")
    if not isinstance(operation, str):
        _back_to_review(runtime, plan_id, "No credit was previewed; review it again.")
        return None
    try:
        outcome, _ = cancel_now.confirm(runtime, operation, actor=approver)
    except StripeRefused as exc:
        cause = exc.__cause__
        if isinstance(cause, StripeGatewayError) and cause.retryable:
            raise cause from exc  # an outage: retried later, the same operation confirmed
        _back_to_review(runtime, plan_id, f"Not cancelled: {exc}")
        return None
    except LifecycleError as exc:
        _back_to_review(runtime, plan_id, f"Not cancelled: {exc}")
        return None
    figures = outcome.figures
    note = figures.get("credit_note_id")
    if note:
        return (
            f"Cancelled now; credit note {note} of {figures.get('credit_amount_text')} on "
            f"invoice {figures.get('invoice_id')} ({outcome.credit})."
        )
    return "Cancelled now; no credit note (nothing to credit)."


def _back_to_review(runtime: Runtime, plan_id: str, reason: str) -> None:
    """The approval no longer holds (the credit moved): back to review, nothing sent."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.status != Status.ACTIVATING:
            return
        row.status = Status.IN_REVIEW
        row.status_reason = reason
        row.plan_data = None
        row.approved_at = None
        row.approved_by = None
        row.lease_until = None
        # The credit the person confirmed is not the one Stripe would get now: they confirm
        # the new figure again before approving.
        overrides = dict(row.overrides or {})
        confirmed = list(overrides.get("confirmed") or [])
        if "cancel_credit" in confirmed:
            overrides["confirmed"] = [c for c in confirmed if c != "cancel_credit"]
            row.overrides = overrides
        audit.record(
            session,
            actor="dealbridge",
            action="plan.back_to_review",
            subject_type="deal",
            subject_id=row.deal_id,
            reason=reason,
        )
        write_status_to_crm(runtime, session, row)
    refresh_preview(runtime, plan_id)  # today's credit, for the page (Stripe only read)


def _schedule_for(runtime: Runtime, plan_id: str, send_date: date) -> None:
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        row.status = Status.SCHEDULED
        row.lease_until = None
        row.next_attempt_at = datetime(send_date.year, send_date.month, send_date.day, tzinfo=UTC)
        row.status_reason = f"The invoice will be created and sent on {send_date.isoformat()}."
        write_status_to_crm(runtime, session, row)


def _amend_subscription(
    runtime: Runtime,
    step: _Steps,
    row: Plan,
    plan: BillingPlan,
    amendment: Amendment,
    preview: dict[str, Any] | None,
) -> str:
    """The one subscription update the amendment is, with the previewed proration date
    (after releasing a schedule that manages the subscription: ``release_schedule``)."""
    target = live_from_json((row.overrides or {})[TARGET_KEY])
    proration_date = None if preview is None else preview.get("proration_date")

    def release(key: str) -> str:
        amendments.check_unmoved(runtime, amendment, target)
        return amendments.release_schedule(runtime, amendment.subscription_id, key)

    step("release_schedule", release)

    def update(key: str) -> str:
        amendments.check_unmoved(runtime, amendment, target)
        params = amendments.update_params(runtime, plan, amendment, proration_date)
        params["metadata"] = {"dealbridge_amended_by_plan_id": row.id, "crm_deal_id": row.deal_id}
        return runtime.stripe.update_subscription(
            amendment.subscription_id,
            params,  # type: ignore[arg-type]
            key,
        ).id

    return step("amendment", update)


def _schedule_change(
    runtime: Runtime, step: _Steps, row: Plan, plan: BillingPlan, amendment: Amendment
) -> str:
    """A change that starts later, handed to Stripe now: the subscription's schedule (made
    from it unless it has one), then its phases (the current one up to the change, the
    changed items from the change's day). Each is a step with its own idempotency key; a
    re-run after a lost answer finds the schedule on the subscription and its phase in the
    schedule, and sends nothing twice."""
    target = live_from_json((row.overrides or {})[TARGET_KEY])
    metadata = amendments.phase_metadata(row.id, row.deal_id)

    def schedule(key: str) -> str:
        amendments.check_unmoved(runtime, amendment, target)
        return amendments.schedule_for(runtime, amendment.subscription_id, key)

    schedule_id = step("phase_schedule", schedule)

    def phases(key: str) -> str:
        params = amendments.phase_update(runtime, plan, amendment, target, schedule_id, metadata)
        if params is None:
            return schedule_id  # the phase is there already (an earlier, unrecorded run)
        return runtime.stripe.update_subscription_schedule(
            schedule_id,
            params,  # type: ignore[arg-type]
            key,
        ).id

    return step("phase_update", phases)


def _activated(
    runtime: Runtime, plan_id: str, ids: dict[str, str], reason: str | None = None
) -> None:
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        row.stripe_subscription_id = ids.get("subscription", row.stripe_subscription_id)
        row.stripe_schedule_id = ids.get("schedule", row.stripe_schedule_id)
        row.stripe_invoice_id = ids.get("invoice", row.stripe_invoice_id)
        row.status = Status.ACTIVE
        row.status_reason = reason
        row.lease_until = None
        row.activated_at = runtime.clock()
        audit.record(
            session,
            actor="dealbridge",
            action="plan.activated",
            subject_type="deal",
            subject_id=row.deal_id,
            **ids,
        )
        write_status_to_crm(runtime, session, row)
        _emit_activated(runtime, session, row, ids)
        account_id = row.crm_account_id
    try:
        credit.plan_activated(runtime, account_id)
    except Exception:
        # The plan is active and billing; the periodic credit check applies a hold that
        # landed meanwhile (its pause policy included), so this is not the plan's failure.
        log.exception("applying the credit state after activating plan %s failed", plan_id)


def _emit_activated(runtime: Runtime, session: Any, row: Plan, ids: dict[str, str]) -> None:
    subscribers.emit(
        session,
        runtime,
        "subscription.activated",
        row.crm_account_id or "",
        {
            "deal_id": row.deal_id,
            "plan_id": row.id,
            "stripe_customer_id": row.stripe_customer_id,
            **ids,
        },
    )


# --------------------------------------------------------------------------- steps


class _Steps:
    """Run each named Stripe write once per approval, remembering what it created."""

    def __init__(self, runtime: Runtime, plan_id: str, seq: int) -> None:
        self.runtime = runtime
        self.plan_id = plan_id
        self.seq = seq

    def key(self, name: str) -> str:
        return f"dealbridge:plan:{self.plan_id}:{self.seq}:{name}"

    def __call__(self, name: str, call: Callable[[str], str]) -> str:
        step = f"{self.seq}:{name}"
        with self.runtime.db.session() as session:
            done = session.scalars(
                select(StripeOperation.result_id).where(
                    StripeOperation.plan_id == self.plan_id, StripeOperation.step == step
                )
            ).first()
        if done is not None:
            return done
        key = self.key(name)
        result_id = call(key)
        try:
            with self.runtime.db.session() as session:
                session.add(
                    StripeOperation(
                        plan_id=self.plan_id, step=step, idempotency_key=key, result_id=result_id
                    )
                )
        except IntegrityError:
            pass  # recorded by a concurrent re-run with the same key: same object
        return result_id


def _payment_settings(plan: BillingPlan) -> dict[str, Any]:
    settings: dict[str, Any] = {"payment_method_types": list(plan.payment_method_types)}
    if "customer_balance" in plan.payment_method_types:
        # Bank transfers show the ACH/wire account details on the hosted invoice.
        settings["payment_method_options"] = {
            "customer_balance": {
                "funding_type": "bank_transfer",
                "bank_transfer": {"type": "us_bank_transfer"},
            }
        }
    return settings


def collection_params(plan: BillingPlan) -> dict[str, Any]:
    """How the plan's invoices are paid: the payment method on file charged automatically
    (named explicitly: Stripe would not charge an attached method that is not the default),
    or invoices sent with ``days_until_due`` (which Stripe refuses with automatic charging)."""
    if plan.collection_method == "charge_automatically" and plan.payment_method is not None:
        return {
            "collection_method": "charge_automatically",
            "default_payment_method": plan.payment_method.id,
        }
    return {"collection_method": "send_invoice", "days_until_due": plan.days_until_due}


def deal_discounts(runtime: Runtime, plan: BillingPlan) -> list[dict[str, str]]:
    """The deal discount as Stripe ``discounts``: a percent-off coupon on every invoice or an
    amount-off coupon of duration ``once`` (a deal has one or the other), or none."""
    coupon = catalog.ensure_deal_coupon(runtime, plan) or catalog.ensure_deal_amount_coupon(
        runtime, plan
    )
    return [] if coupon is None else [{"coupon": coupon}]


def subscription_params(runtime: Runtime, plan: BillingPlan, customer_id: str) -> dict[str, Any]:
    """The ``POST /v1/subscriptions`` parameters of ``plan`` created now (no metadata); the
    review page's preview asks Stripe about exactly these. Finds or creates the prices.

    With a trial the subscription starts trialing now and Stripe anchors its periods at the
    trial's end (midnight UTC of ``plan.trial_end``), so no anchor or backdate is sent."""
    now = runtime.clock()
    timing = subscription_timing(plan, now.date())
    recurring, one_time = catalog.stripe_items(
        runtime, plan, catch_up_lines(plan, timing.catch_up_periods)
    )
    params: dict[str, Any] = {
        "customer": customer_id,
        "items": recurring,
        **collection_params(plan),
        "payment_settings": _payment_settings(plan),
        "cancel_at": unix_at_midnight(timing.billed_through),
    }
    if plan.trial_end is not None:
        params["trial_end"] = unix_at_midnight(plan.trial_end)
    else:
        params["billing_cycle_anchor"] = unix_at_midnight(timing.anchor)
        if unix_at_midnight(timing.current_start) < unix_of(now):
            params["backdate_start_date"] = unix_at_midnight(timing.current_start)
    if one_time:
        params["add_invoice_items"] = one_time
    discounts = deal_discounts(runtime, plan)
    if discounts:
        params["discounts"] = discounts
    return params


def _create_subscription(
    runtime: Runtime, step: _Steps, plan: BillingPlan, customer_id: str, metadata: dict[str, str]
) -> str:
    """A subscription whose every period is a full period of the plan.

    Periods are counted from the contract start at midnight UTC: the billing cycle anchor is
    the next period boundary, the current period is backdated to its start (so it bills in
    full, not from the minute of activation), and ``cancel_at`` is the end of the last
    period, so nothing is prorated. Periods of a start in the past that already ended are
    billed as named catch-up lines on the first invoice.
    """
    params = {**subscription_params(runtime, plan, customer_id), "metadata": metadata}
    return step(
        "subscription",
        lambda key: runtime.stripe.create_subscription(params, key).id,  # type: ignore[arg-type]
    )


def _create_schedule(
    runtime: Runtime, step: _Steps, plan: BillingPlan, customer_id: str, metadata: dict[str, str]
) -> str:
    """A future start needs a schedule. Phases cannot carry payment method types, so the
    subscription webhook applies them when the schedule starts its subscription. The phase
    carries the payment method charged automatically, the deal discount and the trial."""
    recurring, one_time = catalog.stripe_items(runtime, plan)
    collection = collection_params(plan)
    settings: dict[str, Any] = {"collection_method": collection["collection_method"]}
    if "days_until_due" in collection:
        settings["invoice_settings"] = {"days_until_due": collection["days_until_due"]}
    phase: dict[str, Any] = {
        "items": recurring,
        "end_date": unix_at_midnight(plan.billed_through or plan.end_date),
        **settings,
        "proration_behavior": "none",
        "metadata": {
            **metadata,
            "payment_method_types": ",".join(plan.payment_method_types),
        },
    }
    if one_time:
        phase["add_invoice_items"] = one_time
    if "default_payment_method" in collection:
        phase["default_payment_method"] = collection["default_payment_method"]
    discounts = deal_discounts(runtime, plan)
    if discounts:
        phase["discounts"] = discounts
    if plan.trial_end is not None:
        phase["trial_end"] = unix_at_midnight(plan.trial_end)
    params: dict[str, Any] = {
        "customer": customer_id,
        "start_date": unix_at_midnight(plan.start_date),
        "end_behavior": "cancel",
        "default_settings": settings,
        "phases": [phase],
        "metadata": metadata,
    }
    return step(
        "schedule",
        lambda key: runtime.stripe.create_subscription_schedule(params, key).id,  # type: ignore[arg-type]
    )


def _send_one_time_invoice(
    runtime: Runtime, step: _Steps, plan: BillingPlan, customer_id: str, metadata: dict[str, str]
) -> str:
    prices = [
        (
            catalog.ensure_price(runtime, line, plan),
            line.quantity,
            catalog.ensure_coupon(runtime, line, plan),
        )
        for line in plan.lines
    ]
    params: dict[str, Any] = {
        "customer": customer_id,
        **collection_params(plan),
        "payment_settings": _payment_settings(plan),
        "pending_invoice_items_behavior": "exclude",
        "auto_advance": False,
        "metadata": metadata,
    }
    discounts = deal_discounts(runtime, plan)
    if discounts:
        params["discounts"] = discounts
    invoice_id = step(
        "invoice",
        lambda key: runtime.stripe.create_invoice(params, key).id,  # type: ignore[arg-type]
    )
    for index, (price_id, quantity, coupon) in enumerate(prices):
        item: dict[str, Any] = {
            "customer": customer_id,
            "invoice": invoice_id,
            "pricing": {"price": price_id},
            "quantity": quantity,
            "metadata": metadata,
        }
        if coupon is not None:
            item["discounts"] = [{"coupon": coupon}]
        step(
            f"item:{index}",
            lambda key, item=item: runtime.stripe.create_invoice_item(item, key).id,  # type: ignore[misc]
        )
    if params["collection_method"] == "charge_automatically":
        # Stripe charges the payment method on file itself (and retries a decline under
        # the account's retry rules); a decline reaches the CRM through the invoice events.
        step(
            "finalize",
            lambda key: runtime.stripe.finalize_invoice(invoice_id, key, auto_advance=True).id,
        )
        return invoice_id
    step("finalize", lambda key: runtime.stripe.finalize_invoice(invoice_id, key).id)
    step("send", lambda key: runtime.stripe.send_invoice(invoice_id, key).id)
    return invoice_id


# --------------------------------------------------------------------------- jobs


def activate_due_plans(runtime: Runtime) -> int:
    """Worker job: activate approved and due plans in approval order; recover stale claims."""
    now = runtime.clock()
    with runtime.db.session() as session:
        due = session.execute(
            select(Plan.id, Plan.status)
            .where(
                or_(
                    (Plan.status.in_((Status.APPROVED, Status.SCHEDULED)))
                    & ((Plan.next_attempt_at.is_(None)) | (Plan.next_attempt_at <= now)),
                    (Plan.status == Status.ACTIVATING) & (Plan.lease_until < now),
                )
            )
            .order_by(*APPROVAL_ORDER)
            .limit(50)
        ).all()
    handled = 0
    for plan_id, before in due:
        handled += int(activate(runtime, plan_id).status != before)
    return handled


def recheck_credit(runtime: Runtime, account_id: str) -> int:
    """An account's credit changed: retry its waiting plans in the order they were approved.

    One at a time: each activation raises the account's exposure, so the next plan is
    judged against the balance its predecessors created, and once one waits again the
    later ones keep waiting behind it.
    """
    with runtime.db.session() as session:
        ids = session.scalars(
            select(Plan.id)
            .where(Plan.crm_account_id == account_id, Plan.status == Status.AWAITING_CREDIT)
            .order_by(*APPROVAL_ORDER)
        ).all()
    activated = 0
    for plan_id in ids:
        with runtime.db.session() as session:
            row = get_plan(session, plan_id)
            if row.status != Status.AWAITING_CREDIT:
                continue
            row.status = Status.APPROVED
            row.next_attempt_at = runtime.clock()
        if activate(runtime, plan_id).status == Status.AWAITING_CREDIT:
            break
        activated += 1
    return activated


def on_waiting_plans_due(runtime: Runtime, event: dict[str, Any]) -> str | None:
    """Handler of the ``account.waiting_plans_due`` follow-up the credit service stores when
    an account's credit is free again: try its waiting plans in approval order, then
    announce the account's credit state (with the hold change that freed it, if any)."""
    account_id = str(event["id"])
    activated = recheck_credit(runtime, account_id)
    state, changed = credit.announce(runtime, account_id, credit.hold_change_of(event))
    parts = []
    if activated:
        parts.append(f"{activated} waiting plan(s) activated")
    if changed:
        parts.append(f"credit state {state}")
    return "; ".join(parts) or "no waiting plan could be activated"
