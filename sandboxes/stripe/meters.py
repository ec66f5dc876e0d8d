"""Billing meters (``/v1/billing/meters``) and meter events (``/v1/billing/meter_events``):
the usage that metered prices bill in arrears.

A metered price names its meter (``recurring[meter]``). At the end of each billing period
the subscription's invoice bills the usage of the period just ended: the meter's
aggregation (``sum``, ``count`` or ``last``) of the customer's events whose ``timestamp``
falls in it. Meter events are stored, not processed asynchronously, so they count at once.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from . import money, versions
from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .state import State
from .store import random_token

JSON = dict[str, Any]

_KIND = "billing.meter"
_EVENT_KIND = "billing.meter_event"


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["display_name", "event_name", "default_aggregation", "customer_mapping",
         "value_settings", "event_time_window"]
    )  # fmt: skip
    display_name = p.get_str("display_name", required=True)
    event_name = p.get_str("event_name", required=True)
    aggregation = p.sub("default_aggregation")
    if aggregation is None:
        raise StripeError(
            400,
            "Missing required param: default_aggregation.",
            code="parameter_missing",
            param="default_aggregation",
        )
    aggregation.reject_unknown(["formula"])
    formula = aggregation.get_enum("formula", ["count", "last", "sum"], required=True)
    if any(m["event_name"] == event_name for m in call.store.all(_KIND) if m["status"] == "active"):
        raise invalid_param(
            "event_name", f"An active meter with event_name `{event_name}` already exists.", None
        )
    customer_key = "stripe_customer_id"
    mapping = p.sub("customer_mapping")
    if mapping is not None:
        mapping.reject_unknown(["event_payload_key", "type"])
        mapping.get_enum("type", ["by_id"], required=True)
        customer_key = mapping.get_str("event_payload_key", required=True) or customer_key
    value_key = "value"
    settings = p.sub("value_settings")
    if settings is not None:
        settings.reject_unknown(["event_payload_key"])
        value_key = settings.get_str("event_payload_key", required=True) or value_key
    now = int(call.state.now())
    meter: JSON = {
        "id": call.store.new_id("mtr_"),
        "object": _KIND,
        "created": now,
        "customer_mapping": {"event_payload_key": customer_key, "type": "by_id"},
        "default_aggregation": {"formula": formula},
        "display_name": display_name,
        "event_name": event_name,
        "event_time_window": p.get_enum("event_time_window", ["day", "hour"]),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {"event_payload_key": value_key},
    }
    call.store.add(meter)
    return call.store.render(meter)


def _meter(call: Call) -> JSON:
    meter = call.store.get(call.arg(), _KIND)
    if meter is None:
        raise no_such("billing.meter", call.arg())
    return meter


def retrieve(call: Call) -> JSON:
    return call.store.render(_meter(call))


def update(call: Call) -> JSON:
    meter = _meter(call)
    call.params.reject_unknown(["display_name"])
    name = call.params.get_str("display_name")
    if name is not None:
        meter["display_name"] = name
        meter["updated"] = int(call.state.now())
    return call.store.render(meter)


def deactivate(call: Call) -> JSON:
    meter = _meter(call)
    call.params.reject_unknown([])
    meter["status"] = "inactive"
    meter["status_transitions"]["deactivated_at"] = meter["updated"] = int(call.state.now())
    return call.store.render(meter)


def reactivate(call: Call) -> JSON:
    meter = _meter(call)
    call.params.reject_unknown([])
    meter["status"] = "active"
    meter["updated"] = int(call.state.now())
    return call.store.render(meter)


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["status", "limit", "starting_after", "ending_before"])
    status = p.get_enum("status", ["active", "inactive"])
    return call.store.list_kind(
        _KIND, lambda m: status is None or m["status"] == status, p, "/v1/billing/meters"
    )


def create_event(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["event_name", "payload", "timestamp", "identifier"])
    event_name = p.get_str("event_name", required=True)
    payload_p = p.sub("payload")
    if payload_p is None:
        raise StripeError(
            400, "Missing required param: payload.", code="parameter_missing", param="payload"
        )
    payload = {k: v for k, v in payload_p.data.items() if isinstance(v, str)}
    meter = next((m for m in call.store.all(_KIND) if m["event_name"] == event_name), None)
    if meter is None or meter["status"] != "active":
        raise invalid_request(
            f"No active meter was found for the event name `{event_name}`.",
            param="event_name",
            code="meter_event_no_meter_found",
        )
    customer_id = payload.get(meter["customer_mapping"]["event_payload_key"])
    if customer_id is None or call.store.get(customer_id, "customer") is None:
        raise invalid_param(
            f"payload[{meter['customer_mapping']['event_payload_key']}]",
            f"No such customer: '{customer_id}'",
            "resource_missing",
        )
    value_key = meter["value_settings"]["event_payload_key"]
    if meter["default_aggregation"]["formula"] != "count":
        text = payload.get(value_key)
        if text is None or money.parse_decimal(text) is None:
            raise invalid_param(
                f"payload[{value_key}]",
                f"The meter event payload must contain a numeric `{value_key}`.",
                None,
            )
    at = call.state.time_for_customer(customer_id)
    timestamp = p.get_int("timestamp", minimum=0)
    identifier = p.get_str("identifier") or random_token(24)
    if any(e["identifier"] == identifier for e in call.store.all(_EVENT_KIND)):
        raise invalid_param(
            "identifier", f"An event with identifier `{identifier}` already exists.", None
        )
    event: JSON = {
        "id": call.store.new_id("mtrev_"),
        "object": _EVENT_KIND,
        "created": at,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "payload": payload,
        "timestamp": at if timestamp is None else timestamp,
        "_meter": meter["id"],
    }
    call.store.add(event)
    body = call.store.render(event)
    body.pop("id")
    return body


def create_usage_record(call: Call) -> JSON:
    """``/v1/subscription_items/:id/usage_records`` (API versions before 2025-03-31): usage of
    a metered item without a meter; ``action=set`` replaces what the period had so far."""
    if not call.before(versions.BASIL):
        raise StripeError(
            404,
            f"Unrecognized request URL (POST: /v1/subscription_items/{call.arg()}/usage_records). "
            "Usage records were removed in API version 2025-03-31; report usage with billing "
            "meter events.",
        )
    p = call.params
    p.reject_unknown(["quantity", "timestamp", "action"])
    item, sub = _subscription_item(call, call.arg())
    price = call.store.objects[item["price"]]
    if price["recurring"]["usage_type"] != "metered":
        raise invalid_request(
            "Usage records can only be created for subscription items on a metered price."
        )
    quantity = p.get_int("quantity", required=True, minimum=0)
    at = call.state.time_for_customer(sub["customer"])
    timestamp = p.get_timestamp("timestamp", allow_now=True, now=at)
    record: JSON = {
        "id": call.store.new_id("mbur_"),
        "object": "usage_record",
        "livemode": False,
        "quantity": quantity,
        "subscription_item": item["id"],
        "timestamp": at if timestamp is None else timestamp,
        "_action": p.get_enum("action", ["increment", "set"]) or "increment",
        "_customer": sub["customer"],
        "_price": price["id"],
    }
    call.store.add(record)
    return call.store.render(record)


def _subscription_item(call: Call, item_id: str) -> tuple[JSON, JSON]:
    for sub in call.store.all("subscription"):
        for item in sub["items"]["data"]:
            if item["id"] == item_id:
                return item, sub
    raise no_such("subscription_item", item_id)


def _usage_records(state: State, price: JSON, customer_id: str, period: tuple[int, int]) -> int:
    start, end = period
    total = 0
    records = sorted(
        (
            r
            for r in state.store.all("usage_record")
            if r["_price"] == price["id"]
            and r["_customer"] == customer_id
            and start <= r["timestamp"] < end
        ),
        key=lambda r: (r["timestamp"], r["_seq"]),
    )
    for record in records:
        total = record["quantity"] if record["_action"] == "set" else total + record["quantity"]
    return total


def usage(state: State, price: JSON, customer_id: str, period: tuple[int, int]) -> int:
    """The billable quantity of a metered ``price`` for ``customer_id`` over ``period``."""
    meter_id = price["recurring"].get("meter")
    meter = state.store.objects.get(meter_id or "")
    if meter is None:
        return _usage_records(state, price, customer_id, period)
    start, end = period
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    events = sorted(
        (
            e
            for e in state.store.all(_EVENT_KIND)
            if e["_meter"] == meter["id"]
            and e["payload"].get(customer_key) == customer_id
            and start <= e["timestamp"] < end
        ),
        key=lambda e: (e["timestamp"], e["_seq"]),
    )
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return len(events)
    values = [money.parse_decimal(e["payload"].get(value_key, "0")) or Fraction(0) for e in events]
    if formula == "last":
        total = values[-1] if values else Fraction(0)
    else:
        total = sum(values, Fraction(0))
    return money.round_half_up(total)
