"""``/v1/subscription_schedules``: phases that start, change and end a subscription.

Phase ``iterations`` was removed in API 2025-09-30; like Stripe, it is an unknown parameter.
"""

from __future__ import annotations

from typing import Any

from . import discounts, invoices, subscriptions, versions
from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .params import Params, metadata_patch
from .state import State
from .subscriptions import AddItemSpec, ItemSpec, SubSpec
from .timeutil import add_interval

JSON = dict[str, Any]

_INTERVALS = ["day", "month", "week", "year"]


def _phase(call: Call, p: Params, start: int, index: int, defaults: JSON) -> tuple[JSON, JSON]:
    """(rendered phase, private spec) for phase ``p`` starting at ``start``."""
    p.reject_unknown(
        [
            "items",
            "add_invoice_items",
            "collection_method",
            "duration",
            "end_date",
            "invoice_settings",
            "metadata",
            "proration_behavior",
            "description",
            "currency",
            "default_payment_method",
            "billing_cycle_anchor",
            "start_date",
            "default_tax_rates",
            "trial_end",
            "discounts",
            *(["iterations"] if call.before(versions.CLOVER) else []),
        ]
    )
    anchor = p.get_enum("billing_cycle_anchor", ["automatic", "phase_start"])
    items = subscriptions.parse_items(call.state, p)
    add_items = subscriptions.parse_add_invoice_items(call.state, p)
    method = p.get_enum("collection_method", ["charge_automatically", "send_invoice"])
    settings = p.sub("invoice_settings")
    days: int | None = None
    if settings is not None:
        settings.reject_unknown(["days_until_due", "account_tax_ids", "issuer"])
        days = settings.get_int("days_until_due", minimum=0)
    end_date = p.get_timestamp("end_date")
    duration = p.sub("duration")
    if end_date is not None and duration is not None:
        raise StripeError(
            400,
            "You may only specify one of these parameters: duration, end_date.",
            param=p.name("duration"),
        )
    if duration is not None:
        duration.reject_unknown(["interval", "interval_count"])
        interval = duration.get_enum("interval", _INTERVALS, required=True)
        assert interval is not None
        end_date = add_interval(start, interval, duration.get_int("interval_count", minimum=1) or 1)
    iterations = p.get_int("iterations", minimum=1)
    if iterations is not None:
        if end_date is not None:
            raise StripeError(
                400,
                "You may only specify one of these parameters: end_date, iterations.",
                param=p.name("iterations"),
            )
        recurring = items[0].price["recurring"]
        end_date = add_interval(
            start, recurring["interval"], recurring["interval_count"] * iterations
        )
    if end_date is None:
        recurring = items[0].price["recurring"]
        end_date = add_interval(start, recurring["interval"], recurring["interval_count"])
    if end_date <= start:
        raise invalid_param(
            p.name("end_date"), f"The end_date of phase {index} must be after its start_date.", None
        )
    effective_method = method or defaults["collection_method"] or "charge_automatically"
    effective_days = days if days is not None else defaults["invoice_settings"]["days_until_due"]
    if effective_method == "send_invoice" and effective_days is None:
        raise StripeError(
            400,
            f"Missing required param: {p.name('invoice_settings')}[days_until_due].",
            code="parameter_missing",
            param=f"{p.name('invoice_settings')}[days_until_due]",
        )
    metadata = p.metadata() or {}
    payment_method = p.get_str("default_payment_method")
    if payment_method is not None:
        found = call.store.objects.get(payment_method)
        if found is None or found.get("object") != "payment_method":
            raise no_such(
                "PaymentMethod",
                payment_method,
                param=p.name("default_payment_method"),
                status=400,
            )
    trial_end = p.get_timestamp("trial_end")
    if trial_end is not None and not start < trial_end <= end_date:
        raise invalid_param(
            p.name("trial_end"),
            f"The trial_end of phase {index} must be after its start_date and no later than "
            "its end_date.",
            None,
        )
    proration = (
        p.get_enum("proration_behavior", subscriptions.PRORATION_BEHAVIORS) or "create_prorations"
    )
    phase_discounts = _phase_discounts(p)
    phase: JSON = {
        "add_invoice_items": [
            {
                "discounts": _phase_discounts(a.discounts),
                "metadata": {},
                "period": {
                    "end": {"type": "subscription_period_end"},
                    "start": {"type": "subscription_period_start"},
                },
                "price": a.price["id"] if a.price else None,
                "quantity": a.quantity,
                "tax_rates": [],
            }
            for a in add_items
        ],
        "application_fee_percent": None,
        "billing_cycle_anchor": anchor,
        "billing_thresholds": None,
        "collection_method": method,
        "currency": items[0].price["currency"],
        "default_payment_method": payment_method,
        "default_tax_rates": [],
        "description": p.get_str("description"),
        "discounts": phase_discounts,
        "end_date": end_date,
        "invoice_settings": {"account_tax_ids": None, "days_until_due": days, "issuer": None}
        if settings is not None
        else None,
        "items": [
            {
                "billing_thresholds": None,
                "discounts": _phase_discounts(i.discounts),
                "metadata": dict(i.metadata),
                "plan": i.price["id"],
                "price": i.price["id"],
                "quantity": i.quantity,
                "tax_rates": [],
            }
            for i in items
        ],
        "metadata": dict(metadata),
        "on_behalf_of": None,
        "proration_behavior": proration,
        "start_date": start,
        "transfer_data": None,
        "trial_end": trial_end,
    }
    private: JSON = {
        "items": items,
        "add_items": add_items,
        "method": effective_method,
        "days": effective_days if effective_method == "send_invoice" else None,
        "metadata": metadata,
        # What the phase's subscription gets: its payment method, its discounts (redeemed
        # when the phase starts) and, on the first phase, its trial.
        "default_payment_method": payment_method,
        "discounts": p if p.has("discounts") else None,
        "trial_end": trial_end,
        # How the phase enters mid-period: prorated per its ``proration_behavior``, keeping
        # the billing cycle unless ``billing_cycle_anchor=phase_start``.
        "proration_behavior": proration,
        "billing_cycle_anchor": anchor,
    }
    return phase, private


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        [
            "customer",
            "start_date",
            "end_behavior",
            "phases",
            "metadata",
            "default_settings",
            "from_subscription",
            "billing_mode",
        ]
    )
    if p.has("from_subscription"):
        return _from_subscription(call)
    customer_id = p.get_str("customer", required=True)
    assert customer_id is not None
    customer = call.store.require(customer_id, "customer", param="customer", status=400)
    at = call.state.time_for_customer(customer)
    start = p.get_timestamp("start_date", allow_now=True, now=at)
    start = at if start is None else start
    end_behavior = p.get_enum("end_behavior", ["cancel", "none", "release", "renew"]) or "release"
    if end_behavior in ("none", "renew"):
        raise invalid_param(
            "end_behavior",
            "The dealbridge Stripe sandbox supports only `release` and `cancel`.",
            None,
        )
    defaults_params = p.sub("default_settings")
    default_method: str | None = None
    default_days: int | None = None
    if defaults_params is not None:
        defaults_params.reject_unknown(
            [
                "collection_method",
                "invoice_settings",
                "description",
                "billing_cycle_anchor",
                "default_payment_method",
            ]
        )
        default_method = defaults_params.get_enum(
            "collection_method", ["charge_automatically", "send_invoice"]
        )
        invoice_settings = defaults_params.sub("invoice_settings")
        if invoice_settings is not None:
            invoice_settings.reject_unknown(["days_until_due", "account_tax_ids", "issuer"])
            default_days = invoice_settings.get_int("days_until_due", minimum=0)
    defaults = _default_settings(default_method or "charge_automatically", default_days, None)
    phase_params = p.items("phases")
    if not phase_params:
        raise StripeError(
            400, "Missing required param: phases.", code="parameter_missing", param="phases"
        )
    phases: list[JSON] = []
    privates: list[JSON] = []
    cursor = start
    for index, phase_p in enumerate(phase_params):
        phase, private = _phase(
            call, phase_p, cursor, index, {**defaults, "collection_method": default_method}
        )
        phases.append(phase)
        privates.append(private)
        cursor = phase["end_date"]
    schedule = _new_schedule(call, customer, at, defaults, end_behavior, phases, privates)
    metadata_patch(p, schedule["metadata"])
    call.store.add(schedule)
    call.state.emit("subscription_schedule.created", schedule, at=at)
    if start <= at:
        start_schedule(call.state, schedule, start)
    return call.store.render(schedule)


