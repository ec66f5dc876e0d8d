"""``/v1/subscriptions`` and the subscription side of the billing engine.

A subscription's items share one billing cycle (same currency and interval, as in Stripe's
classic billing). Each item carries ``current_period_start``/``current_period_end`` (API
2025-03-31 and later moved them there from the subscription).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import invoices, payment_methods, payments
from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .params import Params, metadata_patch
from .state import State
from .store import created_filter
from .timeutil import add_interval, format_money, interval_text, next_boundary_after, prorate

JSON = dict[str, Any]

INCOMPLETE_EXPIRY = 23 * 3600
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
    quantity: int
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class AddItemSpec:
    price: JSON | None
    amount: int
    currency: str
    quantity: int
    description: str | None


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
        quantity = entry.get_int("quantity", minimum=0)
        specs.append(ItemSpec(price, 1 if quantity is None else quantity, entry.metadata() or {}))
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
                    price["unit_amount"] * quantity,
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
            unit = data.get_int("unit_amount", required=True, minimum=0)
            assert unit is not None
            specs.append(
                AddItemSpec(None, unit * quantity, currency.lower(), quantity, product["name"])
            )
        else:
            raise StripeError(
                400,
                f"Missing required param: {entry.name('price')}.",
                code="parameter_missing",
                param=entry.name("price"),
            )
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


def plan_from_price(price: JSON) -> JSON:
    recurring = price["recurring"] or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": dict(price["metadata"]),
        "meter": None,
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": recurring.get("usage_type", "licensed"),
    }


def make_renderer(state: State) -> Any:
    def render(sub: JSON) -> JSON:
        from .store import strip_private

        body: JSON = strip_private(sub)
        for item in body["items"]["data"]:
            price = state.store.objects[item["price"]]
            item["price"] = state.store.render(price)
            item["plan"] = plan_from_price(price)
        return body

    return render


# -- lifecycle ------------------------------------------------------------------------------------


def _new_item(state: State, sub_id: str, spec: ItemSpec, at: int, start: int, end: int) -> JSON:
    return {
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
        "tax_rates": [],
    }


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
    anchor = spec.billing_cycle_anchor or at
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
        "default_tax_rates": [],
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
        "start_date": at,
        "status": "active" if spec.collection_method == "send_invoice" else "incomplete",
        "test_clock": customer.get("test_clock"),
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {
            "end_behavior": {
                "billing_cycle_anchor": None,
                "missing_payment_method": "create_invoice",
            }
        },
        "trial_start": None,
        "_interval": first["recurring"]["interval"],
        "_interval_count": first["recurring"]["interval_count"],
    }
    end, natural = _period_end(sub, at)
    sub["items"]["data"] = [_new_item(state, sub_id, s, at, at, end) for s in spec.items]
    state.store.add(sub)
    full_period = natural - add_interval(natural, sub["_interval"], -sub["_interval_count"])
    invoice = build_invoice(
        state,
        sub,
        at,
        "subscription_create",
        (at, end),
        (at, at),
        full_period=full_period,
        add_items=spec.add_invoice_items,
        zero=spec.proration_behavior == "none" and anchor > at,
    )
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.created", sub, at=at)
    before = state.store.render(sub)
    invoices.finalize(state, invoice, at)
    if invoice["status"] == "open":
        if spec.collection_method == "send_invoice":
            invoices.send(state, invoice, at)
        elif spec.payment_behavior != "default_incomplete":
            invoices.attempt_payment(state, invoice, at)
    _emit_if_changed(state, sub, before, at)
    return sub


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
) -> JSON:
    """A draft subscription invoice with one line per item, then one-off and pending items."""
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
    interval, count = _interval(sub)
    length = line_period[1] - line_period[0]
    for item in sub["items"]["data"]:
        price = state.store.objects[item["price"]]
        full = price["unit_amount"] * item["quantity"]
        amount = 0 if zero else prorate(full, length, full_period or length)
        description = (
            f"{item['quantity']} × {invoices.product_name(state, price)} (at "  # noqa: RUF001
            f"{format_money(price['unit_amount'], price['currency'])} / "
            f"{interval_text(interval, count)})"
        )
        invoices.add_line(
            invoice,
            state,
            amount=amount,
            quantity=item["quantity"],
            description=description,
            period=line_period,
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
        )
        state.emit("invoiceitem.created", item, at=at)
        invoices.attach_item(state, invoice, item)
    for pending in reversed(invoices.pending_items(state, sub["customer"], sub["id"])):
        if pending["currency"] == invoice["currency"]:
            invoices.attach_item(state, invoice, pending)
    state.emit("invoice.created", invoice, at=at)
    return invoice


def cycle(state: State, sub: JSON, at: int) -> None:
    """Start the next period at ``at`` (the old period's end) and invoice it."""
    before = state.store.render(sub)
    old_start, old_end = period_of(sub)
    end, natural = _period_end(sub, at)
    _set_period(sub, at, end)
    full = natural - add_interval(natural, sub["_interval"], -sub["_interval_count"])
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
    "off_session",
    "currency",
]
_UNSUPPORTED = [
    "trial_end",
    "trial_period_days",
    "trial_from_plan",
    "discounts",
    "coupon",
    "promotion_code",
    "billing_thresholds",
    "backdate_start_date",
    "pending_invoice_item_interval",
]


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


def create(call: Call) -> JSON:
    p = call.params
    _reject_unsupported(p)
    p.reject_unknown(_CREATE)
    customer_id = p.get_str("customer", required=True)
    assert customer_id is not None
    customer = call.store.require(customer_id, "customer", param="customer", status=400)
    specs = parse_items(call.state, p)
    method, days = _collection(p, None, None)
    at = call.state.time_for_customer(customer)
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
    sub = create_subscription(call.state, customer, spec, at)
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
]


def update(call: Call) -> JSON:
    sub = call.store.require(call.arg(), "subscription")
    p = call.params
    _reject_unsupported(p)
    p.reject_unknown(_UPDATE)
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
    p.get_enum("proration_behavior", PRORATION_BEHAVIORS)
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
    if item_changes is not None:
        start, end = period_of(sub)
        for item, spec in item_changes:
            if item is not None:
                item["price"], item["quantity"] = spec.price["id"], spec.quantity
        sub["items"]["data"] = [
            _new_item(call.state, sub["id"], spec, at, start, end) if item is None else item
            for item, spec in item_changes
        ]
        sub["items"]["total_count"] = len(sub["items"]["data"])
    metadata_patch(p, sub["metadata"])
    _emit_if_changed(call.state, sub, before, at)
    return call.store.render(sub)


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
            quantity = entry.get_int("quantity", minimum=0)
            spec = ItemSpec(price, item["quantity"] if quantity is None else quantity)
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
            quantity = entry.get_int("quantity", minimum=0)
            result.append(
                (None, ItemSpec(price, 1 if quantity is None else quantity, entry.metadata() or {}))
            )
    kept: list[tuple[JSON | None, ItemSpec]] = []
    for item in sub["items"]["data"]:
        if item["id"] in removed:
            continue
        if item["id"] in updated:
            kept.append(updated[item["id"]])
        else:
            kept.append((item, ItemSpec(call.store.objects[item["price"]], item["quantity"])))
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
