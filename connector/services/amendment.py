"""Amendments: find the live subscription a later deal changes, preview the change, apply it.

The rules are ``domain/amendment``; this module does their I/O:

* ``refresh_target`` (intake): a deal whose kind changes a subscription gets a snapshot of
  the account's live dealbridge subscription, read from Stripe, stored with the plan's
  overrides (``TARGET_KEY``), so the plan is recomputed from it like from the deal;
* ``preview`` (review page, approval): Stripe's ``/v1/invoices/create_preview`` of the exact
  update activation will send, with a fixed ``proration_date`` so the invoice that follows
  carries the previewed prorations;
* ``update_params`` (activation): that same update, built from the frozen amendment;
* ``schedule_for`` and ``phase_update`` (activation of a change that starts later): the
  subscription's schedule (its own, else one made ``from_subscription``) and the update that
  keeps its current phase as it is up to the change and adds a phase from the change's day
  with the amended items, so Stripe makes the change that day, not dealbridge.

It sits below ``plans`` (which shows and freezes the preview) and ``activation`` (which
applies the update with its exactly-once steps) and calls neither.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from connector.billing.gateway import StripeGatewayError
from connector.billing.objects import plain
from connector.domain.amendment import (
    AMENDING_KINDS,
    TARGET_KEY,
    Amendment,
    LiveItem,
    LiveSubscription,
    change_kind,
    live_to_json,
    phase_items,
    schedule_phase_end,
    split_overrides,
    subscription_items,
)
from connector.domain.plan import BillingPlan, InvalidOverrides
from connector.domain.plan_status import Status
from connector.domain.timestamps import date_from_unix, unix_at_midnight
from connector.runtime import Runtime
from connector.services import catalog
from connector.store.models import CatalogLink, Plan, ProductMirror

log = logging.getLogger(__name__)

#: Stripe statuses of a subscription that still bills, so a later deal changes it.
LIVE_STATUSES = ("active", "past_due", "unpaid", "trialing")


@dataclass(frozen=True)
class PhaseContext:
    """What a schedule phase preview needs besides the change: the subscription as reviewed
    and the metadata the phase will carry (``phase_metadata``)."""

    target: LiveSubscription
    metadata: Mapping[str, str]


def phase_metadata(plan_id: str, deal_id: str) -> dict[str, str]:
    """The metadata of the phase that carries a plan's change (``AMENDED_BY`` names it)."""
    return {AMENDED_BY: plan_id, "crm_deal_id": deal_id}


class SubscriptionMoved(Exception):
    """The subscription is no longer what the person reviewed; the plan must be reviewed again."""


def default_proration(runtime: Runtime) -> str:
    return str(runtime.config.section("amendments")["proration_behavior"])


def _product_key(runtime: Runtime, product_id: str) -> tuple[str, str]:
    """The catalog key dealbridge sold this Stripe product under, and its name."""
    with runtime.db.session() as session:
        key = session.scalars(
            select(CatalogLink.key).where(
                CatalogLink.kind == "product", CatalogLink.stripe_id == product_id
            )
        ).first()
        mirror = session.get(ProductMirror, product_id)
        name = mirror.name if mirror is not None else None
    if name is None:
        name = str(runtime.stripe.retrieve_product(product_id).name or product_id)
    if key is not None and key.startswith("product:"):
        return key.removeprefix("product:"), name
    return f"stripe:{product_id}", name


def _snapshot(runtime: Runtime, row: Mapping[str, Any]) -> LiveSubscription | None:
    subscription = runtime.stripe.retrieve_subscription(row["subscription_id"])
    if subscription.status not in LIVE_STATUSES:
        return None
    items: list[LiveItem] = []
    interval: str | None = None
    count = 1
    for item in subscription["items"].data:
        price = item.price
        product = price.product if isinstance(price.product, str) else price.product.id
        key, name = _product_key(runtime, product)
        if price.recurring is not None:
            interval, count = price.recurring.interval, price.recurring.interval_count
        items.append(
            LiveItem(
                item_id=item.id,
                price_id=price.id,
                product_key=key,
                product=name,
                quantity=int(item.quantity or 0),
                unit_amount=int(price.unit_amount or 0),
            )
        )
    if interval not in ("month", "year"):
        return None
    return LiveSubscription(
        subscription_id=subscription.id,
        plan_id=row["plan_id"],
        deal_id=row["deal_id"],
        currency=str(subscription.currency),
        interval="month" if interval == "month" else "year",
        interval_count=count,
        items=tuple(items),
        cancel_at=date_from_unix(subscription.cancel_at),
    )


