"""``/v1/subscriptions`` and the subscription side of the billing engine.

A subscription's items share one billing cycle (same currency and interval, as in Stripe's
classic billing). Each item carries ``current_period_start``/``current_period_end`` (API
2025-03-31 and later moved them there from the subscription).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import (
    catalog,
    discounts,
    invoices,
    meters,
    money,
    payment_methods,
    payments,
    tax_rates,
    versions,
)
from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .params import Params, metadata_patch
from .state import State
from .store import created_filter
from .timeutil import add_interval, format_money, interval_text, next_boundary_after, prorate

JSON = dict[str, Any]

INCOMPLETE_EXPIRY = 23 * 3600
#: ``customer.subscription.trial_will_end`` comes this long before a trial ends.
TRIAL_WILL_END_NOTICE = 3 * 86_400
STATUSES = [
    "active",
    "past_due",
    "unpaid",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "trialing",
    "paused",
]
PAUSE_BEHAVIORS = ["keep_as_draft", "mark_uncollectible", "void"]
PAYMENT_BEHAVIORS = [
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
]
PRORATION_BEHAVIORS = ["always_invoice", "create_prorations", "none"]


@dataclass
class ItemSpec:
    price: JSON
    #: None for a metered price (usage decides what is billed).
    quantity: int | None
    metadata: dict[str, str] = field(default_factory=dict)
    tax_rates: list[str] | None = None
    #: The item's ``discounts[]`` parameters, redeemed once the item exists.
    discounts: Params | None = None


@dataclass
class AddItemSpec:
    price: JSON | None
    amount: int
    currency: str
    quantity: int
    description: str | None
    tax_rates: list[str] | None = None
    discounts: Params | None = None


@dataclass
class SubSpec:
    items: list[ItemSpec]
    collection_method: str = "charge_automatically"
    days_until_due: int | None = None
    add_invoice_items: list[AddItemSpec] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    cancel_at: int | None = None
    description: str | None = None
    payment_method_types: list[str] | None = None
    billing_cycle_anchor: int | None = None
    payment_behavior: str = "allow_incomplete"
    proration_behavior: str = "create_prorations"
    schedule_id: str | None = None
    default_payment_method: str | None = None
    default_tax_rates: list[str] | None = None
    #: ``discounts[]`` (or, before API 2025-09-30, ``coupon``/``promotion_code``).
    discounts: Params | None = None
    trial_end: int | None = None
    missing_payment_method: str = "create_invoice"
    backdate_start_date: int | None = None


# -- parameter parsing shared with schedules ------------------------------------------------------


def recurring_price(state: State, price_id: str, param: str) -> JSON:
    price = state.store.require(price_id, "price", param=param, status=400)
    if price["type"] != "recurring":
        raise invalid_param(
            param,
            "The price specified is set to `type=one_time` but this field only accepts prices "
            "with `type=recurring`.",
            None,
        )
    if not price["active"]:
        raise invalid_param(
            param, "The price specified is inactive. This field only accepts active prices.", None
        )
    return price


def parse_items(state: State, p: Params, key: str = "items") -> list[ItemSpec]:
    entries = p.items(key)
    if not entries:
        raise StripeError(
            400,
            f"Missing required param: {p.name(key)}.",
            code="parameter_missing",
            param=p.name(key),
        )
    if len(entries) > 20:
        raise invalid_param(p.name(key), "You can only have up to 20 items per subscription.", None)
    specs = []
    for entry in entries:
        entry.reject_unknown(
            [
                "price",
                "quantity",
                "metadata",
                "plan",
                "price_data",
                "tax_rates",
                "discounts",
                "billing_thresholds",
            ]
        )
        price_id = entry.get_str("price") or entry.get_str("plan")
        if price_id is None:
            raise StripeError(
                400,
                f"Missing required param: {entry.name('price')}.",
                code="parameter_missing",
                param=entry.name("price"),
            )
        price = recurring_price(state, price_id, entry.name("price"))
        quantity = _quantity(entry, price, None)
        rates = tax_rates.parse(state, entry, "tax_rates")
        specs.append(
            ItemSpec(
                price,
                quantity,
                entry.metadata() or {},
                rates,
                entry if entry.has("discounts") else None,
            )
        )
    first = specs[0].price
    for spec in specs[1:]:
        if spec.price["currency"] != first["currency"]:
            raise invalid_param(
                p.name(key),
                "Currency and interval fields must match across "
                "all plans on this subscription. Found mismatch in currency "
                "field.",
                None,
            )
        if (spec.price["recurring"]["interval"], spec.price["recurring"]["interval_count"]) != (
            first["recurring"]["interval"],
            first["recurring"]["interval_count"],
        ):
            raise invalid_param(
                p.name(key),
                "Currency and interval fields must match across "
                "all plans on this subscription. Found mismatch in interval "
                "field.",
                None,
            )
    prices = [s.price["id"] for s in specs]
    if len(set(prices)) != len(prices):
        raise invalid_param(
            p.name(key),
            "Cannot add multiple subscription items with the same price to the same subscription.",
            None,
        )
    return specs


def _quantity(entry: Params, price: JSON, current: int | None) -> int | None:
    """An item's quantity: none for a metered price (Stripe refuses one), else 1 by default."""
    quantity = entry.get_int("quantity", minimum=0)
    if price["recurring"]["usage_type"] == "metered":
        if quantity is not None:
            raise invalid_param(
                entry.name("quantity"),
                "Quantity should not be specified where usage_type is `metered`. Remove "
                f"quantity from `{entry.prefix}`.",
                None,
            )
        return None
    if quantity is not None:
        return quantity
    return 1 if current is None else current


def parse_add_invoice_items(
    state: State, p: Params, key: str = "add_invoice_items"
) -> list[AddItemSpec]:
    specs = []
    for entry in p.items(key):
        entry.reject_unknown(
            ["price", "price_data", "quantity", "metadata", "discounts", "tax_rates", "period"]
        )
        quantity = entry.get_int("quantity", minimum=0)
        quantity = 1 if quantity is None else quantity
        price_id = entry.get_str("price")
        data = entry.sub("price_data")
        if price_id is not None:
            price = state.store.require(price_id, "price", param=entry.name("price"), status=400)
            if price["type"] != "one_time":
                raise invalid_param(
                    entry.name("price"),
                    "The price specified is set to `type=recurring` but this field only "
                    "accepts prices with `type=one_time`.",
                    None,
                )
            specs.append(
                AddItemSpec(
                    price,
                    catalog.price_amount(price, quantity),
                    price["currency"],
                    quantity,
                    invoices.product_name(state, price),
                )
            )
        elif data is not None:
            data.reject_unknown(
                ["currency", "product", "unit_amount", "unit_amount_decimal", "tax_behavior"]
            )
            currency = data.get_str("currency", required=True)
            product_id = data.get_str("product", required=True)
            assert currency is not None and product_id is not None
            product = state.store.require(
                product_id, "product", param=data.name("product"), status=400
            )
            amount = money.unit_total(catalog.unit_amount_of(data), quantity)
            specs.append(AddItemSpec(None, amount, currency.lower(), quantity, product["name"]))
        else:
            raise StripeError(
                400,
                f"Missing required param: {entry.name('price')}.",
                code="parameter_missing",
                param=entry.name("price"),
            )
        specs[-1].tax_rates = tax_rates.parse(state, entry, "tax_rates")
        specs[-1].discounts = entry if entry.has("discounts") else None
    return specs


