"""Short leases, renewed while the work runs: a live worker keeps its claim however long a
call takes, a dead one's claim is taken over within ``SHORT_LEASE``.

The keeper's thread ticks every ``RENEW_EVERY``; the tests call its tick (``renew_now``)
themselves and move the frozen clock, instead of waiting for the thread.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from connector.billing.event_types import HANDLED_STRIPE_EVENTS, STRIPE_EVENT_TYPES
from connector.runtime import Runtime
from connector.services.inbox import EventHandlers, claim_next, process_due_events
from connector.store.db import Database
from connector.store.lease import RENEW_EVERY, SHORT_LEASE, LeaseKeeper
from connector.store.models import InboxEvent
from tests.support import FrozenClock, make_config
from tests.support.stripe_events import load_event, raw_event

pytestmark = pytest.mark.postgresql(
    reason="claims and lease renewals are row updates under SKIP LOCKED on PostgreSQL"
)


def _store(db: Database, clock: FrozenClock) -> int:
    event = load_event("invoice.paid__ach.json")
    with db.session() as session:
        row = InboxEvent(
            source="stripe",
            event_id=event["id"],
            event_type=event["type"],
            payload=raw_event("invoice.paid__ach.json"),
            received_at=clock(),
            next_attempt_at=clock(),
        )
        session.add(row)
        session.flush()
        return row.id


def _registry() -> EventHandlers:
    return EventHandlers(
        "stripe", known_types=STRIPE_EVENT_TYPES, handled_types=HANDLED_STRIPE_EVENTS
    )


def _someone_else_claims(db: Database, clock: FrozenClock) -> bool:
    with db.session() as session:
        return claim_next(session, "stripe", clock(), SHORT_LEASE) is not None


def test_the_lease_is_short_and_renewed_three_times_within_it() -> None:
    assert timedelta(seconds=30) >= SHORT_LEASE
    assert RENEW_EVERY * 3 <= SHORT_LEASE


def test_a_live_worker_keeps_its_event_while_the_handler_outlasts_the_lease(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    runtime = Runtime(make_config(sqlite_db.url), db=sqlite_db, clock=clock)
    row_id = _store(sqlite_db, clock)
    registry = _registry()
    stolen: list[bool] = []

    @registry.on("invoice.paid")
    def slow(rt: Runtime, _event: dict[str, Any]) -> str:
        for _ in range(6):  # three leases long, renewed on the way
            clock.advance(seconds=RENEW_EVERY.total_seconds())
            assert rt.leases.renew_now() == 1
            stolen.append(_someone_else_claims(sqlite_db, clock))
        return "slow but alive"

    assert process_due_events(runtime, registry) == 1
    assert stolen == [False] * 6
    with sqlite_db.session() as session:
        row = session.get(InboxEvent, row_id)
        assert row is not None and (row.status, row.attempts) == ("done", 1)
    runtime.close()


def test_a_dead_workers_event_is_taken_over_once_the_short_lease_runs_out(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    _store(sqlite_db, clock)
    keeper = LeaseKeeper(sqlite_db, clock)
    assert _someone_else_claims(sqlite_db, clock)  # then its process dies: nobody renews
    clock.advance(seconds=SHORT_LEASE.total_seconds() - 1)
    assert keeper.renew_now() == 0
    assert not _someone_else_claims(sqlite_db, clock)
    clock.advance(seconds=2)
    assert _someone_else_claims(sqlite_db, clock)