def _new_schedule(
    call: Call,
    customer: JSON,
    at: int,
    defaults: JSON,
    end_behavior: str,
    phases: list[JSON],
    privates: list[JSON],
) -> JSON:
    return {
        "id": call.store.new_id("sub_sched_"),
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "canceled_at": None,
        "completed_at": None,
        "created": at,
        "current_phase": None,
        "customer": customer["id"],
        "customer_account": None,
        "default_settings": defaults,
        "end_behavior": end_behavior,
        "livemode": False,
        "metadata": {},
        "pause_schedules": [],
        "phases": phases,
        "released_at": None,
        "released_subscription": None,
        "status": "not_started",
        "subscription": None,
        "test_clock": customer.get("test_clock"),
        "_phases": privates,
        "_phase_index": -1,
    }


def _default_settings(method: str, days: int | None, payment_method: str | None) -> JSON:
    return {
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": "automatic",
        "billing_thresholds": None,
        "collection_method": method,
        "default_payment_method": payment_method,
        "description": None,
        "invoice_settings": {
            "account_tax_ids": None,
            "custom_fields": None,
            "days_until_due": days,
            "description": None,
            "footer": None,
            "issuer": {"type": "self"},
        },
        "on_behalf_of": None,
        "transfer_data": None,
    }


def _from_subscription(call: Call) -> JSON:
    """``from_subscription``: the subscription, as it bills now, becomes the schedule's one
    phase. Stripe: "a subscription schedule will be created using the subscription's
    item(s), set to auto-renew using the subscription's interval. When using this parameter,
    other parameters (such as phase values) cannot be set."

    The phase runs from the current period's start to its end (``end_behavior=release``); a
    subscription that ends (``cancel_at``) gives a phase up to that end and
    ``end_behavior=cancel``, so the subscription still ends then (docs/sandboxes.md)."""
    p = call.params
    for key in p.data:
        if key not in ("from_subscription", "expand"):
            raise invalid_request(
                f"You cannot set `{key}` if `from_subscription` is set.", param=key
            )
    sub_id = p.get_str("from_subscription", required=True)
    assert sub_id is not None
    sub = call.store.require(sub_id, "subscription", param="from_subscription", status=400)
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid_request(
            f"The subscription `{sub_id}` is `{sub['status']}` and cannot be managed by a "
            "subscription schedule.",
            param="from_subscription",
        )
    if sub["schedule"]:
        raise invalid_request(
            f"The subscription `{sub_id}` is already attached to the subscription schedule "
            f"`{sub['schedule']}`.",
            param="from_subscription",
        )
    customer = call.store.objects[sub["customer"]]
    at = call.state.time_for_customer(customer)
    start, end = subscriptions.period_of(sub)
    end_behavior = "release"
    if sub["cancel_at"] is not None:
        end, end_behavior = int(sub["cancel_at"]), "cancel"
    specs = [
        ItemSpec(
            call.store.objects[item["price"]],
            item.get("quantity"),
            dict(item["metadata"]),
            [rate["id"] for rate in item.get("tax_rates") or []] or None,
        )
        for item in sub["items"]["data"]
    ]
    trial_end = sub["trial_end"] if sub["status"] == "trialing" else None
    phase: JSON = {
        "add_invoice_items": [],
        "application_fee_percent": None,
        "billing_cycle_anchor": None,
        "billing_thresholds": None,
        "collection_method": None,
        "currency": sub["currency"],
        "default_payment_method": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [{"coupon": None, "discount": d, "promotion_code": None}
                      for d in _discount_ids(sub["discounts"])],
        "end_date": end,
        "invoice_settings": None,
        "items": [
            {
                "billing_thresholds": None,
                "discounts": [],
                "metadata": dict(spec.metadata),
                "plan": spec.price["id"],
                "price": spec.price["id"],
                "quantity": spec.quantity,
                "tax_rates": [],
            }
            for spec in specs
        ],
        "metadata": {},
        "on_behalf_of": None,
        "proration_behavior": "create_prorations",
        "start_date": start,
        "transfer_data": None,
        "trial_end": trial_end,
    }  # fmt: skip
    private: JSON = {
        "items": specs,
        "add_items": [],
        "method": sub["collection_method"],
        "days": sub["days_until_due"],
        "metadata": {},
        "default_payment_method": None,
        "discounts": None,
        "trial_end": trial_end,
        "proration_behavior": "create_prorations",
        "billing_cycle_anchor": None,
    }
    defaults = _default_settings(
        sub["collection_method"], sub["days_until_due"], sub["default_payment_method"]
    )
    schedule = _new_schedule(call, customer, at, defaults, end_behavior, [phase], [private])
    schedule["status"] = "active"
    schedule["_phase_index"] = 0
    schedule["subscription"] = sub_id
    schedule["current_phase"] = {"end_date": end, "start_date": start}
    call.store.add(schedule)
    call.state.emit("subscription_schedule.created", schedule, at=at)
    before = call.store.render(sub)
    sub["schedule"] = schedule["id"]
    call.state.emit("customer.subscription.updated", sub, previous=before, at=at)
    return call.store.render(schedule)


