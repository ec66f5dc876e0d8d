"""The worker processes each stored event once, retries failures with backoff, parks the rest."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connector.billing.event_types import HANDLED_STRIPE_EVENTS, STRIPE_EVENT_TYPES
from connector.jobs import default_registry
from connector.runtime import Runtime
from connector.services.inbox import (
    EventHandlers,
    NotReplayable,
    backoff_delay,
    claim_next,
    process_due_events,
    replay_event,
)
from connector.store.db import Database
from connector.store.models import AuditEntry, InboxEvent
from tests.support import FrozenClock, make_config
from tests.support.stripe_events import load_event, raw_event

pytestmark = pytest.mark.postgresql(
    reason="claims are SELECT ... FOR UPDATE SKIP LOCKED with a lease on PostgreSQL"
)

LEASE = timedelta(minutes=10)


def _registry() -> EventHandlers:
    return EventHandlers(
        "stripe", known_types=STRIPE_EVENT_TYPES, handled_types=HANDLED_STRIPE_EVENTS
    )


def _store(db: Database, at: datetime, name: str = "invoice.paid__ach.json", **values: Any) -> int:
    event = load_event(name)
    row = InboxEvent(
        source="stripe",
        event_id=values.pop("event_id", event["id"]),
        event_type=event["type"],
        payload=raw_event(name),
        received_at=at,
        next_attempt_at=at,
        **values,
    )
    with db.session() as session:
        session.add(row)
        session.flush()
        return row.id


def _row(db: Database, row_id: int) -> InboxEvent:
    with db.session() as session:
        row = session.get(InboxEvent, row_id)
        assert row is not None
        return row


def _failing(message: str = "CRM said no") -> Any:
    def handler(_runtime: Runtime, _event: dict[str, Any]) -> str | None:
        raise RuntimeError(message)

    return handler


def _runtime(db: Database, clock: FrozenClock, **jobs: int) -> Runtime:
    return Runtime(make_config(db.url, {"jobs": jobs}), db=db, clock=clock)


def test_a_handled_event_is_passed_to_its_handler_and_marked_done_with_the_outcome(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    seen: list[dict[str, Any]] = []
    registry = _registry()

    @registry.on("invoice.paid")
    def handler(_runtime: Runtime, event: dict[str, Any]) -> str | None:
        seen.append(event)
        return "invoice in_1 recorded as paid"

    row_id = _store(db, clock())
    assert process_due_events(store_runtime, registry) == 1
    assert seen == [load_event("invoice.paid__ach.json")]
    row = _row(db, row_id)
    assert (row.status, row.outcome, row.processed_at, row.attempts) == (
        "done",
        "invoice in_1 recorded as paid",
        clock(),
        1,
    )


def test_events_stored_while_a_pass_runs_wait_for_the_next_pass(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    """A pass handles what had arrived when it started: under a stream of webhooks a pass
    that took each new event as it came never ended, and handled them a few at a time."""
    registry = _registry()
    handled: list[str] = []

    @registry.on("invoice.paid")
    def handler(_runtime: Runtime, event: dict[str, Any]) -> str | None:
        handled.append(event["id"])
        if len(handled) == 1:  # a webhook arrives while the first one is being handled
            _store(db, clock(), event_id="evt_arrived_meanwhile")
        return None

    _store(db, clock(), event_id="evt_first")

    assert process_due_events(store_runtime, registry) == 1
    assert process_due_events(store_runtime, registry) == 1
    assert process_due_events(store_runtime, registry) == 0
    assert len(handled) == 2


def test_a_done_event_is_not_processed_again(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    calls: list[str] = []
    registry = _registry()
    registry.on("invoice.paid")(lambda _rt, event: calls.append(event["id"]) or None)
    _store(db, clock())
    process_due_events(store_runtime, registry)
    clock.advance(days=1)
    assert process_due_events(store_runtime, registry) == 0
    assert len(calls) == 1


def test_a_failed_attempt_records_the_error_and_retries_after_the_base_delay(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    registry = _registry()
    registry.on("invoice.paid")(_failing("CRM said no"))
    row_id = _store(db, clock())
    process_due_events(store_runtime, registry)
    row = _row(db, row_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == clock() + timedelta(seconds=30)
    assert row.last_error is not None
    assert row.last_error.splitlines()[0] == "RuntimeError: CRM said no"
    assert "in handler" in row.last_error  # the failing frame, for the operator


def test_a_failed_event_is_not_retried_before_its_backoff_has_passed(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    registry = _registry()
    registry.on("invoice.paid")(_failing())
    _store(db, clock())
    process_due_events(store_runtime, registry)
    clock.advance(seconds=29)
    assert process_due_events(store_runtime, registry) == 0
    clock.advance(seconds=1)
    assert process_due_events(store_runtime, registry) == 1


def test_the_retry_delay_doubles_after_each_failure(db: Database, clock: FrozenClock) -> None:
    runtime = _runtime(db, clock, max_attempts=6, backoff_base_seconds=10)
    registry = _registry()
    registry.on("invoice.paid")(_failing())
    row_id = _store(db, clock())
    delays = []
    for _ in range(4):
        process_due_events(runtime, registry)
        row = _row(db, row_id)
        delays.append((row.next_attempt_at - clock()).total_seconds())
        clock.now = row.next_attempt_at
    assert delays == [10, 20, 40, 80]


def test_the_retry_delay_is_capped_at_six_hours() -> None:
    assert backoff_delay(30, 10) == timedelta(seconds=30 * 512)  # 4h16m
    assert backoff_delay(30, 11) == timedelta(hours=6)
    assert backoff_delay(30, 1000) == timedelta(hours=6)


def test_an_event_is_parked_after_the_configured_number_of_attempts(
    db: Database, clock: FrozenClock
) -> None:
    runtime = _runtime(db, clock, max_attempts=3, backoff_base_seconds=10)
    registry = _registry()
    registry.on("invoice.paid")(_failing("still failing"))
    row_id = _store(db, clock())
    for _ in range(3):
        process_due_events(runtime, registry)
        clock.advance(hours=1)
    row = _row(db, row_id)
    assert (row.status, row.attempts) == ("parked", 3)
    assert row.last_error is not None and row.last_error.startswith("RuntimeError: still failing")
    clock.advance(days=7)
    assert process_due_events(runtime, registry) == 0


def test_a_recorded_error_never_contains_a_secret(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    secret = store_runtime.config.secrets.stripe_api_key
    assert secret is not None
    registry = _registry()
    registry.on("invoice.paid")(_failing(f"auth failed with key {secret.reveal()}"))
    row_id = _store(db, clock())
    process_due_events(store_runtime, registry)
    error = _row(db, row_id).last_error
    assert error is not None
    assert secret.reveal() not in error
    assert "[redacted]" in error


def test_an_event_whose_type_has_no_handler_is_parked_not_lost(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    row_id = _store(db, clock())
    assert process_due_events(store_runtime, _registry()) == 1
    row = _row(db, row_id)
    assert row.status == "parked"
    assert row.last_error == "no handler registered for stripe invoice.paid"


def test_ignored_events_are_never_handed_to_a_handler(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    registry = _registry()
    registry.on("invoice.paid")(_failing())
    _store(db, clock(), status="ignored")
    assert process_due_events(store_runtime, registry) == 0


def test_an_event_stored_with_a_later_timestamp_is_still_due_before_its_first_attempt(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    registry = _registry()
    registry.on("invoice.paid")(lambda _rt, _ev: "ok")
    _store(db, clock() + timedelta(days=3))  # e.g. stored by a wall clock ahead of the test's
    assert process_due_events(store_runtime, registry) == 1


def test_two_workers_at_once_take_different_events(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    first = _store(db, clock(), event_id="evt_a")
    second = _store(db, clock(), event_id="evt_b")
    both_busy = threading.Barrier(2, timeout=20)
    handled: dict[str, list[str]] = {}
    registry = _registry()

    @registry.on("invoice.paid")
    def handler(_runtime: Runtime, _event: dict[str, Any]) -> str | None:
        both_busy.wait()  # each worker holds one event while the other takes the next
        return threading.current_thread().name

    def work(name: str) -> None:
        handled[name] = [str(process_due_events(store_runtime, registry))]

    threads = [threading.Thread(target=work, args=(n,), name=n) for n in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert handled == {"w1": ["1"], "w2": ["1"]}
    assert {_row(db, first).outcome, _row(db, second).outcome} == {"w1", "w2"}


def test_a_claim_held_by_one_postgres_worker_is_skipped_not_waited_for_by_another(
    postgres_db: Database, clock: FrozenClock
) -> None:
    first = _store(postgres_db, clock(), event_id="evt_a")
    second = _store(postgres_db, clock(), event_id="evt_b")
    with postgres_db.session() as worker_a:
        claim_a = claim_next(worker_a, "stripe", clock(), LEASE)
        # worker A's transaction is still open and holds its row lock
        with postgres_db.session() as worker_b:
            worker_b.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            claim_b = claim_next(worker_b, "stripe", clock(), LEASE)
    assert claim_a is not None and claim_b is not None
    assert (claim_a.id, claim_b.id) == (first, second)


def test_an_event_whose_worker_died_is_claimed_again_when_the_lease_expires(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    row_id = _store(db, clock())
    with db.session() as session:
        assert claim_next(session, "stripe", clock(), LEASE) is not None  # then the worker dies
    registry = _registry()
    registry.on("invoice.paid")(lambda _rt, _ev: "ok")
    assert process_due_events(store_runtime, registry) == 0  # leased, not due
    clock.advance(minutes=10)
    assert process_due_events(store_runtime, registry) == 1
    row = _row(db, row_id)
    assert (row.status, row.attempts) == ("done", 2)


def test_a_worker_that_overran_its_lease_does_not_overwrite_the_new_claim(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    row_id = _store(db, clock())
    registry = _registry()

    @registry.on("invoice.paid")
    def slow(_runtime: Runtime, _event: dict[str, Any]) -> str | None:
        # While this handler runs, its lease expires and another worker claims the event.
        clock.advance(minutes=11)
        with db.session() as session:
            claim_next(session, "stripe", clock(), LEASE)
        return "late"

    process_due_events(store_runtime, registry, limit=1)
    row = _row(db, row_id)
    assert (row.status, row.attempts, row.outcome) == ("processing", 2, None)


def test_an_event_that_keeps_losing_its_worker_is_parked(db: Database, clock: FrozenClock) -> None:
    runtime = _runtime(db, clock, max_attempts=2)
    row_id = _store(db, clock())
    for _ in range(2):
        with db.session() as session:
            claim_next(session, "stripe", clock(), LEASE)
        clock.advance(minutes=10)
    registry = _registry()
    registry.on("invoice.paid")(lambda _rt, _ev: "ok")
    process_due_events(runtime, registry)
    row = _row(db, row_id)
    assert row.status == "parked"
    assert row.last_error is not None and "lease expired" in row.last_error


def test_replay_requeues_a_parked_event_and_audits_who_did_it(
    db: Database, clock: FrozenClock
) -> None:
    row_id = _store(db, clock(), status="parked", attempts=8, last_error="boom")
    with db.session() as session:
        replay_event(session, row_id, actor="cli:finance", now=clock())
    row = _row(db, row_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, clock())
    with db.session() as session:
        entry = session.scalars(sa.select(AuditEntry)).one()
    assert (entry.actor, entry.action, entry.subject_id) == (
        "cli:finance",
        "inbox.replay",
        str(row_id),
    )
    assert entry.details["previous"]["status"] == "parked"


def test_a_replayed_event_is_processed_again(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    calls: list[str] = []
    registry = _registry()
    registry.on("invoice.paid")(lambda _rt, event: calls.append(event["id"]) or "again")
    row_id = _store(db, clock())
    process_due_events(store_runtime, registry)
    with db.session() as session:
        replay_event(session, row_id, actor="cli:ops", now=clock())
    assert process_due_events(store_runtime, registry) == 1
    assert len(calls) == 2


def test_an_event_being_processed_cannot_be_replayed(db: Database, clock: FrozenClock) -> None:
    row_id = _store(db, clock())
    with db.session() as session:
        claim_next(session, "stripe", clock(), LEASE)
    with pytest.raises(NotReplayable), db.session() as session:
        replay_event(session, row_id, actor="cli:ops", now=clock())


def test_the_inbox_is_processed_by_a_worker_job_on_the_worker_interval() -> None:
    (job,) = [j for j in default_registry().jobs(("worker",)) if j.name == "process_inbox"]
    assert job.interval(Runtime(make_config("sqlite://", {"jobs": {"worker_seconds": 7}}))) == 7
