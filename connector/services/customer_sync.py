"""Stripe customers' changes onto their CRM accounts: a refreshed link, or an unlinked
account once the customer is deleted in Stripe.

Neither handler trusts the event: each re-fetches the customer. Stripe keeps a deleted
customer retrievable as ``{"id": ..., "deleted": true}``, so "deleted" is what the fetch
says, whatever the event's type: a ``customer.deleted`` for a customer Stripe still has is
not acted on, and a customer Stripe does not find at all was never this account's.
"""

from __future__ import annotations

from typing import Any

from connector.billing.event_shape import event_object
from connector.billing.gateway import StripeRejected
from connector.billing.objects import plain
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.stripe_mirror import UNKNOWN_CUSTOMER, account_of_customer
from connector.store import audit
from connector.store.links import link_of_customer

#: The outcome of a ``customer.deleted`` event for a customer Stripe still has.
NOT_DELETED = "customer not deleted in Stripe; link kept"


class CustomerNotFound(Exception):
    """Stripe does not find a customer at all (it keeps deleted ones retrievable)."""


def _customer(runtime: Runtime, customer_id: str) -> dict[str, Any]:
    try:
        return plain(runtime.stripe.retrieve_customer(customer_id))
    except StripeRejected as exc:
        if exc.code != "resource_missing":
            raise
        raise CustomerNotFound(
            f"Stripe has no customer {customer_id}, deleted or not; Stripe keeps deleted "
            "customers, so the event is not about this Stripe account "
            "(is STRIPE_API_KEY for the account that sent it?)"
        ) from exc


def on_customer_updated(runtime: Runtime, event: dict[str, Any]) -> str | None:
    about = event_object(event)
    customer = _customer(runtime, about.object_id)
    if customer.get("deleted"):
        return _unlink(runtime, about.object_id, about.event_type)
    with runtime.db.session() as session:
        account_id = account_of_customer(runtime, session, about.object_id, about.event_type)
    if account_id is None:
        return UNKNOWN_CUSTOMER
    with runtime.db.session() as session:
        crm_outbound.link_account(runtime, session, account_id, about.object_id)
    return "customer link refreshed"


def on_customer_deleted(runtime: Runtime, event: dict[str, Any]) -> str | None:
    """The customer is gone from Stripe: unlink the account so the next deal links afresh."""
    about = event_object(event)
    customer = _customer(runtime, about.object_id)
    if not customer.get("deleted"):
        return NOT_DELETED
    return _unlink(runtime, about.object_id, about.event_type)


def _unlink(runtime: Runtime, customer_id: str, event_type: str) -> str:
    with runtime.db.session() as session:
        link = link_of_customer(session, customer_id)
        if link is None:
            runtime.metrics.count_unknown_customer("stripe", event_type)
            return UNKNOWN_CUSTOMER
        account_id = link.crm_account_id
        session.delete(link)
        audit.record(
            session,
            actor="stripe",
            action="customer.deleted",
            subject_type="account",
            subject_id=account_id,
            stripe_customer_id=customer_id,
        )
        crm_outbound.update_account(
            runtime, session, account_id, {"stripe_customer_id": "", "stripe_customer_url": ""}
        )
    return "customer unlinked"