def snapshot(
    runtime: Runtime, subscription_id: str, plan_id: str, deal_id: str
) -> LiveSubscription | None:
    """The subscription as it bills now, or None when it no longer bills."""
    return _snapshot(
        runtime, {"plan_id": plan_id, "deal_id": deal_id, "subscription_id": subscription_id}
    )


def find_live_subscription(
    runtime: Runtime, account_id: str, exclude_plan_id: str
) -> LiveSubscription | None:
    """The account's newest live subscription made (or last changed) by dealbridge."""
    with runtime.db.session() as session:
        rows = session.execute(
            select(Plan.id, Plan.deal_id, Plan.stripe_subscription_id)
            .where(
                Plan.crm_account_id == account_id,
                Plan.id != exclude_plan_id,
                Plan.status == Status.ACTIVE,
                Plan.stripe_subscription_id.is_not(None),
            )
            .order_by(Plan.activated_at.desc(), Plan.id)
        ).all()
    seen: set[str] = set()
    for plan_id, deal_id, subscription_id in rows:
        if subscription_id is None or subscription_id in seen:
            continue
        seen.add(subscription_id)
        live = _snapshot(
            runtime, {"plan_id": plan_id, "deal_id": deal_id, "subscription_id": subscription_id}
        )
        if live is not None:
            return live
    return None


def refresh_target(runtime: Runtime, plan_id: str) -> None:
    """Intake: store (or clear) the snapshot of the live subscription a deal would change.

    Only plans still in review are refreshed: an approved amendment applies the snapshot
    that was reviewed, and activation refuses it if the subscription moved since.
    """
    with runtime.db.session() as session:
        row = session.get(Plan, plan_id)
        if row is None or row.status not in Status.REFRESHABLE:
            return
        stored = dict(row.overrides or {})
        account_id = row.crm_account_id
        deal_data = dict(row.deal_data or {})
        own = row.stripe_subscription_id
        deal_id = row.deal_id
    try:
        _, choices, _ = split_overrides(stored)
    except InvalidOverrides:
        return  # the plan shows the problem; nothing to look up until it is fixed
    live: LiveSubscription | None = None
    if change_kind(deal_data, choices) in AMENDING_KINDS and own is not None:
        # A deal changed after its own activation changes its own subscription.
        live = snapshot(runtime, own, plan_id, deal_id)
    elif change_kind(deal_data, choices) in AMENDING_KINDS and account_id:
        live = find_live_subscription(runtime, account_id, plan_id)
    wanted = None if live is None else live_to_json(live)
    if stored.get(TARGET_KEY) == wanted:
        return
    with runtime.db.session() as session:
        row = session.get(Plan, plan_id)
        if row is None or row.status not in Status.REFRESHABLE:
            return
        overrides = {k: v for k, v in (row.overrides or {}).items() if k != TARGET_KEY}
        if wanted is not None:
            overrides[TARGET_KEY] = wanted
        row.overrides = overrides


def price_ids(runtime: Runtime, plan: BillingPlan, amendment: Amendment) -> dict[int, str]:
    """The Stripe price of every plan line the update needs (found or created once)."""
    return {
        c.line_index: catalog.ensure_price(runtime, plan.lines[c.line_index], plan)
        for c in amendment.changes
        if c.action in ("price", "added") and c.line_index is not None
    }


def update_params(
    runtime: Runtime, plan: BillingPlan, amendment: Amendment, proration_date: int | None
) -> dict[str, Any]:
    """The subscription update that applies ``amendment``, exactly as previewed."""
    if amendment.cancel_at_period_end:
        return {"cancel_at_period_end": True}
    params: dict[str, Any] = {
        "items": subscription_items(amendment, price_ids(runtime, plan, amendment)),
        "proration_behavior": amendment.proration_behavior,
    }
    if not params["items"]:
        del params["items"]
    if amendment.new_end is not None:
        params["cancel_at"] = unix_at_midnight(amendment.new_end)
    if proration_date is not None and amendment.proration_behavior != "none":
        params["proration_date"] = proration_date
    return params