def payment_method_types(p: Params) -> list[str] | None:
    settings = p.sub("payment_settings")
    if settings is None:
        return None
    settings.reject_unknown(
        ["payment_method_types", "payment_method_options", "save_default_payment_method"]
    )
    return settings.str_list("payment_method_types") or None


# -- rendering --------------------------------------------------------------------------------


def make_renderer(state: State) -> Any:
    def render(sub: JSON) -> JSON:
        from .store import strip_private

        body: JSON = strip_private(sub)
        for item in body["items"]["data"]:
            price = state.store.objects[item["price"]]
            item["price"] = state.store.render(price)
            item["plan"] = catalog.plan_from_price(price)
        return body

    return render


# -- lifecycle ------------------------------------------------------------------------------------


def _new_item(state: State, sub_id: str, spec: ItemSpec, at: int, start: int, end: int) -> JSON:
    item: JSON = {
        "id": state.store.new_id("si_", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": at,
        "current_period_end": end,
        "current_period_start": start,
        "current_trial": None,
        "discounts": [],
        "metadata": dict(spec.metadata),
        "price": spec.price["id"],
        "quantity": spec.quantity,
        "subscription": sub_id,
        "tax_rates": _rates(state, spec.tax_rates),
    }
    if spec.quantity is None:
        del item["quantity"]
    return item


def _rates(state: State, ids: list[str] | None) -> list[JSON]:
    return [state.store.render(state.store.objects[rate_id]) for rate_id in ids or []]


def _redeem_item_discounts(
    state: State, sub: JSON, items: list[tuple[JSON, ItemSpec]], at: int
) -> None:
    for item, spec in items:
        if spec.discounts is not None:
            item["discounts"] = (
                discounts.parse_discounts(
                    state,
                    spec.discounts,
                    at,
                    customer=sub["customer"],
                    subscription=sub["id"],
                    subscription_item=item["id"],
                )
                or []
            )


def _interval(sub: JSON) -> tuple[str, int]:
    return sub["_interval"], sub["_interval_count"]


def period_of(sub: JSON) -> tuple[int, int]:
    item = sub["items"]["data"][0]
    return int(item["current_period_start"]), int(item["current_period_end"])


def _set_period(sub: JSON, start: int, end: int) -> None:
    for item in sub["items"]["data"]:
        item["current_period_start"] = start
        item["current_period_end"] = end


def _period_end(sub: JSON, start: int) -> tuple[int, int]:
    """(end, natural_end) of the period starting at ``start``; ``cancel_at`` may cut it short."""
    interval, count = _interval(sub)
    natural = next_boundary_after(sub["billing_cycle_anchor"], interval, count, start)
    cancel_at = sub["cancel_at"]
    if cancel_at is not None and start < cancel_at < natural:
        return cancel_at, natural
    return natural, natural


def create_subscription(state: State, customer: JSON, spec: SubSpec, at: int) -> JSON:
    first = spec.items[0].price
    sub_id = state.store.new_id("sub_")
    trial_end = spec.trial_end if spec.trial_end is not None and spec.trial_end > at else None
    anchor = trial_end or spec.billing_cycle_anchor or at
    sub: JSON = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": anchor,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": spec.cancel_at,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {
            "comment": None,
            "feedback": None,
            "feedback_option": None,
            "reason": None,
        },
        "collection_method": spec.collection_method,
        "created": at,
        "currency": first["currency"],
        "customer": customer["id"],
        "customer_account": None,
        "days_until_due": spec.days_until_due,
        "default_payment_method": spec.default_payment_method,
        "default_source": None,
        "default_tax_rates": _rates(state, spec.default_tax_rates),
        "description": spec.description,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {
            "account_tax_ids": None,
            "custom_fields": None,
            "description": None,
            "footer": None,
            "issuer": {"type": "self"},
        },
        "items": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": len(spec.items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": dict(spec.metadata),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": spec.payment_method_types,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": spec.schedule_id,
        "start_date": spec.backdate_start_date or at,
        "status": "active" if spec.collection_method == "send_invoice" else "incomplete",
        "test_clock": customer.get("test_clock"),
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {
            "end_behavior": {
                "billing_cycle_anchor": None,
                "missing_payment_method": spec.missing_payment_method,
            }
        },
        "trial_start": at if trial_end is not None else None,
        "_interval": first["recurring"]["interval"],
        "_interval_count": first["recurring"]["interval_count"],
    }
    if trial_end is not None:
        sub["status"] = "trialing"
        end = natural = trial_end
    else:
        end, natural = _period_end(sub, at)
        if anchor > at:
            # A future billing_cycle_anchor ends the first (stub) period: the first full
            # period starts at the anchor, as Stripe bills it.
            natural = anchor
            cancel_at = sub["cancel_at"]
            end = cancel_at if cancel_at is not None and at < cancel_at < anchor else anchor
    # A backdated subscription's first period starts at the backdated start.
    billed_from = spec.backdate_start_date if spec.backdate_start_date is not None else at
    sub["items"]["data"] = [_new_item(state, sub_id, s, at, billed_from, end) for s in spec.items]
    state.store.add(sub)
    if spec.discounts is not None:
        sub["discounts"] = (
            discounts.parse_discounts(
                state, spec.discounts, at, customer=customer["id"], subscription=sub_id
            )
            or discounts.legacy_coupon(
                state, spec.discounts, at, customer=customer["id"], subscription=sub_id
            )
            or []
        )
    _redeem_item_discounts(state, sub, list(zip(sub["items"]["data"], spec.items, strict=True)), at)
    # A backdated start bills the time since it, prorated against an imagined period that
    # starts on the backdated date (Stripe's rule: a whole such period bills in full).
    if spec.backdate_start_date is not None:
        full_period = (
            add_interval(billed_from, sub["_interval"], sub["_interval_count"]) - billed_from
        )
    elif anchor > at:  # a stub up to a future anchor: a part of the period ending there
        full_period = natural - add_interval(natural, sub["_interval"], -sub["_interval_count"])
    else:  # the first natural period, whole
        full_period = natural - at
    invoice = build_invoice(
        state,
        sub,
        at,
        "subscription_create",
        (billed_from, end),
        (at, at),
        full_period=full_period,
        add_items=spec.add_invoice_items,
        zero=trial_end is not None or (spec.proration_behavior == "none" and anchor > at),
    )
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.created", sub, at=at)
    if trial_end is not None and trial_end - at <= TRIAL_WILL_END_NOTICE:
        _trial_will_end(state, sub, at)
    before = state.store.render(sub)
    invoices.finalize(state, invoice, at)
    if invoice["status"] == "open":
        if spec.collection_method == "send_invoice":
            invoices.send(state, invoice, at)
        elif spec.payment_behavior != "default_incomplete":
            invoices.attempt_payment(state, invoice, at)
    _emit_if_changed(state, sub, before, at)
    return sub


