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

``schedule`` previews the next invoice of an existing subscription schedule, after
``schedule_details`` (``phases``, ``end_behavior``, ``proration_behavior``) are applied to it
as ``POST /v1/subscription_schedules/:id`` would; ``customer`` with ``schedule_details`` and
no schedule previews the first invoice of a new schedule. "Next" is the first invoice the
schedule's subscription gets from now on: the one the update makes at once
(``always_invoice``, a new phase entered now), else the billing engine's next step for it,
phase changes first, as a test clock would run them. Neither combines with ``subscription``
or ``subscription_details`` (Stripe: "Cannot be used with subscription or subscription_
prefixed fields"). ``invoice_items`` are on the previewed invoice as pending items.
``schedule_details[billing_mode]``, top-level ``discounts`` and ``preview_mode=recurring`` are
refused by name: the sandbox previews nothing it cannot model rather than ignore it.

``invoice_items`` are added to the previewed invoice as pending items of the customer (so the
first invoice of a new subscription carries them, as one-off items do). With a customer and
``invoice_items`` but no subscription, the preview is the one-off invoice those items (and
the customer's other pending items) would make: a draft built by ``POST /v1/invoices``.
"""

from __future__ import annotations

from typing import Any

from . import invoices, schedules, subscriptions
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
    schedule_id = p.get_str("schedule")
    schedule_details = p.sub("schedule_details")
    if schedule_id is not None or schedule_details is not None:
        return _preview_schedule(call, schedule_id, customer_id, schedule_details)
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


# --------------------------------------------------------------------------- schedules

_SCHEDULE_DETAILS = ["phases", "end_behavior", "proration_behavior", "billing_mode"]

#: Phase changes and renewals a preview may run through before the schedule's subscription
#: gets an invoice (a schedule of many short phases that change nothing billed).
_MAX_STEPS = 1_000


def _preview_schedule(
    call: Call, schedule_id: str | None, customer_id: str | None, details: Params | None
) -> JSON:
    p = call.params
    chosen = "schedule" if schedule_id is not None else "schedule_details"
    for other in ("subscription", "subscription_details"):
        if p.has(other):
            raise StripeError(
                400,
                f"You may only specify one of these parameters: {chosen}, {other}.",
                param=other,
            )
    if details is not None:
        details.reject_unknown(_SCHEDULE_DETAILS)
        if details.has("billing_mode"):
            raise invalid_param(
                "schedule_details[billing_mode]",
                "The dealbridge Stripe sandbox does not preview `schedule_details[billing_mode]`: "
                "it bills only the `classic` mode.",
                None,
            )
        # Stripe's enums for a preview (``none`` and ``renew`` are not among its end behaviors).
        details.get_enum("end_behavior", ["cancel", "release"])
        details.get_enum("proration_behavior", subscriptions.PRORATION_BEHAVIORS)
    for unmodelled in ("discounts", "preview_mode"):
        if p.has(unmodelled) and not (unmodelled == "preview_mode" and p.raw(unmodelled) == "next"):
            raise invalid_param(
                unmodelled,
                f"The dealbridge Stripe sandbox does not preview `{unmodelled}` with a "
                "subscription schedule.",
                None,
            )
    if schedule_id is None and customer_id is None:
        raise StripeError(
            400,
            "Missing required param: customer or schedule.",
            code="parameter_missing",
            param="customer",
        )
    state = call.state
    mark = state.begin()
    try:
        if schedule_id is not None:
            schedule = call.store.require(
                schedule_id, "subscription_schedule", param="schedule", status=400
            )
            if customer_id is not None and customer_id != schedule["customer"]:
                raise invalid_param(
                    "customer",
                    f"The schedule `{schedule_id}` does not belong to the customer "
                    f"`{customer_id}`.",
                    None,
                )
            sub_before = schedule["subscription"]
            latest = _latest(call, sub_before)
            _add_items(call, str(schedule["customer"]), p.items("invoice_items"))
            if details is not None and details.data:
                params = Params(dict(details.data), details.prefix)
                schedules.update(Call(state, params, {"id": schedule_id}, "POST", call.version))
        else:
            assert customer_id is not None and details is not None
            call.store.require(customer_id, "customer", param="customer", status=400)
            _add_items(call, customer_id, p.items("invoice_items"))
            schedule, latest = _new_schedule(call, customer_id, details), None
        invoice = _next_invoice(call, schedule, latest)
        body = state.store.render(invoice)
        body["id"] = "upcoming_" + invoice["id"]
        body["lines"]["url"] = f"/v1/invoices/{body['id']}/lines"
    finally:
        state.rollback(mark)
    return body


def _latest(call: Call, sub_id: str | None) -> str | None:
    sub = call.store.objects.get(sub_id or "")
    return None if sub is None else sub["latest_invoice"]


def _new_schedule(call: Call, customer_id: str, details: Params) -> JSON:
    """The schedule ``POST /v1/subscription_schedules`` would create from the details (its
    start: the first phase's ``start_date``, else now)."""
    phases = details.items("phases")
    if not phases:
        raise StripeError(
            400,
            "Missing required param: schedule_details[phases].",
            code="parameter_missing",
            param="schedule_details[phases]",
        )
    data: JSON = {"customer": customer_id, **details.data}
    data.pop("proration_behavior", None)
    start = phases[0].data.get("start_date")
    data["start_date"] = "now" if start is None else start
    data["phases"] = [{k: v for k, v in ph.data.items() if k != "start_date"} for ph in phases]
    created = schedules.create(
        Call(call.state, Params(data, details.prefix), {}, "POST", call.version)
    )
    schedule: JSON = call.store.objects[created["id"]]
    return schedule


def _next_invoice(call: Call, schedule: JSON, latest: str | None) -> JSON:
    """The first invoice the schedule's subscription gets after ``latest``: made by the
    request itself, else by the next phase change or renewal, run in the order the billing
    engine runs them (a phase change before a renewal due at the same moment)."""
    state = call.state
    for _ in range(_MAX_STEPS):
        # A schedule that ends with ``release`` leaves its subscription billing on its own.
        sub_id = schedule["subscription"] or schedule["released_subscription"]
        sub = state.store.objects.get(sub_id or "")
        if sub is not None and sub["latest_invoice"] not in (None, latest):
            invoice: JSON = state.store.objects[sub["latest_invoice"]]
            return invoice
        if sub is not None and sub["status"] in ("canceled", "incomplete_expired"):
            break
        phase_at = schedules.next_action_time(schedule)
        if sub is None:
            if schedule["status"] != "not_started" or phase_at is None:
                break
            schedules.start_schedule(state, schedule, phase_at)
            continue
        _, period_end = subscriptions.period_of(sub)
        cancel_at = sub["cancel_at"]
        if (
            phase_at is not None
            and phase_at <= period_end
            and (cancel_at is None or phase_at <= cancel_at)
        ):
            schedules.advance(state, schedule, phase_at)
        elif cancel_at is not None and cancel_at <= period_end:
            subscriptions.cancel_now(state, sub, cancel_at)
        else:
            subscriptions.cycle(state, sub, period_end)
    raise invalid_param("schedule", "The subscription schedule has no upcoming invoice.", None)