def _is_proration(line: Any) -> bool:
    parent = line.to_dict().get("parent") or {}
    for key in ("subscription_item_details", "invoice_item_details"):
        details = parent.get(key) or {}
        if details.get("proration"):
            return True
    return False


def preview(
    runtime: Runtime,
    customer_id: str,
    plan: BillingPlan,
    amendment: Amendment,
    proration_date: int,
    phase: PhaseContext | None = None,
) -> dict[str, Any] | None:
    """Stripe's preview of the invoice the change produces: the next invoice with the
    prorations (``create_prorations``), the invoice sent at once (``always_invoice``) or
    the next regular invoice (``none``). Errors are reported, never raised: the page shows
    them and approval refuses a plan without a preview. A renewal has none: its next invoice
    is a regular one, and the new term's first invoice is the plan's new recurring amount.

    A change that starts when the current period ends is a schedule phase: with ``phase``
    (the reviewed target and the plan the phase will name), Stripe previews the schedule's
    next invoice with exactly the phases activation will send (``schedule`` +
    ``schedule_details``). Where that preview cannot be had (no schedule yet, a change
    starting later still, Stripe refusing it) the answer stays None: the page says there is
    no preview and the credit gate counts the plan's first invoice, as before."""
    if amendment.new_end is not None or amendment.cancel_at_period_end:
        return None
    try:
        if amendment.starts_later:
            subscription = plain(runtime.stripe.retrieve_subscription(amendment.subscription_id))
            if _after_current_period(subscription, amendment):
                invoice = _phase_preview(runtime, customer_id, plan, amendment, subscription, phase)
                if invoice is None:
                    return None
                return _shown(invoice, proration_date)
        params = update_params(runtime, plan, amendment, proration_date)
        details: dict[str, Any] = {
            "items": params.get("items", []),
            "proration_behavior": params["proration_behavior"],
        }
        if "proration_date" in params:
            details["proration_date"] = params["proration_date"]
        invoice = runtime.stripe.preview_invoice(
            {
                "customer": customer_id,
                "subscription": amendment.subscription_id,
                "subscription_details": details,  # type: ignore[typeddict-item]
            }
        )
    except (StripeGatewayError, catalog.ArchivedProduct) as exc:
        return {"error": str(exc), "proration_date": proration_date}
    return _shown(invoice, proration_date)


def _shown(invoice: Any, proration_date: int) -> dict[str, Any]:
    lines = [
        {
            "description": line.description,
            "amount": int(line.amount or 0),
            "proration": _is_proration(line),
        }
        for line in invoice.lines.data
    ]
    return {
        "amount_due": int(invoice.amount_due or 0),
        "subtotal": int(invoice.subtotal or 0),
        "total": int(invoice.total or 0),
        "proration_amount": sum(line["amount"] for line in lines if line["proration"]),
        "currency": str(invoice.currency),
        "lines": lines,
        "proration_date": proration_date,
    }


def _period_end(subscription: Mapping[str, Any]) -> int:
    ends = [
        int(item.get("current_period_end") or 0)
        for item in (subscription.get("items") or {}).get("data") or []
    ]
    return max(ends, default=0)


def _after_current_period(subscription: Mapping[str, Any], amendment: Amendment) -> bool:
    ends = _period_end(subscription)
    return bool(ends) and unix_at_midnight(amendment.effective_date) >= ends