def _trial_will_end(state: State, sub: JSON, at: int) -> None:
    """``customer.subscription.trial_will_end``: three days before the trial ends (at once
    when the trial is shorter)."""
    sub["_trial_will_end_sent"] = True
    state.emit("customer.subscription.trial_will_end", sub, at=at)


def trial_will_end_at(sub: JSON) -> int | None:
    if sub["status"] != "trialing" or sub.get("_trial_will_end_sent") or sub["trial_end"] is None:
        return None
    return int(sub["trial_end"]) - TRIAL_WILL_END_NOTICE


def send_trial_will_end(state: State, sub: JSON, at: int) -> None:
    _trial_will_end(state, sub, at)


def _emit_if_changed(state: State, sub: JSON, before: JSON, at: int) -> None:
    if state.store.render(sub) != before:
        state.emit("customer.subscription.updated", sub, previous=before, at=at)


def build_invoice(
    state: State,
    sub: JSON,
    at: int,
    reason: str,
    line_period: tuple[int, int],
    invoice_period: tuple[int, int],
    *,
    full_period: int | None = None,
    add_items: list[AddItemSpec] | None = None,
    zero: bool = False,
    auto_advance: bool = True,
    usage_period: tuple[int, int] | None = None,
) -> JSON:
    """A draft subscription invoice: one line per licensed item for ``line_period``
    (prorated against ``full_period``), metered items' usage over ``usage_period`` (billed
    in arrears), then one-off and pending items. The subscription's discounts (else the
    customer's) and default tax rates apply to it."""
    customer = state.store.objects[sub["customer"]]
    invoice = invoices.new_invoice(
        state,
        customer,
        at=at,
        collection_method=sub["collection_method"],
        days_until_due=sub["days_until_due"],
        auto_advance=auto_advance,
        billing_reason=reason,
        currency=sub["currency"],
        subscription=sub,
        payment_method_types=sub["payment_settings"]["payment_method_types"],
        period=invoice_period,
    )
    invoice["default_tax_rates"] = list(sub["default_tax_rates"] or [])
    invoice["discounts"] = [
        d["id"] for d in discounts.active(state, sub["discounts"], at)
    ] or discounts.customer_discount_ids(state, customer)
    interval, count = _interval(sub)
    length = line_period[1] - line_period[0]
    trial = zero and sub["status"] == "trialing"
    for item in sub["items"]["data"]:
        price = state.store.objects[item["price"]]
        metered = price["recurring"]["usage_type"] == "metered"
        if metered and usage_period is None:
            continue
        if metered:
            assert usage_period is not None
            quantity = meters.usage(state, price, sub["customer"], usage_period)
            period, amount = usage_period, catalog.price_amount(price, quantity)
        else:
            quantity = int(item["quantity"])
            full = catalog.price_amount(price, quantity)
            amount = 0 if zero else prorate(full, length, full_period or length)
            period = line_period
        name = invoices.product_name(state, price)
        if trial:
            description = f"Trial period for {name}"
        elif price["billing_scheme"] == "tiered" or price["unit_amount"] is None:
            description = f"{quantity} × {name} (Tier pricing)"  # noqa: RUF001
        else:
            description = (
                f"{quantity} × {name} (at "  # noqa: RUF001
                f"{format_money(price['unit_amount'], price['currency'])} / "
                f"{interval_text(interval, count)})"
            )
        invoices.add_line(
            invoice,
            state,
            amount=amount,
            quantity=quantity,
            description=description,
            period=period,
            price=price,
            parent={
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": sub["id"],
                    "subscription_item": item["id"],
                },
                "type": "subscription_item_details",
            },
            subscription_id=sub["id"],
            discounts=[d["id"] for d in discounts.active(state, item["discounts"], at)],
            tax_rates=item["tax_rates"] or None,
        )
    for extra in add_items or []:
        item = invoices.new_invoice_item(
            state,
            customer,
            at=at,
            amount=extra.amount,
            currency=extra.currency,
            quantity=extra.quantity,
            price=extra.price,
            description=extra.description,
            subscription_id=sub["id"],
            tax_rates=_rates(state, extra.tax_rates),
        )
        if extra.discounts is not None:
            item["discounts"] = (
                discounts.parse_discounts(
                    state, extra.discounts, at, customer=customer["id"], invoice_item=item["id"]
                )
                or []
            )
        state.emit("invoiceitem.created", item, at=at)
        invoices.attach_item(state, invoice, item)
    for pending in reversed(invoices.pending_items(state, sub["customer"], sub["id"])):
        if pending["currency"] == invoice["currency"]:
            invoices.attach_item(state, invoice, pending)
    _use_once_discounts(state, sub, customer, invoice, at)
    state.emit("invoice.created", invoice, at=at)
    return invoice


def _use_once_discounts(state: State, sub: JSON, customer: JSON, invoice: JSON, at: int) -> None:
    """A ``once`` discount of the subscription or the customer is spent by the first
    invoice it discounts (the invoice keeps it)."""
    if not invoice["total_discount_amounts"]:
        return
    sub["discounts"] = discounts.end_once(state, sub["discounts"], at)
    for item in sub["items"]["data"]:
        item["discounts"] = discounts.end_once(state, item["discounts"], at)
    kept = discounts.end_once(state, discounts.customer_discount_ids(state, customer), at)
    if not kept and customer.get("_discount") in invoice["discounts"]:
        discounts.set_customer_discount(state, customer, [], at, emit=False)


