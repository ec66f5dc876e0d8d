"""Reconciliation: re-read Stripe's events since a cursor into the inbox.

Stripe keeps 30 days of events. Listing the handled types since the last run and storing
them in the inbox (duplicates are refused by the unique event id) means a webhook outage of
hours loses nothing, and a repaired record goes through exactly the webhook's code path.

Catching up in seconds, not at the next ``reconcile_seconds``: ``request_catch_up`` marks a
catch-up as due, and the ``catch_up_stripe`` clock job (every few seconds) runs it. It is
requested when a process starts (it may have been stopped while Stripe changed things) and
when intake sees a gap: an event delivered long after Stripe created it is a retry, so the
endpoint was failing and other events may still be waiting in Stripe's retry schedule.
When the cursor is older than Stripe's 30-day window, the events no longer tell everything:
the catch-up re-reads every linked customer's objects instead (a full reconcile).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.runtime import Runtime
from connector.services.inbox import store_event
from connector.services.stripe_refresh import refresh_from_stripe
from connector.store.cursors import forget_cursor, read_cursor, save_cursor

log = logging.getLogger(__name__)

CURSOR = "stripe.events"
#: Events can become visible in the list slightly after their `created` second.
OVERLAP = timedelta(minutes=5)
FIRST_RUN_LOOKBACK = timedelta(days=3)
#: How long Stripe keeps events; a cursor older than this (less a margin) cannot be caught up
#: from ``/v1/events``.
EVENT_RETENTION = timedelta(days=30) - timedelta(hours=1)
#: Set while a catch-up is due (its value says why).
CATCH_UP_CURSOR = "stripe.events.catch_up"
#: An event delivered this long after it was created was retried by Stripe: a gap.
LATE_DELIVERY = timedelta(minutes=2)


def request_catch_up(runtime: Runtime, reason: str) -> None:
    """Mark a catch-up with Stripe as due; the ``catch_up_stripe`` job runs it within seconds."""
    with runtime.db.session() as session:
        if read_cursor(session, CATCH_UP_CURSOR) is None:
            save_cursor(session, CATCH_UP_CURSOR, reason[:200], runtime.clock())


def note_delivery(runtime: Runtime, created: object, now: datetime) -> bool:
    """Intake's gap check: an event Stripe created long before delivering it was retried, so
    others may still be waiting in Stripe's retry schedule; catch up now. True if requested."""
    if not isinstance(created, int) or isinstance(created, bool):
        return False
    if now.timestamp() - created < LATE_DELIVERY.total_seconds():
        return False
    request_catch_up(runtime, "an event arrived late (redelivered after a failure)")
    return True


def catch_up_stripe(runtime: Runtime) -> int:
    """Clock job, every few seconds: run a requested catch-up. Returns events stored (or
    objects re-read, after a gap longer than Stripe keeps events)."""
    with runtime.db.session() as session:
        reason = read_cursor(session, CATCH_UP_CURSOR)
        if reason is None:
            return 0
        forget_cursor(session, CATCH_UP_CURSOR)  # a request arriving meanwhile runs again
    log.info("catching up with Stripe: %s", reason)
    return catch_up(runtime)


def catch_up(runtime: Runtime) -> int:
    """Everything that happened in Stripe since the cursor: from ``/v1/events`` within
    Stripe's 30 days, else a full reconcile of every linked customer's objects."""
    now = runtime.clock()
    with runtime.db.session() as session:
        last = read_cursor(session, CURSOR)
    if last is not None and int(last) < int((now - EVENT_RETENTION).timestamp()):
        log.warning("the last Stripe event seen is older than Stripe keeps events: full reconcile")
        result = refresh_from_stripe(runtime)
        with runtime.db.session() as session:
            save_cursor(session, CURSOR, str(int(now.timestamp())), now)
        return result.invoices + result.subscriptions + result.credit_notes
    return reconcile_stripe_events(runtime)


def reconcile_stripe_events(runtime: Runtime) -> int:
    """Store every handled event created since the cursor that the inbox lacks."""
    now = runtime.clock()
    with runtime.db.session() as session:
        last = read_cursor(session, CURSOR)
    since = int(last) if last else int((now - FIRST_RUN_LOOKBACK).timestamp())
    gte = since - int(OVERLAP.total_seconds())
    stored = 0
    newest = since
    for event in runtime.stripe.iter_events(gte, sorted(HANDLED_STRIPE_EVENTS)):
        newest = max(newest, int(event.created))
        # Decimals are strings on the wire; a duplicate was already received by webhook.
        payload = json.dumps(event.to_dict(), default=str)
        if store_event(runtime, "stripe", event.id, event.type, payload) == "stored":
            stored += 1
    with runtime.db.session() as session:
        last = read_cursor(session, CURSOR)  # another run may have moved it meanwhile
        save_cursor(session, CURSOR, str(max(newest, int(last or 0))), now)
    return stored
