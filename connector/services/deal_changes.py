"""A deal edited, lost or reopened after its plan was activated: flagged, never acted on alone.

When the CRM shows a deal whose plan already bills (active or scheduled) differently from
the deal that was activated, the plan is flagged "changed after activation": the frozen
plan's JSON gets ``changed_after_activation`` (every difference, the deal as it is now and
the actions offered), the review page and the CRM deal say so, and Stripe stays exactly as
it is until a person decides:

* ``ignore``: the deal as it is now becomes the deal of record; the flag goes (audited);
* ``cancel``: the subscription is canceled at the end of its period (``subscription_changes``);
* ``amend``: the plan goes back to review as a change to its own subscription (the deal now
  lists the whole contract, so a replacement), then approved and activated as any amendment.
"""

from __future__ import annotations

import logging
from typing import Any

from connector.billing.gateway import StripeGatewayError
from connector.crm.base import CrmDeal
from connector.domain.amendment import TARGET_KEY, live_to_json
from connector.domain.deal_changes import (
    ACTIONS,
    FLAG_KEY,
    describe,
    differences,
    differences_to_json,
)
from connector.domain.plan_status import Status
from connector.runtime import Runtime
from connector.services import amendment as amendments
from connector.services import subscription_changes
from connector.services.lifecycle_operations import LifecycleError
from connector.services.plans import (
    PlanStateError,
    get_plan,
    plan_for_deal,
    refresh_preview,
    write_status_to_crm,
)
from connector.store import audit
from connector.store.models import Plan

log = logging.getLogger(__name__)

#: Plans whose Stripe objects exist (or will, on their date): a change there needs a person.
WATCHED = frozenset({Status.ACTIVE, Status.SCHEDULED})


def check(runtime: Runtime, crm_deal: CrmDeal) -> Plan | None:
    """The deal of a watched plan was read again: flag (or unflag) what differs from the deal
    that was activated. Returns the plan, or None when the deal has no watched plan (intake
    then treats it as usual)."""
    with runtime.db.session() as session:
        row = plan_for_deal(session, crm_deal.id)
        if row is None or row.status not in WATCHED or row.plan_data is None:
            return None
        found = differences(row.deal_data or {}, crm_deal.data, closed=crm_deal.closed)
        current = row.plan_data.get(FLAG_KEY)
        wanted: dict[str, Any] | None = None
        if found:
            wanted = {
                "differences": differences_to_json(found),
                "summary": [describe(d) for d in found],
                "deal": crm_deal.data,
                "closed": crm_deal.closed,
                "actions": list(ACTIONS),
                "detected_at": runtime.clock().isoformat(),
            }
        if _same(current, wanted):
            return row
        data = {k: v for k, v in row.plan_data.items() if k != FLAG_KEY}
        if wanted is not None:
            data[FLAG_KEY] = wanted
        row.plan_data = data
        audit.record(
            session,
            actor="crm",
            action="plan.changed_after_activation" if wanted else "plan.change_reverted",
            subject_type="deal",
            subject_id=row.deal_id,
            differences=None if wanted is None else wanted["differences"],
        )
        write_status_to_crm(runtime, session, row)
        return row


def _same(current: Any, wanted: dict[str, Any] | None) -> bool:
    if current is None or wanted is None:
        return current is None and wanted is None
    return bool(
        current.get("differences") == wanted["differences"]
        and current.get("closed") == wanted["closed"]
    )


def _flagged(session: Any, plan_id: str) -> tuple[Plan, dict[str, Any]]:
    row = get_plan(session, plan_id)
    flag = (row.plan_data or {}).get(FLAG_KEY)
    if row.status not in WATCHED or not isinstance(flag, dict):
        raise PlanStateError("the deal has not changed since the plan was activated")
    return row, flag


def ignore(runtime: Runtime, plan_id: str, *, actor: str) -> Plan:
    """Keep Stripe as it is: the deal as it is now becomes the deal of record."""
    with runtime.db.session() as session:
        row, flag = _flagged(session, plan_id)
        row.deal_data = flag["deal"]
        row.plan_data = {k: v for k, v in (row.plan_data or {}).items() if k != FLAG_KEY}
        audit.record(
            session,
            actor=actor,
            action="plan.change_ignored",
            subject_type="deal",
            subject_id=row.deal_id,
            differences=flag["differences"],
        )
        write_status_to_crm(runtime, session, row)
        return row


def cancel(runtime: Runtime, plan_id: str, *, actor: str) -> Plan:
    """End the plan's subscription at the end of its current period."""
    with runtime.db.session() as session:
        row, flag = _flagged(session, plan_id)
        subscription_id = row.stripe_subscription_id
    if subscription_id is None:
        raise PlanStateError(
            "this plan has no subscription yet (it starts later); cancel its schedule in "
            "Stripe, then ignore the change here"
        )
    try:
        subscription_changes.cancel(runtime, subscription_id, at_period_end=True, actor=actor)
    except LifecycleError as exc:
        raise PlanStateError(str(exc)) from exc
    with runtime.db.session() as session:
        row, flag = _flagged(session, plan_id)
        row.deal_data = flag["deal"]
        row.plan_data = {k: v for k, v in (row.plan_data or {}).items() if k != FLAG_KEY}
        row.status_reason = "Canceled at the end of the current period after the deal changed."
        audit.record(
            session,
            actor=actor,
            action="plan.canceled_after_change",
            subject_type="deal",
            subject_id=row.deal_id,
            subscription_id=subscription_id,
            differences=flag["differences"],
        )
        write_status_to_crm(runtime, session, row)
        return row


def amend(runtime: Runtime, plan_id: str, *, actor: str) -> Plan:
    """Back to review as a change to the plan's own subscription (the deal as it is now
    lists the whole contract: a replacement). Nothing changes in Stripe until it is
    approved and activated."""
    with runtime.db.session() as session:
        row, flag = _flagged(session, plan_id)
        subscription_id = row.stripe_subscription_id
        if not flag.get("closed"):
            raise PlanStateError("the deal is no longer Closed Won: cancel or ignore instead")
        if subscription_id is None:
            raise PlanStateError("this plan has no subscription yet to amend")
        deal_id = row.deal_id
    try:
        live = amendments.snapshot(runtime, subscription_id, plan_id, deal_id)
    except StripeGatewayError as exc:
        raise PlanStateError(f"Stripe could not be reached ({exc}); try again") from exc
    if live is None:
        raise PlanStateError(f"the subscription {subscription_id} no longer bills")
    with runtime.db.session() as session:
        row, flag = _flagged(session, plan_id)
        row.deal_data = flag["deal"]
        row.overrides = {
            **{k: v for k, v in (row.overrides or {}).items() if k != "change"},
            "change": "replacement",
            TARGET_KEY: live_to_json(live),
        }
        row.plan_data = None
        row.status = Status.IN_REVIEW
        row.status_reason = (
            "The deal changed after activation: review the change to the subscription."
        )
        audit.record(
            session,
            actor=actor,
            action="plan.amend_after_change",
            subject_type="deal",
            subject_id=row.deal_id,
            differences=flag["differences"],
        )
        write_status_to_crm(runtime, session, row)
    refresh_preview(runtime, plan_id)
    with runtime.db.session() as session:
        return get_plan(session, plan_id)


def act(runtime: Runtime, plan_id: str, action: str, *, actor: str) -> Plan:
    actions = {"ignore": ignore, "cancel": cancel, "amend": amend}
    if action not in actions:
        raise PlanStateError(f"{action!r} is not an action; use {', '.join(ACTIONS)}")
    return actions[action](runtime, plan_id, actor=actor)