def cycle(state: State, sub: JSON, at: int) -> None:
    """Start the next period at ``at`` (the old period's end) and invoice it. At the end of
    a trial without a payment method, ``trial_settings`` may pause or cancel instead."""
    before = state.store.render(sub)
    ending_trial = sub["status"] == "trialing"
    if ending_trial and not _has_payment_method(state, sub):
        behavior = sub["trial_settings"]["end_behavior"]["missing_payment_method"]
        if behavior == "pause":
            sub["status"] = "paused"
            state.emit("customer.subscription.paused", sub, at=at)
            state.emit("customer.subscription.updated", sub, previous=before, at=at)
            return
        if behavior == "cancel":
            cancel_now(state, sub, at, reason="cancellation_requested")
            return
    if ending_trial:
        sub["status"] = "active"
    old_start, old_end = period_of(sub)
    end, natural = _period_end(sub, at)
    _set_period(sub, at, end)
    # A renewal bills its natural period in full (28 February to 31 March is a whole month of
    # a subscription anchored on the 31st); only a period cut short by cancel_at is prorated,
    # against the period it would have been.
    full = natural - at
    pause = (sub["pause_collection"] or {}).get("behavior")
    invoice = build_invoice(
        state,
        sub,
        at,
        "subscription_cycle",
        (at, end),
        (old_start, old_end),
        full_period=full,
        auto_advance=pause != "keep_as_draft",
        usage_period=None if ending_trial else (old_start, old_end),
    )
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.updated", sub, previous=before, at=at)
    if pause in ("void", "mark_uncollectible"):
        invoices.finalize(state, invoice, at)
        if invoice["status"] == "open":
            if pause == "void":
                invoices.void(state, invoice, at)
            else:
                invoices.mark_uncollectible(state, invoice, at)


def _has_payment_method(state: State, sub: JSON) -> bool:
    customer = state.store.objects[sub["customer"]]
    return bool(
        sub["default_payment_method"]
        or sub["default_source"]
        or customer["invoice_settings"].get("default_payment_method")
        or customer["default_source"]
    )


def end_trial_now(state: State, sub: JSON, at: int) -> None:
    """``trial_end=now``: the trial ends and a new billing cycle starts at once."""
    sub["trial_end"] = at
    sub["billing_cycle_anchor"] = at
    for item in sub["items"]["data"]:
        item["current_period_end"] = at
    _cycle_now(state, sub, at)


def cancel_now(
    state: State, sub: JSON, at: int | None = None, *, reason: str = "cancellation_requested"
) -> None:
    if at is None:
        at = state.time_for_customer(sub["customer"])
    sub["status"] = "canceled"
    sub["canceled_at"] = at
    sub["ended_at"] = at
    sub["cancellation_details"]["reason"] = reason
    state.emit("customer.subscription.deleted", sub, at=at)
    schedule_id = sub.get("schedule")
    if schedule_id:
        schedule = state.store.objects.get(schedule_id)
        if schedule is not None and schedule["status"] in ("active", "not_started"):
            from . import schedules

            if reason == "payment_failed":
                schedules.abort(state, schedule, at)
            else:
                schedules.mark_canceled(state, schedule, at)


def expire_incomplete(state: State, sub: JSON, at: int) -> None:
    before = state.store.render(sub)
    sub["status"] = "incomplete_expired"
    sub["ended_at"] = at
    latest = state.store.objects.get(sub["latest_invoice"] or "")
    if latest is not None and latest["status"] == "open":
        invoices.void(state, latest, at)
    state.emit("customer.subscription.updated", sub, previous=before, at=at)


def resume_collection(state: State, sub: JSON, at: int) -> None:
    before = state.store.render(sub)
    sub["pause_collection"] = None
    state.emit("customer.subscription.updated", sub, previous=before, at=at)


def _delinquent(state: State, sub: JSON, at: int) -> bool:
    for invoice in state.store.all("invoice"):
        if invoice["_subscription"] != sub["id"] or invoice["status"] != "open":
            continue
        overdue = invoice["due_date"] is not None and invoice["due_date"] <= at
        if invoice["attempt_count"] > 0 or overdue:
            return True
    return False


def on_invoice_paid(state: State, invoice: JSON, at: int) -> None:
    sub = state.store.objects.get(invoice.get("_subscription") or "")
    if sub is None or sub["status"] not in ("incomplete", "past_due", "unpaid"):
        return
    if _delinquent(state, sub, at):
        return
    before = state.store.render(sub)
    sub["status"] = "active"
    state.emit("customer.subscription.updated", sub, previous=before, at=at)


def on_payment_failed(state: State, invoice: JSON, at: int) -> None:
    sub = state.store.objects.get(invoice.get("_subscription") or "")
    if sub is None or sub["status"] != "active":
        return
    before = state.store.render(sub)
    sub["status"] = "past_due"
    state.emit("customer.subscription.updated", sub, previous=before, at=at)


def on_retries_exhausted(state: State, invoice: JSON, at: int) -> None:
    """Every retry failed: Stripe's default setting cancels the subscription (the invoice
    stays open)."""
    sub = state.store.objects.get(invoice.get("_subscription") or "")
    if sub is None or sub["status"] in ("canceled", "incomplete_expired"):
        return
    cancel_now(state, sub, at, reason="payment_failed")


def on_invoice_overdue(state: State, invoice: JSON, at: int) -> None:
    """A send_invoice subscription becomes past_due when its invoice passes its due date."""
    invoice["_overdue_handled"] = True
    on_payment_failed(state, invoice, at)


# -- HTTP handlers --------------------------------------------------------------------------------

_CREATE = [
    "customer",
    "items",
    "collection_method",
    "days_until_due",
    "payment_settings",
    "cancel_at",
    "cancel_at_period_end",
    "metadata",
    "add_invoice_items",
    "billing_cycle_anchor",
    "description",
    "payment_behavior",
    "proration_behavior",
    "default_payment_method",
    "default_source",
    "off_session",
    "currency",
    "trial_end",
    "trial_period_days",
    "trial_from_plan",
    "trial_settings",
    "discounts",
    "default_tax_rates",
    "backdate_start_date",
    "billing_mode",
    "automatic_tax",
]
_UNSUPPORTED = [
    "billing_thresholds",
    "pending_invoice_item_interval",
]
#: Parameters removed in API 2025-09-30, accepted from requests pinned to older versions.
_LEGACY = ["coupon", "promotion_code"]


def _reject_unsupported(p: Params) -> None:
    for key in _UNSUPPORTED:
        if p.has(key):
            raise invalid_param(
                key, f"The dealbridge Stripe sandbox does not support `{key}` yet.", None
            )


def _collection(
    p: Params, current_method: str | None, current_days: int | None
) -> tuple[str, int | None]:
    method = (
        p.get_enum("collection_method", invoices.COLLECTION_METHODS)
        or current_method
        or "charge_automatically"
    )
    days = p.get_int("days_until_due", minimum=0, maximum=10_000)
    if method == "charge_automatically":
        if days is not None:
            raise invalid_param(
                "days_until_due",
                "Days until due can only be set when collection_method is `send_invoice`.",
                None,
            )
        return method, None
    days = days if days is not None else current_days
    if days is None:
        raise StripeError(
            400,
            "Missing required param: days_until_due.",
            code="parameter_missing",
            param="days_until_due",
        )
    return method, days


def _legacy(call: Call) -> list[str]:
    return _LEGACY if call.before(versions.CLOVER) else []


