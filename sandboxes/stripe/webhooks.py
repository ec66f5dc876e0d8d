"""Webhook endpoints (``/v1/webhook_endpoints``), signed deliveries and retries."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import requests

from . import pretty
from .call import Call
from .errors import invalid_param
from .params import metadata_patch
from .state import Delivery, State
from .store import random_token

JSON = dict[str, Any]

_EVENT_NAME = re.compile(r"^[a-z_]+(\.[a-z_]+)+$|^\*$")
_TIMEOUT_SECONDS = 10


def sign(secret: str, payload: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value Stripe computes for ``payload`` at ``timestamp``."""
    signed = f"{timestamp}.{payload}".encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _enabled_events(call: Call) -> list[str] | None:
    events = call.params.str_list("enabled_events")
    if events is None:
        return None
    for index, name in enumerate(events):
        if not _EVENT_NAME.match(name):
            raise invalid_param(
                f"enabled_events[{index}]", f"Invalid enabled_events[{index}]: {name}", None
            )
    return events


def _url(call: Call, *, required: bool) -> str | None:
    url = call.params.get_str("url", required=required)
    if url is not None and not re.match(r"^https?://", url):
        raise invalid_param("url", "Invalid URL: URL must be a valid http(s) URL.", "url_invalid")
    return url


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["url", "enabled_events", "description", "metadata", "api_version", "connect"])
    url = _url(call, required=True)
    p.require("enabled_events")
    events = _enabled_events(call)
    endpoint: JSON = {
        "id": call.store.new_id("we_"),
        "object": "webhook_endpoint",
        "api_version": p.get_str("api_version"),
        "application": None,
        "created": int(call.state.now()),
        "description": p.get_str("description"),
        "enabled_events": events,
        "livemode": False,
        "metadata": {},
        "status": "enabled",
        "url": url,
        "_secret": "whsec_" + random_token(32),
    }
    metadata_patch(p, endpoint["metadata"])
    call.store.add(endpoint)
    body = call.store.render(endpoint)
    body["secret"] = endpoint["_secret"]
    return body


def retrieve(call: Call) -> JSON:
    return call.store.render(call.store.require(call.arg(), "webhook_endpoint"))


def update(call: Call) -> JSON:
    endpoint = call.store.require(call.arg(), "webhook_endpoint")
    p = call.params
    p.reject_unknown(["url", "enabled_events", "description", "metadata", "disabled"])
    url = _url(call, required=False)
    events = _enabled_events(call)
    disabled = p.get_bool("disabled")
    given, description = p.get_nullable_str("description")
    if url is not None:
        endpoint["url"] = url
    if events is not None:
        endpoint["enabled_events"] = events
    if disabled is not None:
        endpoint["status"] = "disabled" if disabled else "enabled"
    if given:
        endpoint["description"] = description
    metadata_patch(p, endpoint["metadata"])
    return call.store.render(endpoint)


def delete(call: Call) -> JSON:
    endpoint = call.store.require(call.arg(), "webhook_endpoint")
    endpoint["_deleted"] = True
    for delivery in call.state.deliveries:
        if delivery.endpoint_id == endpoint["id"] and not delivery.done:
            _finish(call.state, delivery)
    return {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}


def list_(call: Call) -> JSON:
    call.params.reject_unknown(["limit", "starting_after", "ending_before"])
    return call.store.list_response(
        call.store.all("webhook_endpoint"), call.params, "/v1/webhook_endpoints"
    )


# -- delivery ----------------------------------------------------------------------------------


def _subscribed(endpoint: JSON, event_type: str) -> bool:
    enabled = endpoint.get("enabled_events") or []
    return "*" in enabled or event_type in enabled


def enqueue(state: State, event: JSON) -> None:
    """Queue ``event`` for every enabled endpoint subscribed to its type (called on emit)."""
    for endpoint in state.store.all("webhook_endpoint"):
        if endpoint["status"] != "enabled" or not _subscribed(endpoint, event["type"]):
            continue
        state.delivery_seq += 1
        state.deliveries.append(
            Delivery(
                id=state.delivery_seq,
                event_id=event["id"],
                endpoint_id=endpoint["id"],
                next_attempt_at=int(state.now()),
            )
        )
        event["pending_webhooks"] += 1


def pending(state: State) -> int:
    with state.lock:
        return sum(1 for d in state.deliveries if not d.done)


def _finish(state: State, delivery: Delivery) -> None:
    delivery.done = True
    event = state.store.objects.get(delivery.event_id)
    if event is not None and event["pending_webhooks"] > 0:
        event["pending_webhooks"] -= 1


def deliver_due(state: State) -> int:
    """POST every delivery due now; returns the number of attempts. Never holds the lock
    while talking to a receiver (which may call the sandbox back)."""
    with state.lock:
        now = int(state.now())
        due = [d for d in state.deliveries if not d.done and d.next_attempt_at <= now]
        due.sort(key=lambda d: (state.store.objects[d.event_id]["_seq"], d.id))
        jobs = []
        for delivery in due:
            endpoint = state.store.get(delivery.endpoint_id, "webhook_endpoint")
            if endpoint is None:
                _finish(state, delivery)
                continue
            event = state.store.render(state.store.objects[delivery.event_id])
            payload = pretty.dumps(event)
            jobs.append((delivery, endpoint["url"], endpoint["_secret"], payload))
    for delivery, url, secret, payload in jobs:
        status = _post(url, secret, payload, int(state.signing_clock()))
        with state.lock:
            _record_attempt(state, delivery, status)
    return len(jobs)


def _post(url: str, secret: str, payload: str, timestamp: int) -> int | None:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": sign(secret, payload, timestamp),
    }
    try:
        response = requests.post(
            url, data=payload.encode(), headers=headers, timeout=_TIMEOUT_SECONDS
        )
    except requests.RequestException:
        return None
    return response.status_code


def _record_attempt(state: State, delivery: Delivery, status: int | None) -> None:
    delivery.attempts += 1
    delivery.last_status = status
    delivery.history.append((int(state.now()), status))
    if status is not None and 200 <= status < 300:
        _finish(state, delivery)
        return
    if delivery.attempts >= state.webhook_max_attempts:
        _finish(state, delivery)
        return
    backoff = state.webhook_retry_base_seconds * 2 ** (delivery.attempts - 1)
    delivery.next_attempt_at = int(state.now()) + backoff
