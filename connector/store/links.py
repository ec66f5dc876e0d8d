"""Look-ups of the account-to-customer links (``customer_links``), one place for each way."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.store.models import CustomerLink


def link_of_customer(session: Session, customer_id: str | None) -> CustomerLink | None:
    """The link of a Stripe customer, if some CRM account is linked to it."""
    if not customer_id:
        return None
    return session.scalars(
        select(CustomerLink).where(CustomerLink.stripe_customer_id == customer_id)
    ).first()


def linked_account(session: Session, customer_id: str | None) -> str | None:
    """The CRM account linked to a Stripe customer, if any."""
    link = link_of_customer(session, customer_id)
    return link.crm_account_id if link is not None else None


def linked_customer(session: Session, account_id: str) -> str | None:
    """The Stripe customer a CRM account is linked to, if any."""
    link = session.get(CustomerLink, account_id)
    return link.stripe_customer_id if link is not None else None