def _trial_end(call: Call, p: Params, specs: list[ItemSpec], at: int) -> int | None:
    """``trial_end`` (a timestamp or ``now``), ``trial_period_days`` or ``trial_from_plan``."""
    given = [k for k in ("trial_end", "trial_period_days") if p.has(k)]
    if len(given) > 1:
        raise StripeError(
            400, "You may only specify one of these parameters: trial_end, trial_period_days."
        )
    if p.has("trial_end"):
        end = p.get_timestamp("trial_end", allow_now=True, now=at)
        assert end is not None
        if end != at and end <= at:
            raise invalid_param(
                "trial_end",
                "Invalid timestamp: must be an integer Unix timestamp in the future.",
                None,
            )
        if end > at + 730 * 86_400:
            raise invalid_param(
                "trial_end", "Trial end can not be more than 730 days in the future.", None
            )
        return None if end == at else end
    days = p.get_int("trial_period_days", minimum=0, maximum=730)
    if days is None and p.get_bool("trial_from_plan"):
        days = specs[0].price["recurring"].get("trial_period_days")
    return at + days * 86_400 if days else None


def _missing_payment_method(p: Params) -> str:
    settings = p.sub("trial_settings")
    if settings is None:
        return "create_invoice"
    settings.reject_unknown(["end_behavior"])
    end_behavior = settings.sub("end_behavior")
    if end_behavior is None:
        raise StripeError(
            400,
            "Missing required param: trial_settings[end_behavior].",
            code="parameter_missing",
            param="trial_settings[end_behavior]",
        )
    end_behavior.reject_unknown(["missing_payment_method"])
    return (
        end_behavior.get_enum(
            "missing_payment_method", ["cancel", "create_invoice", "pause"], required=True
        )
        or "create_invoice"
    )


def _one_currency(call: Call, customer: JSON, currency: str, param: str) -> None:
    """Stripe refuses a second currency on a customer that already has one."""
    if customer.get("currency") not in (None, currency):
        raise invalid_request(
            "You cannot combine currencies on a single customer. This customer has had a "
            f"subscription, coupon, or invoice item with currency {customer['currency']}",
            param=param,
        )


def create(call: Call) -> JSON:
    p = call.params
    _reject_unsupported(p)
    p.reject_unknown([*_CREATE, *_legacy(call)])
    customer_id = p.get_str("customer", required=True)
    assert customer_id is not None
    customer = call.store.require(customer_id, "customer", param="customer", status=400)
    specs = parse_items(call.state, p)
    _one_currency(call, customer, specs[0].price["currency"], "items")
    method, days = _collection(p, None, None)
    at = call.state.time_for_customer(customer)
    backdate = p.get_timestamp("backdate_start_date")
    if backdate is not None and backdate >= at:
        raise invalid_param("backdate_start_date", "backdate_start_date must be in the past.", None)
    cancel_at = p.get_timestamp("cancel_at")
    if cancel_at is not None and cancel_at <= at:
        raise invalid_param("cancel_at", "cancel_at must be in the future.", None)
    anchor = p.get_timestamp("billing_cycle_anchor")
    if anchor is not None:
        price = specs[0].price["recurring"]
        if anchor < at or anchor > add_interval(at, price["interval"], price["interval_count"]):
            raise invalid_param(
                "billing_cycle_anchor",
                "billing_cycle_anchor cannot be later than next natural billing date "
                f"({add_interval(at, price['interval'], price['interval_count'])}) for plan",
                None,
            )
    add_items = parse_add_invoice_items(call.state, p)
    behavior = p.get_enum("payment_behavior", PAYMENT_BEHAVIORS) or "allow_incomplete"
    proration = p.get_enum("proration_behavior", PRORATION_BEHAVIORS) or "create_prorations"
    spec = SubSpec(
        items=specs,
        collection_method=method,
        days_until_due=days,
        add_invoice_items=add_items,
        metadata=p.metadata() or {},
        cancel_at=cancel_at,
        description=p.get_str("description"),
        payment_method_types=payment_method_types(p),
        billing_cycle_anchor=anchor,
        payment_behavior=behavior,
        proration_behavior=proration,
    )
    spec.metadata = {k: v for k, v in spec.metadata.items() if v}
    spec.default_payment_method = _default_payment_method(call, customer, p)
    spec.default_tax_rates = tax_rates.parse(call.state, p, "default_tax_rates")
    spec.discounts = p if any(p.has(k) for k in ("discounts", *_LEGACY)) else None
    spec.trial_end = _trial_end(call, p, specs, at)
    spec.missing_payment_method = _missing_payment_method(p)
    spec.backdate_start_date = backdate
    sub = create_subscription(call.state, customer, spec, at)
    source = p.get_str("default_source")
    if source is not None:
        card = call.store.get(source, "card")
        if card is None or card["customer"] != customer_id:
            raise no_such("source", source, param="default_source", status=400)
        sub["default_source"] = source
    if behavior == "error_if_incomplete" and sub["status"] == "incomplete":
        invoice = call.store.objects[sub["latest_invoice"]]
        raise _first_payment_error(call.state, invoice)
    if p.get_bool("cancel_at_period_end"):
        sub["cancel_at_period_end"] = True
        sub["cancel_at"] = period_of(sub)[1]
    return call.store.render(sub)


def _default_payment_method(call: Call, customer: JSON, p: Params) -> str | None:
    """``default_payment_method``: a PaymentMethod attached to the subscription's customer."""
    given, value = p.get_nullable_str("default_payment_method")
    if not given or value is None:
        return None
    pm = call.store.get(value, "payment_method")
    if pm is None:
        raise no_such("PaymentMethod", value, param="default_payment_method", status=400)
    if pm["customer"] != customer["id"]:
        raise invalid_param(
            "default_payment_method",
            f"The customer does not have a payment method with the ID {value}. The payment "
            "method must be attached to the customer.",
            "resource_missing",
        )
    return str(pm["id"])


def _first_payment_error(state: State, invoice: JSON) -> StripeError:
    """``payment_behavior=error_if_incomplete``: the 402 of the failed first payment; the
    subscription and its invoice are not kept."""
    intent = payments.intent_of(state, invoice)
    error = intent.get("last_payment_error") if intent else None
    if intent is not None and intent["status"] == "requires_action":
        failure = StripeError(
            402,
            "Payment for this subscription requires additional user action before it can be "
            "completed successfully. Please refer to the use of the `enable_incomplete_payments` "
            "parameter here: https://stripe.com/docs/billing/migration/strong-customer-"
            "authentication#scenario-1-handling-sca-if-you-create-subscriptions-on-the-server",
            type="card_error",
            code="subscription_payment_intent_requires_action",
        )
    elif error:
        failure = payment_methods.decline_error(str(error.get("decline_code") or "generic_decline"))
    else:
        failure = invalid_request(
            "This customer has no attached payment source or default payment method. Please "
            "consider adding a default payment method. For more information, visit "
            "https://stripe.com/docs/billing/subscriptions/payment-methods-setting"
            "#payment-method-priority."
        )
    failure.rollback = True
    return failure


