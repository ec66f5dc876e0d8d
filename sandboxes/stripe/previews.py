"""``POST /v1/invoices/create_preview``: the invoice a subscription (new or changed) would
produce, built by the same code that builds the real one.

The preview runs the change for real inside an undo journal of the sandbox's state, takes
the invoice that results, and rolls everything back (objects and events), so the preview and
the invoice that follows can only differ in their ids. For a new subscription it is the
first invoice; for a change invoiced at once (``always_invoice``, ``billing_cycle_anchor=
now``, a trial ending now) it is that invoice; otherwise it is the next renewal invoice,
with the pending prorations the change creates.

Top-level ``discounts`` apply to the previewed invoice: for a new subscription they are its
discounts, for a one-off invoice the invoice's (before, they were accepted and ignored).

``invoice_items`` are added to the previewed invoice as pending items of the customer (so the
first invoice of a new subscription carries them, as one-off items do). With a customer and
``invoice_items`` but no subscription, the preview is the one-off invoice those items (and
the customer's other pending items) would make: a draft built by ``POST /v1/invoices``.
"""

from __future__ import annotations

from typing import Any

from . import invoices, subscriptions
from .call import Call
from .errors import StripeError, invalid_param
from .params import Params

JSON = dict[str, Any]

_ITEM_FIELDS = [
    "amount", "currency", "description", "discountable", "discounts", "metadata", "period",
    "price", "price_data", "quantity", "tax_rates", "unit_amount_decimal",
]  # fmt: skip
_DETAILS = [
    "items", "proration_behavior", "proration_date", "billing_cycle_anchor", "trial_end",
    "cancel_at", "cancel_at_period_end", "default_tax_rates", "start_date", "trial_period_days",
    "backdate_start_date", "resume_at", "cancel_now", "billing_mode",
]  # fmt: skip


def create_preview(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["customer", "subscription", "subscription_details", "discounts", "currency",
         "automatic_tax", "preview_mode", "schedule", "schedule_details", "invoice_items",
         "issuer", "on_behalf_of", "customer_details", "customer_account"]
    )  # fmt: skip
    details = p.sub("subscription_details")
    if details is not None:
        details.reject_unknown(_DETAILS)
    sub_id = p.get_str("subscription")
    customer_id = p.get_str("customer")
    state = call.state
    if sub_id is None and customer_id is None:
        raise StripeError(
            400,
            "Missing required param: customer or subscription.",
            code="parameter_missing",
            param="customer",
        )
    mark = state.begin()
    try:
        items = p.items("invoice_items")
        if items:
            owner = customer_id
            if owner is None:
                assert sub_id is not None
                owner = call.store.require(sub_id, "subscription", param="subscription")["customer"]
            _add_items(call, str(owner), items)
        if sub_id is None and customer_id is not None and details is None and items:
            invoice = _preview_one_off(call, customer_id, p.data.get("discounts"))
        elif sub_id is not None:
            sub = call.store.require(sub_id, "subscription", param="subscription", status=400)
            invoice = _preview_change(call, sub, details)
        else:
            assert customer_id is not None
            if details is None or not details.has("items"):
                raise StripeError(
                    400,
                    "Missing required param: subscription_details[items].",
                    code="parameter_missing",
                    param="subscription_details[items]",
                )
            invoice = _preview_new(call, customer_id, details, p.data.get("discounts"))
        body = state.store.render(invoice)
        body["id"] = "upcoming_" + invoice["id"]
        body["lines"]["url"] = f"/v1/invoices/{body['id']}/lines"
    finally:
        state.rollback(mark)
    return body


def _add_items(call: Call, customer_id: str, items: list[Params]) -> None:
    """Each ``invoice_items[]`` entry as a pending invoice item (``price`` is the item's
    ``pricing[price]``), validated as ``POST /v1/invoiceitems`` validates it."""
    for entry in items:
        entry.reject_unknown(_ITEM_FIELDS)
        data = dict(entry.data)
        price = data.pop("price", None)
        if price is not None:
            data["pricing"] = {"price": price}
        data["customer"] = customer_id
        invoices.create_item(Call(call.state, Params(data, entry.prefix), {}, "POST", call.version))


def _preview_one_off(call: Call, customer_id: str, discounts: Any) -> JSON:
    data: JSON = {"customer": customer_id, "pending_invoice_items_behavior": "include"}
    if discounts is not None:
        data["discounts"] = discounts
    created = invoices.create(Call(call.state, Params(data), {}, "POST", call.version))
    invoice: JSON = call.store.objects[created["id"]]
    return invoice


def _preview_new(call: Call, customer_id: str, details: Params, discounts: Any) -> JSON:
    data: JSON = {"customer": customer_id, **details.data}
    if discounts is not None:
        # The preview's ``discounts`` are the new subscription's (its invoices inherit them).
        data["discounts"] = discounts
    data.pop("proration_date", None)
    start = details.get_timestamp("start_date")
    data.pop("start_date", None)
    customer = call.store.require(customer_id, "customer", param="customer", status=400)
    if start is not None and start < call.state.time_for_customer(customer):
        data["backdate_start_date"] = str(start)  # a start in the past: the backdated subscription
    sub_call = Call(call.state, Params(data), {}, "POST", call.version)
    created = subscriptions.create(sub_call)
    sub = call.store.objects[created["id"]]
    invoice: JSON = call.store.objects[sub["latest_invoice"]]
    return invoice


def _preview_change(call: Call, sub: JSON, details: Params | None) -> JSON:
    latest = sub["latest_invoice"]
    if details is not None and details.data:
        data = dict(details.data)
        sub_call = Call(call.state, Params(data), {"id": sub["id"]}, "POST", call.version)
        subscriptions.update(sub_call)
    if sub["latest_invoice"] != latest:
        invoice: JSON = call.store.objects[sub["latest_invoice"]]
        return invoice
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid_param("subscription", "The subscription has no upcoming invoice.", None)
    _, period_end = subscriptions.period_of(sub)
    subscriptions.cycle(call.state, sub, period_end)
    renewal: JSON = call.store.objects[sub["latest_invoice"]]
    return renewal
