"""Reconciliation: re-read Stripe's events since a cursor into the inbox.

Stripe keeps 30 days of events. Listing the handled types since the last run and storing
them in the inbox (duplicates are refused by the unique event id) means a webhook outage of
hours loses nothing, and a repaired record goes through exactly the webhook's code path.
"""

from __future__ import annotations

import json
from datetime import timedelta

from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.runtime import Runtime
from connector.services.inbox import store_event
from connector.store.cursors import read_cursor, save_cursor

CURSOR = "stripe.events"
#: Events can become visible in the list slightly after their `created` second.
OVERLAP = timedelta(minutes=5)
FIRST_RUN_LOOKBACK = timedelta(days=3)


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