def retrieve(call: Call) -> JSON:
    return call.store.render(call.store.require(call.arg(), "subscription"))


_UPDATE = [
    "metadata",
    "cancel_at",
    "cancel_at_period_end",
    "pause_collection",
    "description",
    "collection_method",
    "days_until_due",
    "payment_settings",
    "items",
    "proration_behavior",
    "cancellation_details",
    "default_payment_method",
    "payment_behavior",
    "off_session",
    "proration_date",
    "trial_end",
    "trial_settings",
    "trial_from_plan",
    "discounts",
    "default_tax_rates",
    "default_source",
    "billing_cycle_anchor",
    "automatic_tax",
]


def _managing_schedule(state: State, sub: JSON) -> str | None:
    """The id of the schedule that manages ``sub`` (not yet released, canceled or done)."""
    schedule_id = sub.get("schedule")
    if not schedule_id:
        return None
    schedule = state.store.objects.get(schedule_id)
    if schedule is None or schedule.get("status") not in ("active", "not_started"):
        return None
    return str(schedule_id)


def update(call: Call) -> JSON:
    sub = call.store.require(call.arg(), "subscription")
    p = call.params
    _reject_unsupported(p)
    p.reject_unknown([*_UPDATE, *_legacy(call)])
    if sub["status"] in ("canceled", "incomplete_expired"):
        for key in p.data:
            if key not in ("metadata", "cancellation_details", "expand"):
                raise invalid_request(
                    "A canceled subscription can only update its cancellation_details and "
                    "metadata.",
                    param=key,
                )
    at = call.state.time_for_customer(sub["customer"])
    # validate everything before changing anything
    method, days = (sub["collection_method"], sub["days_until_due"])
    if p.has("collection_method") or p.has("days_until_due"):
        method, days = _collection(p, sub["collection_method"], sub["days_until_due"])
    given_cancel, cancel_at = False, None
    if p.has("cancel_at"):
        given_cancel = True
        cancel_at = None if p.raw("cancel_at") == "" else p.get_timestamp("cancel_at")
        if cancel_at is not None and cancel_at <= at:
            raise invalid_param("cancel_at", "cancel_at must be in the future.", None)
    period_end_flag = p.get_bool("cancel_at_period_end")
    if given_cancel and cancel_at is not None and period_end_flag:
        raise StripeError(
            400, "You may only specify one of these parameters: cancel_at, cancel_at_period_end."
        )
    managing = _managing_schedule(call.state, sub)
    if managing is not None and (given_cancel or p.has("cancel_at_period_end")):
        raise invalid_request(
            f"The subscription is managed by the subscription schedule `{managing}`, and "
            "updating any cancelation behavior directly is not allowed. Please update the "
            "schedule instead."
        )
    pause: JSON | None = None
    given_pause = p.has("pause_collection")
    if given_pause and p.raw("pause_collection") != "":
        pause_params = p.sub("pause_collection")
        assert pause_params is not None
        pause_params.reject_unknown(["behavior", "resumes_at"])
        behavior = pause_params.get_enum("behavior", PAUSE_BEHAVIORS, required=True)
        resumes_at = pause_params.get_timestamp("resumes_at")
        if resumes_at is not None and resumes_at <= at:
            raise invalid_param(
                "pause_collection[resumes_at]", "resumes_at must be in the future.", None
            )
        pause = {"behavior": behavior, "resumes_at": resumes_at}
    item_changes = _parse_item_changes(call, sub, p)
    cancellation = p.sub("cancellation_details")
    if cancellation is not None:
        cancellation.reject_unknown(["comment", "feedback"])
    proration = p.get_enum("proration_behavior", PRORATION_BEHAVIORS) or "create_prorations"
    proration_date = p.get_timestamp("proration_date")
    anchor_now = p.get_enum("billing_cycle_anchor", ["now", "unchanged"]) == "now"
    default_rates = tax_rates.parse(call.state, p, "default_tax_rates")
    trial_end: int | None = None
    if p.has("trial_end"):
        trial_end = p.get_timestamp("trial_end", allow_now=True, now=at)
        assert trial_end is not None
        if trial_end < at:
            raise invalid_param("trial_end", "trial_end must be in the future or `now`.", None)
    missing_pm = _missing_payment_method(p) if p.has("trial_settings") else None
    types = payment_method_types(p)
    given_pm = p.has("default_payment_method")
    default_pm = (
        _default_payment_method(call, call.store.objects[sub["customer"]], p) if given_pm else None
    )
    before = call.store.render(sub)
    if given_pm:
        sub["default_payment_method"] = default_pm
    sub["collection_method"], sub["days_until_due"] = method, days
    if given_cancel:
        sub["cancel_at"] = cancel_at
        sub["cancel_at_period_end"] = False
    if period_end_flag is not None:
        sub["cancel_at_period_end"] = period_end_flag
        sub["cancel_at"] = period_of(sub)[1] if period_end_flag else None
    if given_pause:
        sub["pause_collection"] = pause
    given_desc, description = p.get_nullable_str("description")
    if given_desc:
        sub["description"] = description
    if p.has("payment_settings"):
        sub["payment_settings"]["payment_method_types"] = types
    if cancellation is not None:
        for key in ("comment", "feedback"):
            given, value = cancellation.get_nullable_str(key)
            if given:
                sub["cancellation_details"][key] = value
    if default_rates is not None:
        sub["default_tax_rates"] = _rates(call.state, default_rates)
    if missing_pm is not None:
        sub["trial_settings"]["end_behavior"]["missing_payment_method"] = missing_pm
    new_discounts = discounts.parse_discounts(
        call.state, p, at, customer=sub["customer"], subscription=sub["id"]
    )
    if new_discounts is None:
        new_discounts = discounts.legacy_coupon(
            call.state, p, at, customer=sub["customer"], subscription=sub["id"]
        )
    if new_discounts is not None:
        sub["discounts"] = new_discounts
    source = p.get_str("default_source")
    if source is not None:
        card = call.store.get(source, "card")
        if card is None or card["customer"] != sub["customer"]:
            raise no_such("source", source, param="default_source", status=400)
        sub["default_source"] = source
    if item_changes is not None:
        change_items(call.state, sub, item_changes, at, proration, proration_date or at)
    metadata_patch(p, sub["metadata"])
    if trial_end is not None:
        if trial_end == at and sub["status"] == "trialing":
            end_trial_now(call.state, sub, at)
        elif trial_end > at:
            _extend_trial(call.state, sub, trial_end, at)
    elif anchor_now and sub["status"] in ("active", "past_due", "trialing"):
        reset_cycle(call.state, sub, at, proration)
    elif item_changes is not None and proration == "always_invoice":
        invoice_prorations_now(call.state, sub, at)
    _emit_if_changed(call.state, sub, before, at)
    return call.store.render(sub)