def _discount_ids(entries: list[Any]) -> list[str]:
    return [d if isinstance(d, str) else str(d["id"]) for d in entries or []]


def next_action_time(schedule: JSON) -> int | None:
    if schedule["status"] == "not_started":
        return int(schedule["phases"][0]["start_date"])
    if schedule["status"] == "active":
        return int(schedule["phases"][schedule["_phase_index"]]["end_date"])
    return None


def start_schedule(state: State, schedule: JSON, at: int) -> None:
    before = state.store.render(schedule)
    customer = state.store.objects[schedule["customer"]]
    private = schedule["_phases"][0]
    phase = schedule["phases"][0]
    last_end = schedule["phases"][-1]["end_date"]
    spec = SubSpec(
        items=private["items"],
        collection_method=private["method"],
        days_until_due=private["days"],
        add_invoice_items=private["add_items"],
        metadata=dict(private["metadata"]),
        cancel_at=last_end if schedule["end_behavior"] == "cancel" else None,
        schedule_id=schedule["id"],
        billing_cycle_anchor=phase["start_date"],
        default_payment_method=private.get("default_payment_method"),
        discounts=private.get("discounts"),
        trial_end=private.get("trial_end"),
    )
    schedule["status"] = "active"
    schedule["_phase_index"] = 0
    schedule["current_phase"] = {"end_date": phase["end_date"], "start_date": phase["start_date"]}
    sub = subscriptions.create_subscription(state, customer, spec, phase["start_date"])
    schedule["subscription"] = sub["id"]
    state.emit("subscription_schedule.updated", schedule, previous=before, at=at)


