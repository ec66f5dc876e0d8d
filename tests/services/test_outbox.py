"""The outbox: queued with the state change, sent in order per key, retried, never lost."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connector.crm.base import CrmRejected, CrmUnavailable, WriteResult
from connector.jobs import default_registry
from connector.runtime import Runtime
from connector.services.outbox import (
    BatchedSender,
    NotRetryable,
    PermanentError,
    SendResult,
    SingleSender,
    claim,
    drain_outbox,
    enqueue,
    retry_message,
)
from connector.store.db import Database
from connector.store.models import AuditEntry, Cursor, OutboxMessage
from tests.support import FrozenClock, make_config

pytestmark = pytest.mark.postgresql(
    reason="the heads of the keys are claimed with FOR UPDATE SKIP LOCKED on PostgreSQL"
)

LEASE = timedelta(minutes=10)


class Recorder:
    """A sender that records what it sent and fails on demand."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.calls: list[list[str]] = []
        self.fail: dict[str, Exception] = {}
        self.down: Exception | None = None

    def single(self, _runtime: Runtime, payload: dict[str, Any]) -> None:
        name = payload["n"]
        if name in self.fail:
            raise self.fail[name]
        self.sent.append(name)

    def batch(self, _runtime: Runtime, payloads: list[dict[str, Any]]) -> list[SendResult]:
        self.calls.append([p["n"] for p in payloads])
        if self.down is not None:
            raise self.down
        results = []
        for payload in payloads:
            failure = self.fail.get(payload["n"])
            if failure is None:
                self.sent.append(payload["n"])
                results.append(SendResult.sent())
            elif getattr(failure, "retryable", True):
                results.append(SendResult.retry(str(failure)))
            else:
                results.append(SendResult.reject(str(failure)))
        return results


def _queue(
    db: Database,
    *items: tuple[str, str],
    kind: str = "crm.update_deal",
    now: datetime | None = None,
) -> list[int]:
    ids = []
    with db.session() as session:
        for key, name in items:
            message = enqueue(session, kind, key, {"n": name}, now=now)
            assert message is not None
            ids.append(message.id)
    return ids


def _rows(db: Database) -> dict[str, OutboxMessage]:
    with db.session() as session:
        return {m.payload["n"]: m for m in session.scalars(sa.select(OutboxMessage))}


def _runtime(db: Database, clock: FrozenClock, **jobs: int) -> Runtime:
    return Runtime(make_config(db.url, {"jobs": jobs}), db=db, clock=clock)


# --------------------------------------------------------------------------- enqueue


def test_a_queued_write_commits_with_the_state_change_that_owes_it(db: Database) -> None:
    with db.session() as session:
        session.add(Cursor(name="deals", value="42"))
        enqueue(session, "crm.update_deal", "deal:1", {"n": "a"})
    assert set(_rows(db)) == {"a"}


