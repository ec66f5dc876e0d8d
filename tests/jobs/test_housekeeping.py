"""Housekeeping prunes finished inbox events and delivered outbox writes, and nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from connector.jobs.housekeeping import prune_inbox, prune_outbox
from connector.runtime import Runtime
from connector.store.db import Database
from connector.store.models import InboxEvent, OutboxMessage
from tests.support import FrozenClock, make_config

RETENTION = timedelta(days=30)


@pytest.fixture
def runtime(db: Database, clock: FrozenClock) -> Runtime:
    return Runtime(make_config(db.url), db=db, clock=clock)


def add_event(runtime: Runtime, event_id: str, status: str, processed: datetime | None) -> None:
    with runtime.db.session() as session:
        session.add(
            InboxEvent(
                source="stripe", event_id=event_id, event_type="invoice.paid", payload="{}",
                received_at=processed or runtime.clock(), status=status, attempts=1,
                next_attempt_at=runtime.clock(), processed_at=processed,
            )
        )  # fmt: skip


def add_message(runtime: Runtime, key: str, status: str, done: datetime | None) -> None:
    with runtime.db.session() as session:
        session.add(
            OutboxMessage(
                kind="crm.invoice", ordering_key=key, dedupe_key=key, payload={},
                created_at=runtime.clock() - RETENTION * 2, status=status, attempts=1,
                next_attempt_at=runtime.clock(), done_at=done,
            )
        )  # fmt: skip


def event_ids(runtime: Runtime) -> set[str]:
    with runtime.db.session() as session:
        return set(session.scalars(select(InboxEvent.event_id)))


def message_keys(runtime: Runtime) -> set[str]:
    with runtime.db.session() as session:
        return {key for key in session.scalars(select(OutboxMessage.dedupe_key)) if key}


def test_events_handled_before_the_retention_period_are_pruned(runtime: Runtime) -> None:
    old = runtime.clock() - RETENTION - timedelta(minutes=1)
    add_event(runtime, "evt_done", "done", old)
    add_event(runtime, "evt_ignored", "ignored", old)
    assert prune_inbox(runtime) == 2
    assert event_ids(runtime) == set()


def test_recent_events_and_unsettled_ones_are_kept(runtime: Runtime) -> None:
    old = runtime.clock() - RETENTION - timedelta(days=5)
    add_event(runtime, "evt_recent", "done", runtime.clock() - RETENTION + timedelta(minutes=1))
    add_event(runtime, "evt_parked", "parked", old)
    add_event(runtime, "evt_pending", "pending", None)
    assert prune_inbox(runtime) == 0
    assert event_ids(runtime) == {"evt_recent", "evt_parked", "evt_pending"}


def test_writes_delivered_before_the_retention_period_are_pruned(runtime: Runtime) -> None:
    add_message(runtime, "old", "done", runtime.clock() - RETENTION - timedelta(minutes=1))
    add_message(runtime, "recent", "done", runtime.clock() - timedelta(days=1))
    assert prune_outbox(runtime) == 1
    assert message_keys(runtime) == {"recent"}


def test_parked_and_pending_writes_are_never_pruned(runtime: Runtime) -> None:
    add_message(runtime, "parked", "parked", None)
    add_message(runtime, "pending", "pending", None)
    assert prune_outbox(runtime) == 0
    assert message_keys(runtime) == {"parked", "pending"}


def test_the_retention_period_is_configurable(db: Database, clock: FrozenClock) -> None:
    runtime = Runtime(make_config(db.url, {"jobs": {"retention_days": 7}}), db=db, clock=clock)
    add_message(runtime, "week-old", "done", clock() - timedelta(days=8))
    assert prune_outbox(runtime) == 1