def advance(state: State, schedule: JSON, at: int) -> None:
    """The current phase ended at ``at``: enter the next phase, or apply the end behavior."""
    index = schedule["_phase_index"]
    sub = state.store.objects.get(schedule["subscription"] or "")
    if index + 1 < len(schedule["phases"]):
        before = state.store.render(schedule)
        schedule["_phase_index"] = index + 1
        phase = schedule["phases"][index + 1]
        schedule["current_phase"] = {
            "end_date": phase["end_date"],
            "start_date": phase["start_date"],
        }
        if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
            _enter_phase(state, sub, schedule["_phases"][index + 1], at)
        state.emit("subscription_schedule.updated", schedule, previous=before, at=at)
        return
    schedule["current_phase"] = None
    schedule["status"] = "completed"
    schedule["completed_at"] = at
    if schedule["end_behavior"] == "cancel":
        if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
            sub["schedule"] = None
            subscriptions.cancel_now(state, sub, at)
            sub["schedule"] = schedule["id"]
    else:
        # "A subscription schedule is completed after the last phase is finished. When this
        # happens, the subscription is released from the schedule" (Stripe's guide; the CLI's
        # subscription_schedule.completed trigger ends a release schedule this way).
        schedule["released_subscription"] = schedule["subscription"]
        schedule["subscription"] = None
        if sub is not None:
            before = state.store.render(sub)
            sub["schedule"] = None
            state.emit("customer.subscription.updated", sub, previous=before, at=at)
    state.emit("subscription_schedule.completed", schedule, at=at)