def _phase_preview(
    runtime: Runtime,
    customer_id: str,
    plan: BillingPlan,
    amendment: Amendment,
    subscription: Mapping[str, Any],
    phase: PhaseContext | None,
) -> Any:
    """Stripe's preview of the schedule's next invoice with the phases activation will send,
    when that invoice is the one the change makes (it starts exactly when the current period
    ends); None when no such preview can be had, with the reason logged."""
    reason = None
    schedule_ref = subscription.get("schedule")
    if phase is None:
        reason = "no reviewed target"
    elif not schedule_ref:
        # Activation makes the schedule (from_subscription); a review never writes to Stripe.
        reason = "the subscription has no schedule yet"
    elif unix_at_midnight(amendment.effective_date) != _period_end(subscription):
        reason = "the change starts after the next invoice"
    if reason is not None or phase is None:
        log.info("amendment %s: no schedule preview (%s)", amendment.subscription_id, reason)
        return None
    schedule_id = str(_id(schedule_ref))
    try:
        update = phase_update(runtime, plan, amendment, phase.target, schedule_id, phase.metadata)
    except SubscriptionMoved as exc:
        log.info("amendment %s: no schedule preview (%s)", amendment.subscription_id, exc)
        return None
    params: dict[str, Any] = {"customer": customer_id, "schedule": schedule_id}
    if update is not None:
        params["schedule_details"] = update
    try:
        return runtime.stripe.preview_invoice(params)  # type: ignore[arg-type]
    except StripeGatewayError as exc:
        log.warning(
            "amendment %s: Stripe refused the schedule preview: %s", amendment.subscription_id, exc
        )
        return None


def check_unmoved(runtime: Runtime, amendment: Amendment, before: LiveSubscription) -> None:
    """Refuse to apply a change reviewed against a subscription that has since moved (another
    change, a person in Stripe). A subscription already showing the change is fine: the
    update's idempotency key answers with the object Stripe already changed."""
    live = _snapshot(
        runtime,
        {
            "plan_id": before.plan_id,
            "deal_id": before.deal_id,
            "subscription_id": amendment.subscription_id,
        },
    )
    if live is None:
        raise SubscriptionMoved(
            f"the subscription {amendment.subscription_id} no longer bills; review the deal "
            "again (it may need a new subscription)"
        )
    now = {(i.product_key, i.quantity, i.unit_amount) for i in live.items}
    reviewed = {(i.product_key, i.quantity, i.unit_amount) for i in before.items}
    after = {
        (c.product_key, c.quantity_after, c.unit_amount_after)
        for c in amendment.changes
        if c.action != "removed"
    }
    if now not in (reviewed, after):
        raise SubscriptionMoved(
            f"the subscription {amendment.subscription_id} changed since this amendment was "
            "reviewed; refresh the plan and review the change again"
        )


# --------------------------------------------------------------------------- schedule phases

#: The phase metadata (and, once the phase starts, the subscription's) naming the plan whose
#: change it carries: a re-run finds its phase already there and sends nothing.
AMENDED_BY = "dealbridge_amended_by_plan_id"


def _id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def schedule_for(runtime: Runtime, subscription_id: str, idempotency_key: str) -> str:
    """The schedule that manages the subscription: its own (a contract that started later,
    an earlier change), else one Stripe makes ``from_subscription`` (its current period as
    the one phase)."""
    schedule = plain(runtime.stripe.retrieve_subscription(subscription_id)).get("schedule")
    if schedule:
        return str(_id(schedule))
    created = runtime.stripe.create_subscription_schedule(
        {"from_subscription": subscription_id}, idempotency_key
    )
    return str(created.id)


def _settings(phase: Mapping[str, Any]) -> dict[str, Any]:
    """What a phase sets on the subscription besides its items and dates, to send it back
    unchanged (a phase left without them would fall back to the schedule's defaults)."""
    out: dict[str, Any] = {}
    for key in ("collection_method", "default_payment_method", "description"):
        if phase.get(key):
            out[key] = _id(phase[key])
    days = (phase.get("invoice_settings") or {}).get("days_until_due")
    if days is not None:
        out["invoice_settings"] = {"days_until_due": days}
    discounts = []
    for entry in phase.get("discounts") or []:
        for kind in ("discount", "coupon", "promotion_code"):
            if entry.get(kind):
                discounts.append({kind: _id(entry[kind])})
                break
    if discounts:
        out["discounts"] = discounts
    rates = [_id(r) for r in phase.get("default_tax_rates") or []]
    if rates:
        out["default_tax_rates"] = rates
    if phase.get("metadata"):
        out["metadata"] = dict(phase["metadata"])
    return out


