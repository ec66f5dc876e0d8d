"""Stripe subscriptions into the mirror and onto their plan's CRM deal, re-fetched from Stripe
outside any store session and written only if nobody wrote meanwhile, like invoices (see
``invoice_sync``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.billing.event_shape import event_object
from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.billing.gateway import StripeRejected
from connector.billing.objects import plain
from connector.domain.timestamps import datetime_from_unix
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.stripe_mirror import (
    MAX_REFETCH,
    UNKNOWN_CUSTOMER,
    KeptChanging,
    account_of_customer,
)
from connector.store.locks import lock
from connector.store.models import Plan, SubscriptionMirror

# Derived from the one list of what dealbridge subscribes to, so the two cannot drift.
SUBSCRIPTION_EVENTS = tuple(
    sorted(t for t in HANDLED_STRIPE_EVENTS if t.startswith("customer.subscription."))
)
CUSTOMER_DISCOUNT_EVENTS = tuple(
    sorted(t for t in HANDLED_STRIPE_EVENTS if t.startswith("customer.discount."))
)


class SubscriptionNotFound(Exception):
    """Stripe does not find a subscription (it never deletes one)."""


def _snapshot(mirror: SubscriptionMirror | None) -> tuple[str, dict[str, Any]] | None:
    """What a concurrent write would change: the stored status and the whole object."""
    return None if mirror is None else (mirror.status, dict(mirror.data or {}))


def _fetch(runtime: Runtime, subscription_id: str) -> dict[str, Any]:
    try:
        return with_tiers(runtime, plain(runtime.stripe.retrieve_subscription(subscription_id)))
    except StripeRejected as exc:
        if exc.code != "resource_missing":
            raise
        raise SubscriptionNotFound(
            f"Stripe has no subscription {subscription_id}; subscriptions are canceled, "
            "never deleted, so the event is not about this Stripe account "
            "(is STRIPE_API_KEY for the account that sent it?)"
        ) from exc


def sync_subscription(
    runtime: Runtime,
    subscription_id: str,
    customer_id: str | None,
    event_type: str = "customer.subscription.updated",
) -> str:
    """Fetch the subscription now and write it to the mirror and its plan's deal.

    Read, call, write (as ``invoice_sync.sync_invoice``): the fetch happens outside any store
    session, and the write only if the mirror is as we read it before the fetch; otherwise
    another writer stored a state that may be newer than ours, and we fetch again."""
    for _ in range(MAX_REFETCH):
        with runtime.db.session() as session:
            account_id = account_of_customer(runtime, session, customer_id, event_type)
            if account_id is None:
                return UNKNOWN_CUSTOMER
            seen = _snapshot(session.get(SubscriptionMirror, subscription_id))
        sub = _fetch(runtime, subscription_id)
        with runtime.db.session() as session:
            lock(session, f"subscription:{subscription_id}")
            mirror = session.get(SubscriptionMirror, subscription_id, with_for_update=True)
            if _snapshot(mirror) != seen:
                continue  # written meanwhile: fetch again
            if sub["customer"] != customer_id:
                # The payload named another customer than Stripe has: Stripe's word counts.
                account_id = account_of_customer(runtime, session, sub["customer"], event_type)
                if account_id is None:
                    return UNKNOWN_CUSTOMER
            _write(runtime, session, mirror, sub, account_id)
        _apply_schedule_payment_methods(runtime, sub)
        return f"subscription {sub['status']}"
    raise KeptChanging(
        f"subscription {subscription_id} changed during each of {MAX_REFETCH} fetches"
    )


def _write(
    runtime: Runtime,
    session: Session,
    mirror: SubscriptionMirror | None,
    sub: dict[str, Any],
    account_id: str,
) -> None:
    subscription_id = sub["id"]
    if mirror is None:
        mirror = SubscriptionMirror(id=subscription_id)
        session.add(mirror)
    mirror.stripe_customer_id = sub["customer"]
    mirror.crm_account_id = account_id
    mirror.status = sub["status"]
    mirror.data = with_earlier(mirror.data, sub, runtime.clock())
    mirror.created = datetime_from_unix(sub.get("start_date") or sub["created"]) or runtime.clock()
    mirror.ended_at = datetime_from_unix(sub.get("ended_at"))
    mirror.synced_at = runtime.clock()
    crm_outbound.queue_account_figures(session, account_id, runtime.clock())  # MRR may move
    plan = _plan_of(session, sub)
    if plan is not None:
        if plan.stripe_subscription_id is None:
            plan.stripe_subscription_id = subscription_id
        crm_outbound.update_deal(
            runtime,
            session,
            plan.deal_id,
            {"subscription_id": subscription_id, "subscription_status": sub["status"]},
        )


#: Where the mirrored subscription keeps its customer's discount (``customer.discount``, the
#: customer expanded by the fetch), which Stripe applies when the subscription has none.
CUSTOMER_DISCOUNT = "dealbridge_customer_discount"


#: Where the mirrored subscription keeps what it billed before each change dealbridge saw
#: (items, discounts, the customer's discount, each ``until`` the moment it saw the change),
#: oldest first: Stripe keeps no history of them, and the MRR trend reads each month's.
EARLIER = "dealbridge_earlier"


def _id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def _billed_as(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """What decides what the subscription bills, by id: each item's price, quantity and
    discounts, its own and its customer's discounts (prices and coupons never change;
    periods and statuses are not part of it)."""
    items = sorted(
        (
            str(item.get("id")),
            str(_id(item.get("price"))),
            item.get("quantity"),
            tuple(str(_id(d)) for d in item.get("discounts") or []),
        )
        for item in (data.get("items") or {}).get("data") or []
    )
    own = tuple(str(_id(d)) for d in data.get("discounts") or [])
    return tuple(items), own, _id(data.get(CUSTOMER_DISCOUNT))


def with_earlier(
    old: Mapping[str, Any] | None, new: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """``new`` as the mirror stores it: with the earlier states ``old`` carried, plus
    ``old``'s own when what it bills differs from ``new`` (valid until ``now``, when
    dealbridge saw the change)."""
    earlier = list((old or {}).get(EARLIER) or [])
    if old and _billed_as(old) != _billed_as(new):
        earlier.append(
            {
                "until": now.isoformat(),
                "items": old.get("items"),
                "discounts": old.get("discounts"),
                CUSTOMER_DISCOUNT: old.get(CUSTOMER_DISCOUNT),
            }
        )
    if earlier:
        new[EARLIER] = earlier
    return new


def customer_apart(sub: dict[str, Any]) -> dict[str, Any]:
    """A subscription fetched with its customer expanded, as the mirror keeps it: ``customer``
    the id again, as everywhere else, and the customer's discount under
    ``CUSTOMER_DISCOUNT`` (None when it has none). One left with the id is unchanged."""
    customer = sub.get("customer")
    if isinstance(customer, dict):
        sub["customer"] = customer.get("id")
        discount = customer.get("discount")
        sub[CUSTOMER_DISCOUNT] = discount if isinstance(discount, dict) else None
    return sub


def with_tiers(runtime: Runtime, sub: dict[str, Any]) -> dict[str, Any]:
    """The subscription with what MRR reads filled in where Stripe left ids or nothing
    (docs/billing-rules.md §4.1): each tiered price's tiers (returned only when asked) and
    each discount's coupon (an item discount's coupon is past Stripe's four levels of
    ``expand``), the customer's discount's too (``customer_apart``)."""
    coupons: dict[str, Any] = {}
    customer_apart(sub)

    def fill(discounts: Any) -> None:
        for discount in discounts or []:
            if not isinstance(discount, dict):
                continue
            source = discount.get("source") or {}
            coupon = source.get("coupon")
            if isinstance(coupon, str):
                if coupon not in coupons:
                    coupons[coupon] = plain(runtime.stripe.retrieve_coupon(coupon))
                source["coupon"] = coupons[coupon]

    fill(sub.get("discounts"))
    fill([sub.get(CUSTOMER_DISCOUNT)])
    for item in (sub.get("items") or {}).get("data") or []:
        fill(item.get("discounts"))
        price = item.get("price") or {}
        if price.get("billing_scheme") == "tiered" and not price.get("tiers") and price.get("id"):
            price["tiers"] = [plain(t) for t in runtime.stripe.retrieve_price_tiers(price["id"])]
    return sub


def _plan_of(session: Session, sub: dict[str, Any]) -> Plan | None:
    plan_id = (sub.get("metadata") or {}).get("dealbridge_plan_id")
    if plan_id:
        found = session.get(Plan, plan_id)
        if found is not None:
            return found
    schedule = sub.get("schedule")
    schedule_id = schedule if isinstance(schedule, str) else (schedule or {}).get("id")
    if schedule_id:
        return session.scalars(select(Plan).where(Plan.stripe_schedule_id == schedule_id)).first()
    return session.scalars(select(Plan).where(Plan.stripe_subscription_id == sub["id"])).first()


def _apply_schedule_payment_methods(runtime: Runtime, sub: dict[str, Any]) -> None:
    """Schedule phases cannot carry payment method types; apply them when the schedule
    starts its subscription (recorded in the phase metadata at activation)."""
    wanted = (sub.get("metadata") or {}).get("payment_method_types")
    if not wanted or sub.get("status") in ("canceled", "incomplete_expired"):
        return
    current = (sub.get("payment_settings") or {}).get("payment_method_types") or []
    types = wanted.split(",")
    if sorted(current) == sorted(types):
        return
    runtime.stripe.update_subscription(
        sub["id"],
        {"payment_settings": {"payment_method_types": types}},
        idempotency_key=f"dealbridge:subscription:{sub['id']}:payment-methods:{wanted}",
    )


def on_subscription_event(runtime: Runtime, event: dict[str, Any]) -> str | None:
    about = event_object(event)
    return sync_subscription(runtime, about.object_id, about.customer_id, about.event_type)


def on_customer_discount_event(runtime: Runtime, event: dict[str, Any]) -> str | None:
    """A discount of a customer was added, changed or ended: its subscriptions that have not
    ended are fetched again (each with its customer's discount, see ``CUSTOMER_DISCOUNT``),
    since Stripe applies the customer's discount to those without one of their own."""
    about = event_object(event)
    if about.customer_id is None:
        return "a discount of no customer"
    with runtime.db.session() as session:
        ids = list(
            session.scalars(
                select(SubscriptionMirror.id)
                .where(
                    SubscriptionMirror.stripe_customer_id == about.customer_id,
                    SubscriptionMirror.ended_at.is_(None),
                )
                .order_by(SubscriptionMirror.id)
            )
        )
    outcomes = [sync_subscription(runtime, i, about.customer_id, about.event_type) for i in ids]
    if outcomes and all(o == UNKNOWN_CUSTOMER for o in outcomes):
        return UNKNOWN_CUSTOMER
    return f"{len(ids)} subscription(s) of the customer read again for its discount"
