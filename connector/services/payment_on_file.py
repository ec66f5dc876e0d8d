"""What Stripe says of a plan's customer's payment methods, kept on the plan for its
automatic-charging rule (``domain/charging``).

The plan is recomputed by a pure function whenever it is shown, so the fact it needs from
Stripe is read here (outside any store transaction), when the plan is refreshed (intake, a
person's change) and again just before approval, and stored with the plan's overrides under
a key a person cannot set. Only deals that ask to be charged automatically cost a Stripe
call; a Stripe failure keeps the last answer (the plan then says what it last knew).
"""

from __future__ import annotations

import logging

from connector.billing.gateway import StripeGatewayError
from connector.domain.amendment import PAYMENT_KEY
from connector.domain.charging import customer_payment_from_stripe, customer_payment_to_json
from connector.domain.deal import parse_payment_collection
from connector.domain.plan_status import Status
from connector.runtime import Runtime
from connector.store.models import Plan

log = logging.getLogger(__name__)


def asks_to_charge(deal_data: object) -> bool:
    """The deal asks for automatic charging (unreadable text is the plan's problem)."""
    if not isinstance(deal_data, dict):
        return False
    try:
        return parse_payment_collection(deal_data.get("payment_collection")) == (
            "charge_automatically"
        )
    except (ValueError, AttributeError):
        return False


def refresh(runtime: Runtime, plan_id: str) -> None:
    """Ask Stripe for the customer's payment methods and keep the answer on the plan."""
    with runtime.db.session() as session:
        row = session.get(Plan, plan_id)
        if row is None or row.status not in Status.REFRESHABLE:
            return
        if row.stripe_customer_id is None or not asks_to_charge(row.deal_data):
            return
        customer_id = row.stripe_customer_id
    try:
        default_id, methods = runtime.stripe.customer_payment_methods(customer_id)
    except StripeGatewayError as exc:
        log.warning("could not read the payment methods of %s: %s", customer_id, exc)
        return
    fact = customer_payment_to_json(customer_payment_from_stripe(default_id, methods))
    with runtime.db.session() as session:
        row = session.get(Plan, plan_id)
        if row is None or row.status not in Status.REFRESHABLE:
            return
        if (row.overrides or {}).get(PAYMENT_KEY) != fact:
            row.overrides = {**(row.overrides or {}), PAYMENT_KEY: fact}
