"""CRM -> dealbridge: CRM changes in, pushed (Outbound Messages, Dataverse webhooks) or
polled, one path.

Both routes store a small event in the inbox (``services/crm_changes.py``) and the worker
handles it with the functions below, so a deal seen by push and by poll is handled the same
way, retried on failure, parked when it keeps failing, and never lost because the CRM was
briefly unreachable.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from connector.crm.base import CrmNotFound
from connector.runtime import Runtime
from connector.services import credit, customer_follow, deal_changes
from connector.services.crm_changes import ACCOUNT_CHANGED, DEAL_CHANGED, store_change
from connector.services.plan_intake import intake_deal
from connector.store.cursors import read_cursor, save_cursor
from connector.store.models import CustomerLink, Plan

log = logging.getLogger(__name__)


def handle_deal_changed(runtime: Runtime, event: dict[str, Any]) -> str | None:
    """A deal changed: read it, and create or refresh its plan if it is closed."""
    try:
        crm_deal = runtime.crm.get_deal(event["id"])
    except CrmNotFound:
        return "deal no longer exists"
    plan = intake_deal(runtime, crm_deal, actor="crm")  # an unclosed deal: only if it bills
    if plan is None:
        return None if crm_deal.closed else "not closed"
    return f"plan {plan.status}"


def handle_account_changed(runtime: Runtime, event: dict[str, Any]) -> str | None:
    """Credit hold or limit may have moved: settle the account's credit (hold policy, state);
    its waiting plans get another try through the follow-up the settlement stores."""
    try:
        outcome = credit.handle_account_changed(runtime, event["id"])
        followed = customer_follow.follow_account(runtime, event["id"])
    except CrmNotFound:
        return "account no longer exists"
    return "; ".join(p for p in (outcome, followed) if p) or None


def handle_contact_changed(runtime: Runtime, event: dict[str, Any]) -> str | None:
    """A contact changed (pushed): each linked account it bills for follows it in Stripe."""
    accounts = _linked(runtime, runtime.crm.accounts_of_contact(event["id"]))
    outcomes = []
    for account_id in accounts:
        followed = customer_follow.follow_account(runtime, account_id)
        if followed:
            outcomes.append(f"{account_id}: {followed}")
    if not accounts:
        return "no linked account"
    return "; ".join(outcomes) or None


# --------------------------------------------------------------------------- polling


def _linked(runtime: Runtime, account_ids: list[str]) -> list[str]:
    """The accounts among these linked to a Stripe customer."""
    if not account_ids:
        return []
    with runtime.db.session() as session:
        found = set(
            session.scalars(
                select(CustomerLink.crm_account_id).where(
                    CustomerLink.crm_account_id.in_(account_ids)
                )
            )
        )
    return [a for a in account_ids if a in found]


def _billing(runtime: Runtime, deal_ids: list[str]) -> list[str]:
    """The deals among these whose plan bills (or will, on its date)."""
    if not deal_ids:
        return []
    with runtime.db.session() as session:
        found = set(
            session.scalars(
                select(Plan.deal_id).where(
                    Plan.deal_id.in_(deal_ids),
                    Plan.status.in_(deal_changes.WATCHED),
                )
            )
        )
    return [d for d in deal_ids if d in found]


def poll_crm(runtime: Runtime) -> int:
    """Clock job: queue every closed deal and every account changed since the cursors.

    An event's id names the record's version, not just the batch: the poll reads from its
    cursor inclusively, so a record seen last time is seen again (and not queued twice),
    while a second change to it in the same second has a new version and is queued.
    """
    queued = 0
    for kind, cursor_name, event_type, read in (
        ("deal", "crm.deals", DEAL_CHANGED, runtime.crm.changed_deals),
        # Its own event ids: a deal lost in the second it was won has the same version.
        ("unclosed-deal", "crm.unclosed_deals", DEAL_CHANGED, runtime.crm.changed_unclosed_deals),
        ("account", "crm.accounts", ACCOUNT_CHANGED, runtime.crm.changed_accounts),
        ("contact", "crm.contacts", ACCOUNT_CHANGED, runtime.crm.changed_contact_accounts),
    ):
        with runtime.db.session() as session:
            since = read_cursor(session, cursor_name)
        changes = read(since)
        ids = changes.ids
        if cursor_name == "crm.unclosed_deals":
            ids = _billing(runtime, ids)  # lost or reopened deals matter once they bill
        elif cursor_name == "crm.contacts":
            ids = _linked(runtime, ids)  # a contact matters once its account has a customer
        for record_id in ids:
            version = changes.versions.get(record_id, changes.cursor)
            queued += store_change(
                runtime, f"poll:{kind}:{record_id}:{version}", event_type, {"id": record_id}
            )
        if changes.cursor is not None:
            with runtime.db.session() as session:
                save_cursor(session, cursor_name, changes.cursor, runtime.clock())
    return queued