def test_a_queued_write_is_rolled_back_with_a_failed_state_change(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        enqueue(session, "crm.update_deal", "deal:1", {"n": "a"})
        raise RuntimeError("the activation failed")
    assert _rows(db) == {}


def test_a_repeated_dedupe_key_is_a_no_op_that_keeps_the_callers_transaction(
    db: Database,
) -> None:
    with db.session() as session:
        enqueue(session, "crm.update_deal", "deal:1", {"n": "a"}, dedupe_key="deal:1:won")
    with db.session() as session:
        again = enqueue(session, "crm.update_deal", "deal:1", {"n": "b"}, dedupe_key="deal:1:won")
        session.add(Cursor(name="deals", value="43"))
    assert again is None
    assert set(_rows(db)) == {"a"}
    with db.session() as session:
        assert session.get(Cursor, "deals") is not None


# --------------------------------------------------------------------------- order


def test_messages_of_one_key_are_sent_in_the_order_they_were_queued(
    store_runtime: Runtime, db: Database
) -> None:
    _queue(db, ("deal:1", "a1"), ("deal:1", "a2"), ("deal:1", "a3"))
    recorder = Recorder()
    assert drain_outbox(store_runtime, {"crm.update_deal": SingleSender(recorder.single)}) == 3
    assert recorder.sent == ["a1", "a2", "a3"]
    assert {m.status for m in _rows(db).values()} == {"done"}


def test_a_failing_message_blocks_later_messages_of_its_key_but_not_other_keys(
    store_runtime: Runtime, db: Database
) -> None:
    _queue(db, ("deal:1", "a1"), ("deal:2", "b1"), ("deal:1", "a2"), ("deal:2", "b2"))
    recorder = Recorder()
    recorder.fail["a1"] = CrmUnavailable("row lock")
    drain_outbox(store_runtime, {"crm.update_deal": SingleSender(recorder.single)})
    assert recorder.sent == ["b1", "b2"]
    rows = _rows(db)
    assert (rows["a1"].status, rows["a1"].attempts) == ("pending", 1)
    assert (rows["a2"].status, rows["a2"].attempts) == ("pending", 0)


def test_a_blocked_key_is_sent_in_order_once_its_head_succeeds_on_retry(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    _queue(db, ("deal:1", "a1"), ("deal:1", "a2"))
    recorder = Recorder()
    senders = {"crm.update_deal": SingleSender(recorder.single)}
    recorder.fail["a1"] = CrmUnavailable("timeout")
    drain_outbox(store_runtime, senders)
    del recorder.fail["a1"]
    assert drain_outbox(store_runtime, senders) == 0  # still backing off
    clock.advance(seconds=30)
    drain_outbox(store_runtime, senders)
    assert recorder.sent == ["a1", "a2"]


def test_a_parked_message_blocks_its_key_until_an_operator_retries_it(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    ids = _queue(db, ("deal:1", "a1"), ("deal:1", "a2"))
    recorder = Recorder()
    senders = {"crm.update_deal": SingleSender(recorder.single)}
    recorder.fail["a1"] = CrmRejected("Stage is restricted")
    drain_outbox(store_runtime, senders)
    clock.advance(days=2)
    assert drain_outbox(store_runtime, senders) == 0
    del recorder.fail["a1"]
    with db.session() as session:
        retry_message(session, ids[0], actor="cli:ops", now=clock())
    drain_outbox(store_runtime, senders)
    assert recorder.sent == ["a1", "a2"]


def test_messages_of_a_kind_without_a_sender_wait_and_block_their_key(
    store_runtime: Runtime, db: Database
) -> None:
    _queue(db, ("deal:1", "x1"), kind="crm.unknown_write")
    _queue(db, ("deal:1", "a2"))
    recorder = Recorder()
    assert drain_outbox(store_runtime, {"crm.update_deal": SingleSender(recorder.single)}) == 0
    assert _rows(db)["x1"].status == "pending"


# --------------------------------------------------------------------------- failures


def test_a_permanent_error_parks_the_message_at_once_with_the_error(
    store_runtime: Runtime, db: Database
) -> None:
    _queue(db, ("deal:1", "a1"))
    recorder = Recorder()
    recorder.fail["a1"] = PermanentError("Amount__c: value out of range")
    drain_outbox(store_runtime, {"crm.update_deal": SingleSender(recorder.single)})
    row = _rows(db)["a1"]
    assert (row.status, row.attempts) == ("parked", 1)
    assert row.last_error is not None
    assert row.last_error.startswith("PermanentError: Amount__c: value out of range")


def test_any_exception_flagged_not_retryable_is_permanent(
    store_runtime: Runtime, db: Database
) -> None:
    class Refused(Exception):
        retryable = False

    _queue(db, ("deal:1", "a1"))
    recorder = Recorder()
    recorder.fail["a1"] = Refused("no")
    drain_outbox(store_runtime, {"crm.update_deal": SingleSender(recorder.single)})
    assert _rows(db)["a1"].status == "parked"


def test_a_retryable_failure_backs_off_exponentially_and_parks_after_max_attempts(
    db: Database, clock: FrozenClock
) -> None:
    runtime = _runtime(db, clock, max_attempts=3, backoff_base_seconds=10)
    _queue(db, ("deal:1", "a1"))
    recorder = Recorder()
    recorder.fail["a1"] = TimeoutError("read timed out")
    senders = {"crm.update_deal": SingleSender(recorder.single)}
    delays = []
    for _ in range(2):
        drain_outbox(runtime, senders)
        row = _rows(db)["a1"]
        delays.append((row.next_attempt_at - clock()).total_seconds())
        clock.now = row.next_attempt_at
    drain_outbox(runtime, senders)
    assert delays == [10, 20]
    assert (_rows(db)["a1"].status, _rows(db)["a1"].attempts) == ("parked", 3)


def test_a_retry_after_longer_than_the_backoff_is_respected(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    _queue(db, ("deal:1", "a1"))
    recorder = Recorder()
    recorder.fail["a1"] = CrmUnavailable("REQUEST_LIMIT_EXCEEDED", retry_after=3600)
    drain_outbox(store_runtime, {"crm.update_deal": SingleSender(recorder.single)})
    assert _rows(db)["a1"].next_attempt_at == clock() + timedelta(hours=1)


def test_a_message_whose_worker_died_is_sent_after_the_lease_expires(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    _queue(db, ("deal:1", "a1"))
    with db.session() as session:
        assert len(claim(session, "crm.update_deal", clock(), 10, LEASE)) == 1
    recorder = Recorder()
    senders = {"crm.update_deal": SingleSender(recorder.single)}
    assert drain_outbox(store_runtime, senders) == 0
    clock.advance(minutes=10)
    assert drain_outbox(store_runtime, senders) == 1
    assert recorder.sent == ["a1"]


def test_retrying_a_delivered_message_is_refused(db: Database, clock: FrozenClock) -> None:
    (message_id,) = _queue(db, ("deal:1", "a1"))
    with db.session() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        row.status = "done"
    with pytest.raises(NotRetryable), db.session() as session:
        retry_message(session, message_id, actor="cli:ops", now=clock())


def test_a_retry_is_audited(db: Database, clock: FrozenClock) -> None:
    (message_id,) = _queue(db, ("deal:1", "a1"))
    with db.session() as session:
        retry_message(session, message_id, actor="cli:ops", now=clock())
    with db.session() as session:
        entry = session.scalars(sa.select(AuditEntry)).one()
    assert (entry.action, entry.subject_id, entry.actor) == (
        "outbox.retry",
        str(message_id),
        "cli:ops",
    )


# --------------------------------------------------------------------------- batches


def test_a_batched_sender_gets_at_most_its_batch_size_per_call(
    store_runtime: Runtime, db: Database
) -> None:
    _queue(db, *[(f"invoice:{n}", f"i{n}") for n in range(5)], kind="crm.upsert_invoice")
    recorder = Recorder()
    drain_outbox(store_runtime, {"crm.upsert_invoice": BatchedSender(recorder.batch, 2)})
    assert recorder.calls == [["i0", "i1"], ["i2", "i3"], ["i4"]]


def test_the_batch_size_may_come_from_the_runtime(store_runtime: Runtime, db: Database) -> None:
    _queue(db, *[(f"invoice:{n}", f"i{n}") for n in range(3)], kind="crm.upsert_invoice")
    recorder = Recorder()
    sender = BatchedSender(recorder.batch, lambda rt: 3 if rt is store_runtime else 1)
    drain_outbox(store_runtime, {"crm.upsert_invoice": sender})
    assert recorder.calls == [["i0", "i1", "i2"]]


def test_a_batch_holds_at_most_one_message_per_key(store_runtime: Runtime, db: Database) -> None:
    _queue(db, ("account:1", "a1"), ("account:1", "a2"), ("account:2", "b1"), kind="crm.acct")
    recorder = Recorder()
    drain_outbox(store_runtime, {"crm.acct": BatchedSender(recorder.batch, 200)})
    assert recorder.calls == [["a1", "b1"], ["a2"]]


def test_a_partly_failed_batch_settles_each_message_by_its_own_result(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    _queue(db, ("invoice:1", "ok"), ("invoice:2", "busy"), ("invoice:3", "bad"), kind="crm.inv")
    recorder = Recorder()
    recorder.fail["busy"] = CrmUnavailable("UNABLE_TO_LOCK_ROW")
    recorder.fail["bad"] = CrmRejected("FIELD_CUSTOM_VALIDATION_EXCEPTION: Amount")
    drain_outbox(store_runtime, {"crm.inv": BatchedSender(recorder.batch, 200)})
    rows = _rows(db)
    assert rows["ok"].status == "done"
    assert (rows["busy"].status, rows["busy"].next_attempt_at) == (
        "pending",
        clock() + timedelta(seconds=30),
    )
    assert (rows["bad"].status, rows["bad"].last_error) == (
        "parked",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION: Amount",
    )


def test_the_crm_adapters_write_results_are_accepted_as_batch_results(
    store_runtime: Runtime, db: Database
) -> None:
    _queue(db, ("invoice:1", "ok"), ("invoice:2", "bad"), kind="crm.inv")

    def upsert(_runtime: Runtime, payloads: list[dict[str, Any]]) -> list[WriteResult]:
        return [
            WriteResult(key="in_1", ok=True, crm_id="a0X1"),
            WriteResult(key="in_2", ok=False, error="DUPLICATE_VALUE", retryable=False),
        ]

    drain_outbox(store_runtime, {"crm.inv": BatchedSender(upsert, 200)})
    assert {n: m.status for n, m in _rows(db).items()} == {"ok": "done", "bad": "parked"}


def test_a_crm_outage_leaves_the_whole_batch_pending_and_a_later_drain_sends_it_in_order(
    store_runtime: Runtime, db: Database, clock: FrozenClock
) -> None:
    _queue(
        db,
        ("account:1", "a1"),
        ("account:2", "b1"),
        ("account:1", "a2"),
        kind="crm.acct",
    )
    recorder = Recorder()
    senders = {"crm.acct": BatchedSender(recorder.batch, 200)}
    recorder.down = CrmUnavailable("503 Service Unavailable")
    drain_outbox(store_runtime, senders)
    rows = _rows(db)
    assert {n: (m.status, m.attempts) for n, m in rows.items()} == {
        "a1": ("pending", 1),
        "b1": ("pending", 1),
        "a2": ("pending", 0),
    }
    recorder.down = None
    clock.advance(seconds=30)
    drain_outbox(store_runtime, senders)
    assert recorder.sent == ["a1", "b1", "a2"]
    assert {m.status for m in _rows(db).values()} == {"done"}


def test_a_sender_answering_the_wrong_number_of_results_fails_the_batch_for_retry(
    store_runtime: Runtime, db: Database
) -> None:
    _queue(db, ("invoice:1", "i1"), ("invoice:2", "i2"), kind="crm.inv")
    sender = BatchedSender(lambda _rt, _payloads: [SendResult.sent()], 200)
    drain_outbox(store_runtime, {"crm.inv": sender})
    assert {m.status for m in _rows(db).values()} == {"pending"}


# --------------------------------------------------------------------------- concurrency


def test_two_workers_at_once_send_different_messages(store_runtime: Runtime, db: Database) -> None:
    # Queued at the workers' own "now": only the claim's lease keeps the message the first
    # worker holds from being due again for the second (a message dated after a frozen
    # clock would hide that, whether the claim set a lease or not).
    _queue(db, ("deal:1", "a1"), ("deal:2", "b1"), now=store_runtime.clock())
    first_is_sending = threading.Event()
    second_is_done = threading.Event()
    sent: list[str] = []

    def send(_runtime: Runtime, payload: dict[str, Any]) -> None:
        if not first_is_sending.is_set():
            first_is_sending.set()  # the first worker holds its message, claim committed,
            assert second_is_done.wait(timeout=20)  # while the second one drains
        sent.append(payload["n"])

    senders = {"crm.update_deal": SingleSender(send)}
    store_runtime.config.section("jobs")  # warm the runtime's lazy parts before threads
    first = threading.Thread(
        target=drain_outbox, args=(store_runtime, senders), kwargs={"limit": 1}
    )
    first.start()
    assert first_is_sending.wait(timeout=20)
    drain_outbox(store_runtime, senders, limit=1)  # the second worker
    second_is_done.set()
    first.join(timeout=60)

    assert sorted(sent) == ["a1", "b1"]
    assert {(m.status, m.attempts) for m in _rows(db).values()} == {("done", 1)}


def test_a_claim_held_by_one_postgres_worker_is_skipped_by_another(
    postgres_db: Database, clock: FrozenClock
) -> None:
    _queue(postgres_db, ("deal:1", "a1"), ("deal:2", "b1"))
    with postgres_db.session() as worker_a:
        (mine,) = claim(worker_a, "crm.update_deal", clock(), 1, LEASE)
        with postgres_db.session() as worker_b:
            worker_b.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            theirs = claim(worker_b, "crm.update_deal", clock(), 10, LEASE)
    assert [c.payload["n"] for c in theirs] == ["b1"]
    assert mine.payload["n"] == "a1"


def test_the_outbox_is_drained_by_a_worker_job() -> None:
    assert "drain_outbox" in {job.name for job in default_registry().jobs(("worker",))}


# --------------------------------------------------------------------------- metrics


def test_deliveries_are_counted_by_kind_and_outcome(db: Database, clock: FrozenClock) -> None:
    runtime = _runtime(db, clock, max_attempts=1)
    recorder = Recorder()
    recorder.fail["b"] = CrmRejected("no such field")
    _queue(db, ("deal:1", "a"), ("deal:2", "b"))
    drain_outbox(runtime, {"crm.update_deal": SingleSender(recorder.single)})
    counter = runtime.metrics.outbox_sent
    assert counter.labels(kind="crm.update_deal", outcome="done")._value.get() == 1
    assert counter.labels(kind="crm.update_deal", outcome="parked")._value.get() == 1