#: ``subscription_schedule.expiring`` comes this long before a schedule ends.
EXPIRING_NOTICE = 7 * 86_400


def expiring_at(schedule: JSON) -> int | None:
    """When ``subscription_schedule.expiring`` is due (once, 7 days before the end)."""
    if schedule["status"] not in ("not_started", "active") or schedule.get("_expiring_sent"):
        return None
    return int(schedule["phases"][-1]["end_date"]) - EXPIRING_NOTICE


def send_expiring(state: State, schedule: JSON, at: int) -> None:
    schedule["_expiring_sent"] = True
    state.emit("subscription_schedule.expiring", schedule, at=at)


def abort(state: State, schedule: JSON, at: int) -> None:
    """The subscription was canceled for non-payment: the schedule is aborted."""
    schedule["status"] = "canceled"
    schedule["canceled_at"] = at
    schedule["current_phase"] = None
    state.emit("subscription_schedule.aborted", schedule, at=at)


def _enter_phase(state: State, sub: JSON, private: JSON, at: int) -> None:
    """Apply a phase to the subscription.

    At a period boundary, or when the interval changes, or with
    ``billing_cycle_anchor=phase_start``, the billing cycle restarts at the phase start and
    the new period is invoiced at once. Otherwise (Stripe's ``automatic`` anchor) the cycle
    is kept and the items change as a subscription update would change them, prorated per
    the phase's ``proration_behavior`` (``always_invoice`` invoices the prorations at once;
    a phase's ``add_invoice_items`` wait for the next invoice)."""
    before = state.store.render(sub)
    items: list[ItemSpec] = private["items"]
    add_items: list[AddItemSpec] = private["add_items"]
    first = items[0].price
    old_start, old_end = subscriptions.period_of(sub)
    sub["collection_method"] = private["method"]
    sub["days_until_due"] = private["days"]
    sub["metadata"].update(private["metadata"])
    if private.get("default_payment_method"):
        sub["default_payment_method"] = private["default_payment_method"]
    if private.get("discounts") is not None:
        sub["discounts"] = (
            discounts.parse_discounts(
                state, private["discounts"], at, customer=sub["customer"], subscription=sub["id"]
            )
            or []
        )
    same_interval = (first["recurring"]["interval"], first["recurring"]["interval_count"]) == (
        sub["_interval"],
        sub["_interval_count"],
    )
    if (
        old_start <= at < old_end
        and same_interval
        and first["currency"] == sub["currency"]
        and private.get("billing_cycle_anchor") != "phase_start"
        and sub["status"] != "trialing"
    ):
        proration = private.get("proration_behavior") or "create_prorations"
        by_price = {item["price"]: item for item in sub["items"]["data"]}
        changes = [(by_price.get(spec.price["id"]), spec) for spec in items]
        subscriptions.change_items(state, sub, changes, at, proration, at)
        _pending_add_items(state, sub, add_items, at)
        if proration == "always_invoice":
            subscriptions.invoice_prorations_now(state, sub, at)
        if state.store.render(sub) != before:
            state.emit("customer.subscription.updated", sub, previous=before, at=at)
        return
    sub["currency"] = first["currency"]
    sub["_interval"] = first["recurring"]["interval"]
    sub["_interval_count"] = first["recurring"]["interval_count"]
    sub["billing_cycle_anchor"] = at
    end = add_interval(at, sub["_interval"], sub["_interval_count"])
    natural = end
    if sub["cancel_at"] is not None and at < sub["cancel_at"] < end:
        end = sub["cancel_at"]
    sub["items"]["data"] = [
        subscriptions._new_item(state, sub["id"], s, at, at, end) for s in items
    ]
    sub["items"]["total_count"] = len(items)
    reason = "subscription_cycle" if at == old_end else "subscription_update"
    invoice = subscriptions.build_invoice(
        state,
        sub,
        at,
        reason,
        (at, end),
        (old_start, old_end),
        full_period=natural - at,
        add_items=add_items,
        auto_advance=(sub["pause_collection"] or {}).get("behavior") != "keep_as_draft",
    )
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.updated", sub, previous=before, at=at)