def _extend_trial(state: State, sub: JSON, trial_end: int, at: int) -> None:
    """A new ``trial_end`` (a trial starts if there was none): the period ends then."""
    if sub["status"] != "trialing":
        sub["trial_start"] = at
        sub["status"] = "trialing"
    sub["trial_end"] = trial_end
    sub["billing_cycle_anchor"] = trial_end
    sub.pop("_trial_will_end_sent", None)
    for item in sub["items"]["data"]:
        item["current_period_end"] = trial_end
    if trial_end - at <= TRIAL_WILL_END_NOTICE:
        _trial_will_end(state, sub, at)


def _item_amount(price: JSON, quantity: int | None) -> int:
    return 0 if quantity is None else catalog.price_amount(price, quantity)


def _proration_text(state: State, price: JSON, quantity: int, at: int, kind: str) -> str:
    """Stripe's proration descriptions: ``Unused time on 2 x Gold after 15 Jan 2026``."""
    name = invoices.product_name(state, price)
    what = name if quantity == 1 else f"{quantity} × {name}"  # noqa: RUF001
    when = datetime.fromtimestamp(at, UTC)
    return f"{kind} time on {what} after {when.day} {when.strftime('%b %Y')}"


def _proration_item(
    state: State,
    sub: JSON,
    item: JSON,
    price: JSON,
    quantity: int,
    amount: int,
    at: int,
    since: int,
    kind: str,
) -> None:
    if amount == 0:
        return
    _, end = period_of(sub)
    pending = invoices.new_invoice_item(
        state,
        state.store.objects[sub["customer"]],
        at=at,
        amount=amount,
        currency=sub["currency"],
        quantity=quantity,
        price=price,
        description=_proration_text(state, price, quantity, since, kind),
        subscription_id=sub["id"],
        period=(since, end),
        tax_rates=list(item.get("tax_rates") or []),
        proration=True,
    )
    pending["discountable"] = False
    state.emit("invoiceitem.created", pending, at=at)


def change_items(
    state: State,
    sub: JSON,
    changes: list[tuple[JSON | None, ItemSpec]],
    at: int,
    proration: str,
    proration_date: int,
) -> None:
    """Apply the new item list. Unless ``proration_behavior`` is ``none``, each changed,
    added or removed licensed item gets proration invoice items for the rest of the current
    period (by the second, rounded half up): a credit for the unused time of what it was
    and a charge for the remaining time of what it is. They wait for the next invoice (or,
    with ``always_invoice``, are invoiced at once)."""
    start, end = period_of(sub)
    old = {
        item["id"]: (state.store.objects[item["price"]], item.get("quantity"), item)
        for item in sub["items"]["data"]
    }
    new_items: list[JSON] = []
    redeem: list[tuple[JSON, ItemSpec]] = []
    for item, spec in changes:
        if item is None:
            item = _new_item(state, sub["id"], spec, at, start, end)
            redeem.append((item, spec))
        else:
            item["price"] = spec.price["id"]
            if spec.quantity is None:
                item.pop("quantity", None)
            else:
                item["quantity"] = spec.quantity
            if spec.tax_rates is not None:
                item["tax_rates"] = _rates(state, spec.tax_rates)
            if spec.discounts is not None:
                redeem.append((item, spec))
        if spec.metadata:
            item["metadata"].update(spec.metadata)
        new_items.append(item)
    _redeem_item_discounts(state, sub, redeem, at)
    sub["items"]["data"] = new_items
    sub["items"]["total_count"] = len(new_items)
    if proration == "none" or not start <= proration_date < end:
        return
    whole, left = end - start, end - proration_date
    now_by_id = {item["id"]: item for item in new_items}
    for item_id, (price, quantity, old_item) in old.items():
        current = now_by_id.get(item_id)
        if quantity is None:
            continue
        if current is not None and (current["price"], current.get("quantity")) == (
            price["id"],
            quantity,
        ):
            continue
        credit = -prorate(_item_amount(price, quantity), left, whole)
        _proration_item(
            state, sub, old_item, price, int(quantity), credit, at, proration_date, "Unused"
        )
    for item in new_items:
        quantity = item.get("quantity")
        if quantity is None:
            continue
        price = state.store.objects[item["price"]]
        previous = old.get(item["id"])
        if previous is not None and (previous[0]["id"], previous[1]) == (price["id"], quantity):
            continue
        charge = prorate(_item_amount(price, quantity), left, whole)
        _proration_item(
            state, sub, item, price, int(quantity), charge, at, proration_date, "Remaining"
        )


def invoice_prorations_now(state: State, sub: JSON, at: int) -> JSON | None:
    """``always_invoice``: the pending prorations are invoiced, finalized and collected."""
    pending = invoices.pending_items(state, sub["customer"], sub["id"])
    if not pending:
        return None
    customer = state.store.objects[sub["customer"]]
    invoice = invoices.new_invoice(
        state,
        customer,
        at=at,
        collection_method=sub["collection_method"],
        days_until_due=sub["days_until_due"],
        auto_advance=True,
        billing_reason="subscription_update",
        currency=sub["currency"],
        subscription=sub,
        payment_method_types=sub["payment_settings"]["payment_method_types"],
        period=(at, at),
    )
    invoice["default_tax_rates"] = list(sub["default_tax_rates"] or [])
    invoice["discounts"] = [
        d["id"] for d in discounts.active(state, sub["discounts"], at)
    ] or discounts.customer_discount_ids(state, customer)
    for item in reversed(pending):
        if item["currency"] == invoice["currency"]:
            invoices.attach_item(state, invoice, item)
    state.emit("invoice.created", invoice, at=at)
    sub["latest_invoice"] = invoice["id"]
    _collect_now(state, invoice, at)
    return invoice


def _collect_now(state: State, invoice: JSON, at: int) -> None:
    invoices.finalize(state, invoice, at)
    if invoice["status"] != "open":
        return
    if invoice["collection_method"] == "send_invoice":
        invoices.send(state, invoice, at)
    else:
        invoices.attempt_payment(state, invoice, at)


def reset_cycle(state: State, sub: JSON, at: int, proration: str) -> None:
    """``billing_cycle_anchor=now``: the current period ends now (its unused time credited
    unless ``proration_behavior=none``) and a new one starts, invoiced at once."""
    start, end = period_of(sub)
    if proration != "none" and start <= at < end and sub["status"] != "trialing":
        for item in sub["items"]["data"]:
            quantity = item.get("quantity")
            if quantity is None:
                continue
            price = state.store.objects[item["price"]]
            credit = -prorate(_item_amount(price, quantity), end - at, end - start)
            _proration_item(state, sub, item, price, int(quantity), credit, at, at, "Unused")
    if sub["status"] == "trialing":
        sub["trial_end"] = at
    sub["billing_cycle_anchor"] = at
    for item in sub["items"]["data"]:
        item["current_period_end"] = at
    _cycle_now(state, sub, at)


