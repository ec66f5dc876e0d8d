"""The sandbox's whole in-memory state, its clocks and event recording."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .store import Store

JSON = dict[str, Any]

#: The account's default API version; events are rendered in it (the shapes follow it).
API_VERSION = "2026-10-28.endive"


@dataclass
class RequestInfo:
    id: str
    idempotency_key: str | None


@dataclass
class Delivery:
    """One event to one webhook endpoint; retried with exponential backoff."""

    id: int
    event_id: str
    endpoint_id: str
    next_attempt_at: int
    attempts: int = 0
    done: bool = False
    last_status: int | None = None
    history: list[tuple[int, int | None]] = field(default_factory=list)


class State:
    def __init__(
        self,
        now: Callable[[], int],
        *,
        search_lag_seconds: int = 0,
        webhook_max_attempts: int = 4,
        webhook_retry_base_seconds: int = 3600,
        signing_clock: Callable[[], int] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.store = Store()
        self.store.renderers["event"] = render_event
        self.now = now
        self.signing_clock = signing_clock or (lambda: int(time.time()))
        self.search_lag_seconds = search_lag_seconds
        self.webhook_max_attempts = webhook_max_attempts
        self.webhook_retry_base_seconds = webhook_retry_base_seconds
        self.base_url = ""
        self.request: RequestInfo | None = None
        self.deliveries: list[Delivery] = []
        self.delivery_seq = 0

    # -- transactions: a refused request must not take effect --------------------------------

    def begin(self) -> tuple[int, int]:
        """Start an undoable unit of work (a write request, a preview); returns the mark
        ``rollback`` needs. The store journals each object the work reaches."""
        self.store.begin()
        return len(self.deliveries), self.delivery_seq

    def commit(self) -> None:
        self.store.commit()

    def rollback(self, mark: tuple[int, int]) -> None:
        """Undo the work since ``begin``: objects (events included) as they were, the
        webhook deliveries it queued dropped."""
        self.store.rollback()
        deliveries, delivery_seq = mark
        del self.deliveries[deliveries:]
        self.delivery_seq = delivery_seq

    # -- time --------------------------------------------------------------------------------

    def clock_time(self, clock_id: str | None) -> int:
        if clock_id is None:
            return int(self.now())
        clock = self.store.objects.get(clock_id)
        return int(clock["frozen_time"]) if clock is not None else int(self.now())

    def time_for_customer(self, customer: JSON | str | None) -> int:
        if isinstance(customer, str):
            customer = self.store.objects.get(customer)
        if customer is None:
            return int(self.now())
        return self.clock_time(customer.get("test_clock"))

    # -- events ------------------------------------------------------------------------------

    def emit(
        self,
        event_type: str,
        obj: JSON,
        *,
        previous: JSON | None = None,
        at: int | None = None,
    ) -> JSON:
        from . import webhooks  # local: webhooks depends on State

        # The object as it is now, kept as JSON text: events are read far less often than
        # they are written (seeding writes hundreds of thousands), so parsing waits.
        text = self.store.render_json(obj)
        changed = None
        if previous is not None:
            changed = previous_attributes(previous, json.loads(text))
        if at is None:
            at = self._time_of(obj)
        request = self.request
        event: JSON = {
            "id": self.store.new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": at,
            "data": None,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {
                "id": request.id if request else None,
                "idempotency_key": request.idempotency_key if request else None,
            },
            "type": event_type,
            "_data": text,
            "_previous": changed,
        }
        self.store.add(event)
        webhooks.enqueue(self, event)
        return event

    def _time_of(self, obj: JSON) -> int:
        clock = obj.get("test_clock")
        if isinstance(clock, str):
            return self.clock_time(clock)
        if obj.get("object") == "test_helpers.test_clock":
            return int(obj["frozen_time"])
        customer = obj.get("customer")
        if isinstance(customer, str):
            return self.time_for_customer(customer)
        return int(self.now())


def render_event(event: JSON) -> JSON:
    """An event with its ``data`` parsed from the JSON kept when it was recorded."""
    body = {k: v for k, v in event.items() if not k.startswith("_")}
    body["request"] = dict(event["request"])
    data: JSON = {"object": json.loads(event["_data"])}
    if event["_previous"] is not None:
        data["previous_attributes"] = copy.deepcopy(event["_previous"])
    body["data"] = data
    return body


def previous_attributes(before: JSON, after: JSON) -> JSON:
    """Stripe's ``previous_attributes``: the changed fields with their old values."""
    changed: JSON = {}
    for key, old in before.items():
        new = after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and key in ("metadata",):
            changed[key] = {k: old.get(k) for k in set(old) | set(new) if old.get(k) != new.get(k)}
        else:
            changed[key] = old
    return changed