def _items(phase: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = []
    for item in phase.get("items") or []:
        entry: dict[str, Any] = {"price": _id(item["price"])}
        if item.get("quantity") is not None:
            entry["quantity"] = item["quantity"]
        rates = [_id(r) for r in item.get("tax_rates") or []]
        if rates:
            entry["tax_rates"] = rates
        items.append(entry)
    return items


def release_schedule(runtime: Runtime, subscription_id: str, idempotency_key: str) -> str:
    """Before a change made now: a subscription managed by a schedule is released from it
    (keeping its end date), since Stripe refuses to move a managed subscription's end
    directly and a schedule would put its phase's items back at the next phase. A schedule
    with a change still to come is not released: that change and this one would clash, so
    the person reviews the deal again. Returns the released schedule, or "" for none."""
    schedule_ref = plain(runtime.stripe.retrieve_subscription(subscription_id)).get("schedule")
    if not schedule_ref:
        return ""
    schedule_id = str(_id(schedule_ref))
    schedule = plain(runtime.stripe.retrieve_subscription_schedule(schedule_id))
    current = (schedule.get("current_phase") or {}).get("start_date")
    later = [
        p for p in schedule.get("phases") or [] if current is not None and p["start_date"] > current
    ]
    if later:
        raise SubscriptionMoved(
            f"the subscription {subscription_id} already has a change scheduled in Stripe from "
            f"{date_from_unix(later[0]['start_date'])} (schedule {schedule_id}); review this "
            "deal again once that change is made, or change the schedule in Stripe"
        )
    runtime.stripe.release_subscription_schedule(schedule_id, idempotency_key)
    return schedule_id


def phase_update(
    runtime: Runtime,
    plan: BillingPlan,
    amendment: Amendment,
    target: LiveSubscription,
    schedule_id: str,
    metadata: Mapping[str, str],
) -> dict[str, Any] | None:
    """The schedule update that carries ``amendment``: the current phase as it is, ending on
    the change's day, then a phase with the amended items (prorated per the plan) up to the
    contract's end (``schedule_phase_end``). None when the schedule already carries it.

    A schedule that already changes the subscription later (another deal's change, a person
    in Stripe) is not overwritten: the person reviews this deal again."""
    schedule = plain(runtime.stripe.retrieve_subscription_schedule(schedule_id))
    if schedule.get("status") != "active" or not schedule.get("current_phase"):
        raise SubscriptionMoved(
            f"the subscription schedule {schedule_id} of {amendment.subscription_id} is "
            f"{schedule.get('status')}; review the deal again"
        )
    current_start = schedule["current_phase"]["start_date"]
    phases = [p for p in schedule["phases"] if p["start_date"] >= current_start]
    if any((p.get("metadata") or {}).get(AMENDED_BY) == metadata[AMENDED_BY] for p in phases):
        return None
    starts = unix_at_midnight(amendment.effective_date)
    later = [p for p in phases if p["start_date"] > current_start]
    if later:
        raise SubscriptionMoved(
            f"the subscription {amendment.subscription_id} already has a change scheduled in "
            f"Stripe from {date_from_unix(later[0]['start_date'])} (schedule {schedule_id}); "
            "review this deal again once that change is made, or change the schedule in Stripe"
        )
    current = phases[0]
    if current["start_date"] >= starts:
        raise SubscriptionMoved(
            f"the current phase of schedule {schedule_id} starts after the change's day "
            f"{amendment.effective_date}; review the deal again"
        )
    kept: dict[str, Any] = {
        **_settings(current),
        "items": _items(current),
        "start_date": current["start_date"],
        "end_date": starts,
    }
    if current.get("trial_end") and current["trial_end"] <= starts:
        kept["trial_end"] = current["trial_end"]
    if current.get("proration_behavior"):
        kept["proration_behavior"] = current["proration_behavior"]
    ends, end_behavior = schedule_phase_end(amendment, target)
    settings = _settings(current)
    change: dict[str, Any] = {
        **settings,
        "items": phase_items(amendment, target, price_ids(runtime, plan, amendment)),
        "end_date": unix_at_midnight(ends),
        "proration_behavior": amendment.proration_behavior,
        "metadata": {**settings.get("metadata", {}), **metadata},
    }
    return {
        "phases": [kept, change],
        "end_behavior": end_behavior,
        # Nothing of the current phase changes but its end: nothing to prorate now.
        "proration_behavior": "none",
    }