def _parse_item_changes(
    call: Call, sub: JSON, p: Params
) -> list[tuple[JSON | None, ItemSpec]] | None:
    """The new item list as (existing item or None, spec), applied without prorations."""
    entries = p.items("items")
    if not entries:
        return None
    existing = {item["id"]: item for item in sub["items"]["data"]}
    removed: set[str] = set()
    result: list[tuple[JSON | None, ItemSpec]] = []
    updated: dict[str, tuple[JSON, ItemSpec]] = {}
    for entry in entries:
        entry.reject_unknown(
            [
                "id",
                "price",
                "quantity",
                "deleted",
                "metadata",
                "plan",
                "clear_usage",
                "tax_rates",
                "discounts",
            ]
        )
        item_id = entry.get_str("id")
        if item_id is not None:
            item = existing.get(item_id)
            if item is None:
                raise invalid_param(
                    entry.name("id"), f"No such subscription_item: '{item_id}'", "resource_missing"
                )
            if entry.get_bool("deleted"):
                removed.add(item_id)
                continue
            price_id = entry.get_str("price") or item["price"]
            price = recurring_price(call.state, price_id, entry.name("price"))
            current = item.get("quantity") if price_id == item["price"] else None
            spec = ItemSpec(
                price,
                _quantity(entry, price, current),
                entry.metadata() or {},
                tax_rates.parse(call.state, entry, "tax_rates"),
                entry if entry.has("discounts") else None,
            )
            updated[item_id] = (item, spec)
        else:
            price_id = entry.get_str("price") or entry.get_str("plan")
            if price_id is None:
                raise StripeError(
                    400,
                    f"Missing required param: {entry.name('price')}.",
                    code="parameter_missing",
                    param=entry.name("price"),
                )
            price = recurring_price(call.state, price_id, entry.name("price"))
            result.append(
                (
                    None,
                    ItemSpec(
                        price,
                        _quantity(entry, price, None),
                        entry.metadata() or {},
                        tax_rates.parse(call.state, entry, "tax_rates"),
                        entry if entry.has("discounts") else None,
                    ),
                )
            )
    kept: list[tuple[JSON | None, ItemSpec]] = []
    for item in sub["items"]["data"]:
        if item["id"] in removed:
            continue
        if item["id"] in updated:
            kept.append(updated[item["id"]])
        else:
            kept.append((item, ItemSpec(call.store.objects[item["price"]], item.get("quantity"))))
    final = kept + result
    if not final:
        raise invalid_param("items", "A subscription must have at least one active plan.", None)
    for _, spec in final:
        if spec.price["currency"] != sub["currency"] or (
            spec.price["recurring"]["interval"],
            spec.price["recurring"]["interval_count"],
        ) != _interval(sub):
            raise invalid_param(
                "items",
                "Currency and interval fields must match across all plans on this subscription.",
                None,
            )
    return final


def resume(call: Call) -> JSON:
    """``/resume``: a ``paused`` subscription (a trial that ended without a payment method)
    becomes active; with ``billing_cycle_anchor=now`` (the default) a new period starts and
    is invoiced at once."""
    sub = call.store.require(call.arg(), "subscription")
    p = call.params
    p.reject_unknown(["billing_cycle_anchor", "proration_behavior", "proration_date"])
    anchor = p.get_enum("billing_cycle_anchor", ["now", "unchanged"]) or "now"
    p.get_enum("proration_behavior", PRORATION_BEHAVIORS)
    if sub["status"] != "paused":
        raise invalid_request(
            "Only a subscription with a status of `paused` can be resumed.", param="id"
        )
    at = call.state.time_for_customer(sub["customer"])
    before = call.store.render(sub)
    sub["status"] = "active"
    call.state.emit("customer.subscription.resumed", sub, at=at)
    if anchor == "now":
        sub["billing_cycle_anchor"] = at
        for item in sub["items"]["data"]:
            item["current_period_end"] = at
        _cycle_now(call.state, sub, at)
    else:
        _emit_if_changed(call.state, sub, before, at)
    return call.store.render(sub)


def _cycle_now(state: State, sub: JSON, at: int) -> None:
    """Start a new period now; its invoice is finalized and collected at once, as Stripe
    does when a billing cycle is reset (``billing_cycle_anchor=now``, ``trial_end=now``)."""
    latest = sub["latest_invoice"]
    cycle(state, sub, at)
    if sub["latest_invoice"] != latest:
        invoice = state.store.objects[sub["latest_invoice"]]
        if invoice["status"] == "draft" and invoice["auto_advance"]:
            _collect_now(state, invoice, at)


def cancel(call: Call) -> JSON:
    sub = call.store.get(call.arg(), "subscription")
    if sub is None:
        raise no_such("subscription", call.arg())
    p = call.params
    p.reject_unknown(["cancellation_details", "invoice_now", "prorate"])
    p.get_bool("invoice_now")
    p.get_bool("prorate")
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid_request(
            f"No such subscription: '{sub['id']}'; a similar object exists but it has been "
            "canceled.",
            param="id",
            code="resource_missing",
        )
    details = p.sub("cancellation_details")
    if details is not None:
        details.reject_unknown(["comment", "feedback"])
        sub["cancellation_details"]["comment"] = (
            details.get_str("comment", allow_empty=True) or None
        )
        sub["cancellation_details"]["feedback"] = (
            details.get_str("feedback", allow_empty=True) or None
        )
    cancel_now(call.state, sub)
    return call.store.render(sub)


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        [
            "collection_method",
            "created",
            "customer",
            "ending_before",
            "limit",
            "price",
            "starting_after",
            "status",
            "test_clock",
        ]
    )
    status = p.get_enum("status", [*STATUSES, "all", "ended"])
    customer = p.get_str("customer")
    price = p.get_str("price")
    clock = p.get_str("test_clock")
    method = p.get_enum("collection_method", invoices.COLLECTION_METHODS)
    in_range = created_filter(p)

    def status_ok(sub: JSON) -> bool:
        if status is None:
            return bool(sub["status"] != "canceled")
        if status == "all":
            return True
        if status == "ended":
            return sub["status"] in ("canceled", "incomplete_expired")
        return bool(sub["status"] == status)

    subs = [
        s
        for s in call.store.all("subscription")
        if status_ok(s)
        and (customer is None or s["customer"] == customer)
        and (price is None or any(i["price"] == price for i in s["items"]["data"]))
        and (clock is None or s["test_clock"] == clock)
        and (method is None or s["collection_method"] == method)
        and in_range(s["created"])
    ]
    return call.store.list_response(subs, p, "/v1/subscriptions")
