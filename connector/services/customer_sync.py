"""Stripe customers' changes onto their CRM accounts: a refreshed link, or an unlinked
account once the customer is deleted in Stripe."""

from __future__ import annotations

from typing import Any

from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.stripe_mirror import UNKNOWN_CUSTOMER, account_of_customer
from connector.store import audit
from connector.store.links import link_of_customer


def on_customer_updated(runtime: Runtime, event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    with runtime.db.session() as session:
        account_id = account_of_customer(runtime, session, obj["id"], event["type"])
    if account_id is None:
        return UNKNOWN_CUSTOMER
    with runtime.db.session() as session:
        crm_outbound.link_account(runtime, session, account_id, obj["id"])
    return "customer link refreshed"


def on_customer_deleted(runtime: Runtime, event: dict[str, Any]) -> str | None:
    """The customer is gone from Stripe: unlink the account so the next deal links afresh."""
    obj = event["data"]["object"]
    with runtime.db.session() as session:
        link = link_of_customer(session, obj["id"])
        if link is None:
            runtime.metrics.count_unknown_customer("stripe", event["type"])
            return UNKNOWN_CUSTOMER
        account_id = link.crm_account_id
        session.delete(link)
        audit.record(
            session,
            actor="stripe",
            action="customer.deleted",
            subject_type="account",
            subject_id=account_id,
            stripe_customer_id=obj["id"],
        )
        crm_outbound.update_account(
            runtime, session, account_id, {"stripe_customer_id": "", "stripe_customer_url": ""}
        )
    return "customer unlinked"
