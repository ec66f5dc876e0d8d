"""A closed deal in the CRM becomes a plan to review (and, when configured, to activate).

Intake is where a deal read from the CRM meets the plans: it creates or refreshes the plan,
links the account's Stripe customer, writes the plan's status back to the deal and, with
``plans.auto_activate``, approves and activates it at once. It sits above activation and
linking, which it calls; nothing below calls it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from connector.billing.gateway import StripeGatewayError
from connector.crm.base import CrmDeal
from connector.domain.plan_status import Status
from connector.runtime import Runtime
from connector.services import amendment, customer_follow, deal_changes
from connector.services.activation import activate
from connector.services.backfill import send_customer_histories
from connector.services.linking import link_plan_customer
from connector.services.plans import (
    Computed,
    approve,
    compute,
    get_plan,
    plan_for_deal,
    problems_json,
    refresh_preview,
    write_status_to_crm,
)
from connector.store import audit
from connector.store.models import Plan

log = logging.getLogger(__name__)


def intake_deal(runtime: Runtime, crm_deal: CrmDeal, *, actor: str = "dealbridge") -> Plan | None:
    """Create or refresh the plan of a closed deal; link its customer; tell the CRM; and
    bring the linked Stripe customer in line with the deal (company, billing contact).

    Idempotent: a deal seen again (poll and push both, or our own write-back bumping its
    modified stamp) refreshes a plan still in review and leaves a settled one alone.
    """
    plan = _intake(runtime, crm_deal, actor=actor)
    if plan is not None:
        try:
            customer_follow.follow_deal(runtime, crm_deal)
        except StripeGatewayError as exc:
            # The plan is fine; the customer catches up at the deal's or account's next read.
            log.warning("the Stripe customer of deal %s was not updated: %s", crm_deal.id, exc)
        except Exception:
            log.exception("updating the Stripe customer of deal %s failed", crm_deal.id)
    return plan


def _intake(runtime: Runtime, crm_deal: CrmDeal, *, actor: str) -> Plan | None:
    # A deal whose plan already bills is compared with the deal that was activated and
    # flagged if it differs (edited, lost, reopened); Stripe waits for a person.
    watched = deal_changes.check(runtime, crm_deal)
    if watched is not None:
        return watched
    if not crm_deal.closed:
        return None
    with runtime.db.session() as session:
        row = plan_for_deal(session, crm_deal.id)
        if row is not None and row.status not in Status.REFRESHABLE:
            return row
        if row is None:
            row = Plan(
                id=str(uuid.uuid4()),
                deal_id=crm_deal.id,
                status=Status.IN_REVIEW,
                overrides={},
                created_at=runtime.clock(),
            )
            session.add(row)
            audit.record(
                session,
                actor=actor,
                action="plan.created",
                subject_type="deal",
                subject_id=crm_deal.id,
                plan_id=row.id,
            )
            before: tuple[Any, ...] | None = None
        else:
            before = (row.deal_data, row.status, row.stripe_customer_id)
        row.deal_data = crm_deal.data
        row.crm_account_id = crm_deal.account_id
        plan_id = row.id
    # A later deal of a live customer may change its subscription: look it up first, so
    # the plan (and its problems) are computed as that change.
    amendment.refresh_target(runtime, plan_id)
    computed = _refresh(runtime, plan_id, deal_changed=before is None or before[0] != crm_deal.data)
    if computed.deal is not None:
        link_plan_customer(runtime, plan_id, computed.deal)
    refresh_preview(runtime, plan_id)
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        # Our own write-back bumps the deal's modified stamp, so the deal comes back on the
        # next poll: write only when something changed, or the two would chase each other.
        if before != (row.deal_data, row.status, row.stripe_customer_id):
            write_status_to_crm(runtime, session, row)
        wants_auto = _auto_activate(runtime, row)
    if wants_auto:
        # A found customer's history may hold an overdue invoice: mirror it, and let the
        # non-payment policy see it, before billing the account more.
        send_customer_histories(runtime)
        approve(runtime, plan_id, actor="dealbridge (automatic activation)")
        activate(runtime, plan_id)
    with runtime.db.session() as session:
        return get_plan(session, plan_id)


def _refresh(runtime: Runtime, plan_id: str, *, deal_changed: bool) -> Computed:
    """Recompute after a read. A failed activation stays failed (its reason visible) until
    the deal itself changes; a deal that became billable goes back to review."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        computed = compute(runtime, row)
        row.problems = problems_json(computed.problems)
        if computed.deal is None or computed.plan is None:
            row.status = Status.INVALID
            row.status_reason = "; ".join(f"{p.field}: {p.message}" for p in computed.problems)
        elif row.status == Status.INVALID or (row.status == Status.FAILED and deal_changed):
            row.status = Status.IN_REVIEW
            row.status_reason = None
        return computed


def _auto_activate(runtime: Runtime, row: Plan) -> bool:
    mode = runtime.config.section("plans")["auto_activate"]
    if mode == "never" or row.status != Status.IN_REVIEW:
        return False
    computed = compute(runtime, row)
    if computed.amendment is not None and computed.amendment.cancels_now:
        # Cancelling now credits a figure of the day a person saw and confirmed: a person
        # activates it, never a sync (approval would refuse it anyway, unconfirmed).
        return False
    if mode == "always":
        return True
    return computed.plan is not None and not computed.plan.needs_confirmation
