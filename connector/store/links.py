"""Look-ups of the account-to-customer links (``customer_links``), one place for each way."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.store.models import CustomerLink

#: Values per ``IN (...)`` list: well under SQLite's bound on query parameters.
IN_CHUNK = 500


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


def linked_accounts(session: Session, customer_ids: Iterable[str | None]) -> dict[str, str]:
    """The CRM accounts linked to these Stripe customers, in one query: customer -> account
    (customers no account is linked to are left out)."""
    wanted = sorted({c for c in customer_ids if c})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        rows = session.execute(
            select(CustomerLink.stripe_customer_id, CustomerLink.crm_account_id).where(
                CustomerLink.stripe_customer_id.in_(wanted[start : start + IN_CHUNK])
            )
        ).all()
        found.update({customer: account for customer, account in rows})
    return found
