"""Filling batches: in a burst, lingering senders send full batches only, and the rest once
the burst is over (or has lasted too long); nothing waits without a ``FillWait``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from connector.runtime import Runtime
from connector.services.outbox import (
    BatchedSender,
    FillWait,
    SendResult,
    SingleSender,
    drain_outbox,
    enqueue,
)
from connector.store.db import Database
from tests.support import FrozenClock, make_config

KIND = "crm.upsert_invoice"
FOLLOW_UP = "credit.settle_account"


class Sent:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.singles: list[str] = []

    def batch(self, _runtime: Runtime, payloads: list[dict[str, Any]]) -> list[SendResult]:
        self.batches.append([p["n"] for p in payloads])
        return [SendResult.sent() for _ in payloads]

    def single(self, _runtime: Runtime, payload: dict[str, Any]) -> None:
        self.singles.append(payload["n"])


class Upstream:
    """Whether more work is on its way, as the worker's inbox would say."""

    def __init__(self) -> None:
        self.busy = False

    def __call__(self, _session: Session, _now: datetime) -> bool:
        return self.busy


def _runtime(db: Database, clock: FrozenClock) -> Runtime:
    return Runtime(make_config(db.url), db=db, clock=clock)


def _queue(runtime: Runtime, names: list[str], kind: str = KIND) -> None:
    with runtime.db.session() as session:
        for name in names:
            enqueue(session, kind, f"invoice:{name}", {"n": name}, now=runtime.clock())


def _senders(sent: Sent, *, unit: int = 3, max_batch: int = 6) -> dict[str, Any]:
    return {
        KIND: BatchedSender(sent.batch, max_batch, linger=True, fill_unit=unit),
        FOLLOW_UP: SingleSender(sent.single, linger=True),
    }


def _fill(upstream: Upstream, *, timed: bool = True) -> FillWait:
    return FillWait(
        quiet=timedelta(seconds=1),
        longest=timedelta(seconds=10),
        upstream_busy=upstream,
        timed=timed,
    )


def _names(count: int) -> list[str]:
    return [f"in_{i:03}" for i in range(count)]


def test_while_events_wait_upstream_only_full_batches_are_sent(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    runtime, sent, upstream = _runtime(sqlite_db, clock), Sent(), Upstream()
    _queue(runtime, _names(7))
    upstream.busy = True
    clock.advance(seconds=5)

    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))

    assert [len(b) for b in sent.batches] == [6]


def test_the_rest_goes_once_the_upstream_is_done_and_nothing_joined_it_for_the_quiet_time(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    runtime, sent, upstream = _runtime(sqlite_db, clock), Sent(), Upstream()
    _queue(runtime, _names(2))

    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))
    assert sent.batches == []  # just queued: more may join it
    clock.advance(seconds=1)
    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))

    assert sent.batches == [["in_000", "in_001"]]


def test_a_message_joining_the_batch_restarts_the_quiet_time(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    runtime, sent, upstream = _runtime(sqlite_db, clock), Sent(), Upstream()
    _queue(runtime, ["in_a"])
    clock.advance(seconds=0.8)
    _queue(runtime, ["in_b"])
    clock.advance(seconds=0.8)

    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))
    assert sent.batches == []
    clock.advance(seconds=0.2)
    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))

    assert sent.batches == [["in_a", "in_b"]]


def test_a_partial_batch_goes_after_the_longest_wait_however_busy_the_upstream(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    runtime, sent, upstream = _runtime(sqlite_db, clock), Sent(), Upstream()
    upstream.busy = True
    _queue(runtime, ["in_old"])
    clock.advance(seconds=9)
    _queue(runtime, ["in_new"])

    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))
    assert sent.batches == []
    clock.advance(seconds=1)
    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))

    assert sent.batches == [["in_old", "in_new"]]


def test_a_lingering_follow_up_waits_out_the_burst_then_goes_once(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    runtime, sent, upstream = _runtime(sqlite_db, clock), Sent(), Upstream()
    upstream.busy = True
    _queue(runtime, ["settle-acme"], kind=FOLLOW_UP)
    clock.advance(seconds=5)

    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))
    assert sent.singles == []
    upstream.busy = False
    drain_outbox(runtime, _senders(sent), fill=_fill(upstream))

    assert sent.singles == ["settle-acme"]


def test_sync_once_does_not_wait_for_time_only_for_the_upstream(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    runtime, sent, upstream = _runtime(sqlite_db, clock), Sent(), Upstream()
    _queue(runtime, _names(2))
    upstream.busy = True

    drain_outbox(runtime, _senders(sent), fill=_fill(upstream, timed=False))
    assert sent.batches == []
    upstream.busy = False
    drain_outbox(runtime, _senders(sent), fill=_fill(upstream, timed=False))

    assert sent.batches == [["in_000", "in_001"]]  # the clock never moved


def test_without_a_fill_wait_every_drain_sends_what_it_has(
    sqlite_db: Database, clock: FrozenClock
) -> None:
    runtime, sent = _runtime(sqlite_db, clock), Sent()
    _queue(runtime, _names(2))
    _queue(runtime, ["settle-acme"], kind=FOLLOW_UP)

    drain_outbox(runtime, _senders(sent))

    assert sent.batches == [["in_000", "in_001"]]
    assert sent.singles == ["settle-acme"]


def test_senders_that_do_not_linger_never_wait(sqlite_db: Database, clock: FrozenClock) -> None:
    runtime, sent, upstream = _runtime(sqlite_db, clock), Sent(), Upstream()
    upstream.busy = True
    _queue(runtime, _names(2))
    senders = {KIND: BatchedSender(sent.batch, 6)}

    drain_outbox(runtime, senders, fill=_fill(upstream))

    assert sent.batches == [["in_000", "in_001"]]
