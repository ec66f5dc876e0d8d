"""The Stripe customer follows the CRM: the company's name and address, the billing contact.

The customer is the company: its ``name`` is the account's name and its ``address`` the
account's billing address. The billing contact is who receives the invoices: the customer's
``email``, with the contact's name in ``metadata[billing_contact_name]``. When any of these
change in the CRM (the deal's billing contact, the contact's email, the account), the next
read of the deal or account updates the customer, and only what differs.

The account's newest deal with a plan names its billing contact, so re-reading an older deal
(an earlier contact) never moves the customer back.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sqlalchemy import func, select

from connector.billing.gateway import address_params
from connector.crm.base import CrmDeal, CrmNotFound
from connector.domain.deal import Deal, InvalidDeal, parse_deal
from connector.runtime import Runtime
from connector.store import audit
from connector.store.models import AuditEntry, CustomerLink, Plan

log = logging.getLogger(__name__)

CONTACT_NAME_KEY = "billing_contact_name"
FOLLOWED = "customer.followed_crm"


def desired(deal: Deal) -> dict[str, Any]:
    """The customer as the CRM describes it (what ``linking`` creates, too)."""
    contact = deal.billing_contact
    assert contact is not None, "parse_deal guarantees a billing contact"
    wanted: dict[str, Any] = {
        "name": deal.account.name,
        "email": contact.email,
        "metadata": {CONTACT_NAME_KEY: contact.name or ""},
    }
    address = address_params(deal.account.address)
    if address is not None:
        wanted["address"] = address
    return wanted


def _differences(customer: Any, wanted: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if (customer.name or "") != wanted["name"]:
        changes["name"] = wanted["name"]
    if (customer.email or "").casefold() != wanted["email"].casefold():
        changes["email"] = wanted["email"]
    metadata = customer.metadata.to_dict() if customer.metadata is not None else {}
    if metadata.get(CONTACT_NAME_KEY, "") != wanted["metadata"][CONTACT_NAME_KEY]:
        changes["metadata"] = wanted["metadata"]
    if "address" in wanted:
        current = customer.address.to_dict() if customer.address is not None else {}
        have = {k: v for k, v in current.items() if v}
        if have != wanted["address"]:
            changes["address"] = {
                k: wanted["address"].get(k, "")
                for k in ("line1", "line2", "city", "state", "postal_code", "country")
            }
    return changes


def _speaks_for_account(runtime: Runtime, deal_id: str, account_id: str) -> bool:
    with runtime.db.session() as session:
        newest = session.scalars(
            select(Plan.deal_id)
            .where(Plan.crm_account_id == account_id)
            .order_by(Plan.created_at.desc(), Plan.id.desc())
            .limit(1)
        ).first()
    return newest is None or newest == deal_id


def follow_deal(runtime: Runtime, crm_deal: CrmDeal) -> str | None:
    """Bring the account's Stripe customer in line with this deal, if it is the account's
    newest deal and the account is linked. Returns what changed, or None."""
    try:
        deal = parse_deal(crm_deal.data)
    except InvalidDeal:
        return None  # the plan shows what is wrong; nothing reliable to copy
    account_id = deal.account.id
    with runtime.db.session() as session:
        link = session.get(CustomerLink, account_id)
        if link is None:
            return None
        customer_id = link.stripe_customer_id
        done = session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == FOLLOWED, AuditEntry.subject_id == customer_id)
        )
    if not _speaks_for_account(runtime, crm_deal.id, account_id):
        return None
    customer = runtime.stripe.retrieve_customer(customer_id)
    if getattr(customer, "deleted", False):
        return None
    changes = _differences(customer, desired(deal))
    if not changes:
        return None
    digest = hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()[:20]
    # The count of earlier updates makes A -> B -> A -> B three keys, not a replay of the first.
    key = f"dealbridge:customer-follow:{customer_id}:{int(done or 0)}:{digest}"
    runtime.stripe.update_customer(customer_id, changes, key)  # type: ignore[arg-type]
    with runtime.db.session() as session:
        audit.record(
            session,
            actor="crm",
            action=FOLLOWED,
            subject_type="customer",
            subject_id=customer_id,
            crm_account_id=account_id,
            crm_deal_id=crm_deal.id,
            fields=sorted(changes),
        )
    return "customer " + ", ".join(sorted(changes)) + " updated from the CRM"


def follow_account(runtime: Runtime, account_id: str) -> str | None:
    """The account (or one of its contacts) changed: re-read its newest deal and follow it."""
    with runtime.db.session() as session:
        if session.get(CustomerLink, account_id) is None:
            return None
        deal_id = session.scalars(
            select(Plan.deal_id)
            .where(Plan.crm_account_id == account_id)
            .order_by(Plan.created_at.desc(), Plan.id.desc())
            .limit(1)
        ).first()
    if deal_id is None:
        return None
    try:
        crm_deal = runtime.crm.get_deal(deal_id)
    except CrmNotFound:
        return None
    return follow_deal(runtime, crm_deal)