def _pending_add_items(state: State, sub: JSON, add_items: list[AddItemSpec], at: int) -> None:
    """A phase's one-time items, entered mid-period: pending items for the next invoice."""
    customer = state.store.objects[sub["customer"]]
    for add in add_items:
        item = invoices.new_invoice_item(
            state,
            customer,
            at=at,
            amount=add.amount,
            currency=add.currency,
            quantity=add.quantity,
            price=add.price,
            description=add.description,
            subscription_id=sub["id"],
        )
        state.emit("invoiceitem.created", item, at=at)


def _release(state: State, schedule: JSON, at: int) -> None:
    schedule["status"] = "released"
    schedule["released_at"] = at
    schedule["current_phase"] = None
    sub = state.store.objects.get(schedule["subscription"] or "")
    schedule["released_subscription"] = schedule["subscription"]
    schedule["subscription"] = None
    if sub is not None:
        before = state.store.render(sub)
        sub["schedule"] = None
        if state.store.render(sub) != before:
            state.emit("customer.subscription.updated", sub, previous=before, at=at)
    state.emit("subscription_schedule.released", schedule, at=at)


def mark_canceled(state: State, schedule: JSON, at: int) -> None:
    schedule["status"] = "canceled"
    schedule["canceled_at"] = at
    schedule["current_phase"] = None
    state.emit("subscription_schedule.canceled", schedule, at=at)


def _require(call: Call) -> JSON:
    return call.store.require(call.arg(), "subscription_schedule")


def update(call: Call) -> JSON:
    """Replace the current and future phases (a change to the current phase applies to the
    subscription at once, prorated per ``proration_behavior``), ``end_behavior`` or
    ``metadata``."""
    schedule = _require(call)
    p = call.params
    p.reject_unknown(
        ["phases", "end_behavior", "metadata", "default_settings", "proration_behavior",
         "billing_mode"]
    )  # fmt: skip
    if schedule["status"] not in ("not_started", "active"):
        raise invalid_request(
            f"You cannot update a subscription schedule that is currently in the "
            f"`{schedule['status']}` status. It must be in one of the following statuses: "
            "`not_started`, `active`."
        )
    at = call.state.time_for_customer(schedule["customer"])
    proration = (
        p.get_enum("proration_behavior", subscriptions.PRORATION_BEHAVIORS) or "create_prorations"
    )
    end_behavior = p.get_enum("end_behavior", ["cancel", "none", "release", "renew"])
    if end_behavior in ("none", "renew"):
        raise invalid_param(
            "end_behavior",
            "The dealbridge Stripe sandbox supports only `release` and `cancel`.",
            None,
        )
    before = call.store.render(schedule)
    if end_behavior is not None:
        schedule["end_behavior"] = end_behavior
    phase_params = p.items("phases")
    if phase_params:
        index = max(schedule["_phase_index"], 0)
        current_start = schedule["phases"][index]["start_date"]
        first = phase_params[0].get_timestamp("start_date", allow_now=True, now=at)
        if schedule["status"] == "active" and first is not None and first != current_start:
            raise invalid_param(
                "phases[0][start_date]",
                "You can not modify the start date of the current phase.",
                None,
            )
        cursor = first if first is not None else current_start
        kept = schedule["phases"][:index] if schedule["status"] == "active" else []
        kept_private = schedule["_phases"][:index] if schedule["status"] == "active" else []
        phases, privates = [], []
        defaults = schedule["default_settings"]
        for number, phase_p in enumerate(phase_params):
            phase, private = _phase(call, phase_p, cursor, number, defaults)
            phases.append(phase)
            privates.append(private)
            cursor = phase["end_date"]
        schedule["phases"] = kept + phases
        schedule["_phases"] = kept_private + privates
        if schedule["status"] == "active":
            current = schedule["phases"][index]
            schedule["current_phase"] = {
                "end_date": current["end_date"],
                "start_date": current["start_date"],
            }
            sub = call.store.objects.get(schedule["subscription"] or "")
            if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
                _apply_current_phase(call.state, schedule, sub, privates[0], at, proration)
    elif end_behavior is not None and schedule["status"] == "active":
        sub = call.store.objects.get(schedule["subscription"] or "")
        if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
            sub_before = call.store.render(sub)
            _follow_end(schedule, sub)
            if call.store.render(sub) != sub_before:
                call.state.emit("customer.subscription.updated", sub, previous=sub_before, at=at)
    metadata_patch(p, schedule["metadata"])
    after = call.store.render(schedule)
    if after != before:
        call.state.emit("subscription_schedule.updated", schedule, previous=before, at=at)
    return after


