"""Link a CRM account to its Stripe customer: find by email, or create; never guess.

Two or more Stripe customers with the billing email is a question for a person, not a
coin toss: the plan waits in ``needs_customer`` with the candidates listed.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from connector.billing.gateway import StripeGatewayError
from connector.domain.deal import Deal, InvalidDeal, parse_deal
from connector.domain.plan_status import Status
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.backfill import queue_customer_history
from connector.services.customer_follow import CONTACT_NAME_KEY
from connector.services.plans import get_plan
from connector.store import audit
from connector.store.models import AuditEntry, CustomerLink, Plan

log = logging.getLogger(__name__)


def customer_idempotency_key(account_id: str, email: str, generation: int = 0) -> str:
    """Same account and email, same key; a relink after the customer was deleted in Stripe
    is a new generation, or Stripe would replay the deleted customer."""
    digest = hashlib.sha256(email.strip().casefold().encode()).hexdigest()[:16]
    suffix = f":{generation}" if generation else ""
    return f"dealbridge:customer:{account_id}:{digest}{suffix}"


def _generation(runtime: Runtime, account_id: str) -> int:
    with runtime.db.session() as session:
        deleted = session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "customer.deleted", AuditEntry.subject_id == account_id)
        )
        return int(deleted or 0)


def link_plan_customer(runtime: Runtime, plan_id: str, deal: Deal) -> str | None:
    """Give the plan its account's Stripe customer; returns the customer id, if settled."""
    account_id = deal.account.id
    with runtime.db.session() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        link = session.get(CustomerLink, account_id)
        if link is not None:
            plan.stripe_customer_id = link.stripe_customer_id
            return link.stripe_customer_id
        if plan.status == Status.NEEDS_CUSTOMER:
            return None
    contact = deal.billing_contact
    assert contact is not None, "parse_deal guarantees a billing contact"
    try:
        matches = runtime.stripe.find_customers_by_email(contact.email)
        if len(matches) > 1:
            _hold_for_choice(runtime, plan_id, contact.email, matches)
            return None
        if matches:
            customer_id, source = matches[0].id, "found"
        else:
            # The customer is the company; the billing contact receives the invoices.
            customer = runtime.stripe.create_customer(
                name=deal.account.name,
                email=contact.email,
                address=deal.account.address,
                description=deal.account.name,
                metadata={
                    "crm_account_id": account_id,
                    "crm_kind": runtime.config.crm_kind,
                    "created_by": "dealbridge",
                    CONTACT_NAME_KEY: contact.name or "",
                },
                idempotency_key=customer_idempotency_key(
                    account_id, contact.email, _generation(runtime, account_id)
                ),
            )
            customer_id, source = customer.id, "created"
    except StripeGatewayError as exc:
        # Linking is retried by the activation job; the plan stays reviewable meanwhile.
        log.warning("could not link a Stripe customer for account %s: %s", account_id, exc)
        return None
    return _store_link(runtime, plan_id, account_id, customer_id, source)


def _store_link(
    runtime: Runtime, plan_id: str, account_id: str, customer_id: str, source: str
) -> str:
    try:
        with runtime.db.session() as session:
            session.add(
                CustomerLink(
                    crm_account_id=account_id,
                    stripe_customer_id=customer_id,
                    source=source,
                    linked_at=runtime.clock(),
                )
            )
            audit.record(
                session,
                actor="dealbridge",
                action=f"customer.{source}",
                subject_type="account",
                subject_id=account_id,
                stripe_customer_id=customer_id,
            )
            crm_outbound.link_account(runtime, session, account_id, customer_id)
            if source != "created":  # an existing customer may already have invoices
                queue_customer_history(session, account_id, customer_id)
    except IntegrityError:
        pass  # a concurrent intake linked the account first; use its link
    with runtime.db.session() as session:
        link = session.get(CustomerLink, account_id)
        assert link is not None
        plan = session.get(Plan, plan_id)
        assert plan is not None
        plan.stripe_customer_id = link.stripe_customer_id
        return link.stripe_customer_id


def _hold_for_choice(runtime: Runtime, plan_id: str, email: str, matches: list) -> None:  # type: ignore[type-arg]
    candidates = [
        {
            "id": c.id,
            "name": c.name,
            "email": c.email,
            "created": c.created,
            "url": runtime.stripe.customer_url(c.id),
        }
        for c in sorted(matches, key=lambda c: c.created)
    ]
    with runtime.db.session() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        plan.status = Status.NEEDS_CUSTOMER
        plan.customer_candidates = candidates
        plan.status_reason = (
            f"{len(candidates)} Stripe customers have the email {email}; choose the one this "
            "account uses before activating."
        )


def ensure_customer(runtime: Runtime, plan_id: str) -> None:
    """Relink before activating if the account's customer link is gone (deleted in Stripe):
    retrying a failed plan must not bill a customer that no longer exists."""
    with runtime.db.session() as session:
        row = get_plan(session, plan_id)
        if row.crm_account_id is None:
            return
        if session.get(CustomerLink, row.crm_account_id) is not None:
            return
        row.stripe_customer_id = None
        deal_data = row.deal_data
    try:
        deal = parse_deal(deal_data)
    except InvalidDeal:
        return
    link_plan_customer(runtime, plan_id, deal)