def _apply_current_phase(
    state: State, schedule: JSON, sub: JSON, private: JSON, at: int, proration: str
) -> None:
    """The current phase changed: its items replace the subscription's now."""
    before = state.store.render(sub)
    by_price = {item["price"]: item for item in sub["items"]["data"]}
    changes = [(by_price.get(spec.price["id"]), spec) for spec in private["items"]]
    subscriptions.change_items(state, sub, changes, at, proration, at)
    sub["metadata"].update(private["metadata"])
    _follow_end(schedule, sub)
    if proration == "always_invoice":
        subscriptions.invoice_prorations_now(state, sub, at)
    if state.store.render(sub) != before:
        state.emit("customer.subscription.updated", sub, previous=before, at=at)


def _follow_end(schedule: JSON, sub: JSON) -> None:
    """A subscription managed by a schedule ends where the schedule says: at the last
    phase's end with ``end_behavior=cancel``, never by itself with ``release``."""
    sub["cancel_at"] = (
        schedule["phases"][-1]["end_date"] if schedule["end_behavior"] == "cancel" else None
    )
    sub["cancel_at_period_end"] = False


def retrieve(call: Call) -> JSON:
    return call.store.render(_require(call))


def cancel(call: Call) -> JSON:
    schedule = _require(call)
    call.params.reject_unknown(["invoice_now", "prorate"])
    if schedule["status"] not in ("not_started", "active"):
        raise invalid_request(
            f"You cannot cancel a subscription schedule that is currently in the "
            f"`{schedule['status']}` status. It must be in one of the following statuses: "
            "`not_started`, `active`."
        )
    at = call.state.time_for_customer(schedule["customer"])
    sub = call.store.objects.get(schedule["subscription"] or "")
    if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
        sub["schedule"] = None
        subscriptions.cancel_now(call.state, sub, at)
        sub["schedule"] = schedule["id"]
    mark_canceled(call.state, schedule, at)
    return call.store.render(schedule)


def release(call: Call) -> JSON:
    schedule = _require(call)
    call.params.reject_unknown(["preserve_cancel_date"])
    preserve = call.params.get_bool("preserve_cancel_date")
    if schedule["status"] not in ("not_started", "active"):
        raise invalid_request(
            f"You cannot release a subscription schedule that is currently in the "
            f"`{schedule['status']}` status. It must be in one of the following statuses: "
            "`not_started`, `active`."
        )
    at = call.state.time_for_customer(schedule["customer"])
    sub = call.store.objects.get(schedule["subscription"] or "")
    if sub is not None and not preserve and schedule["end_behavior"] == "cancel":
        sub["cancel_at"] = None
    _release(call.state, schedule, at)
    return call.store.render(schedule)


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        [
            "customer",
            "limit",
            "starting_after",
            "ending_before",
            "scheduled",
            "canceled_at",
            "completed_at",
            "created",
            "released_at",
        ]
    )
    customer = p.get_str("customer")
    scheduled = p.get_bool("scheduled")
    items = [
        s
        for s in call.store.all("subscription_schedule")
        if (customer is None or s["customer"] == customer)
        and (scheduled is None or (s["status"] == "not_started") == scheduled)
    ]
    return call.store.list_response(items, p, "/v1/subscription_schedules")


def _phase_discounts(owner: Params | None) -> list[JSON]:
    """A phase's or a phase item's ``discounts`` as Stripe shows them on the schedule: what
    was asked for (``coupon``, ``discount`` or ``promotion_code``), redeemed when the phase
    bills."""
    if owner is None:
        return []
    return [
        {
            "coupon": d.get_str("coupon"),
            "discount": d.get_str("discount"),
            "promotion_code": d.get_str("promotion_code"),
        }
        for d in owner.items("discounts")
    ]
