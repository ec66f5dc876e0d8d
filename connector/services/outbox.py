"""The outbox: writes we owe (to the CRM, Stripe, subscribers), queued with the state change.

Queue a write inside the transaction that makes it necessary, so both commit or neither::

    with runtime.db.session() as session:
        plan.status = "active"
        outbox.enqueue(session, "crm.update_deal", f"deal:{deal_id}", {"deal_id": ...})

The worker's ``drain_outbox`` job sends what is due through the sender named for each
``kind`` in its dispatch table (``jobs/dispatch.py``). A sender is a service's public
function, single or batched::

    def send_deal_update(runtime: Runtime, payload: dict[str, Any]) -> None: ...

    def send_invoice_upserts(runtime: Runtime, payloads: list[dict[str, Any]]) -> list[WriteResult]:
        ...

    OutboxSenders({
        "crm.update_deal": SingleSender(send_deal_update),
        "crm.upsert_invoice": BatchedSender(send_invoice_upserts, max_batch=crm_batch_size),
    })

The outbox also carries follow-up work between use cases ("this invoice changed: settle the
account's credit"): the service that owes it enqueues a message of its kind in the
transaction of its change, and another service's function handles it like any sender.

Failures (the exception protocol)
---------------------------------
* An exception whose ``retryable`` attribute is ``False`` (``PermanentError``, or the CRM's
  ``CrmRejected``/``CrmAuthError``/``CrmNotFound``) is permanent: the message is ``parked``
  at once with the error -- a person must look, then ``dealbridge outbox retry ID``.
* Any other exception is retryable (``RetryableError``, ``CrmUnavailable``, a timeout, a
  bug): the message goes back to ``pending`` with exponential backoff from
  ``jobs.backoff_base_seconds`` (or the exception's ``retry_after`` seconds, if longer) and is
  parked after ``jobs.max_attempts`` attempts.
* A batched sender returns one result per payload, in order: anything with ``ok``,
  ``error`` and ``retryable`` (``SendResult`` here, or the CRM adapter's ``WriteResult``).
  Items succeed, retry or park individually. If the whole call raises, every message of the
  batch is treated as above (a CRM outage leaves them all pending; nothing is lost).

Order
-----
Messages of one ``ordering_key`` are delivered strictly in ``id`` order: only the *head* of
a key (no earlier message of that key that is not ``done``) is ever sent, so a message that
waits for a retry or is parked blocks the later messages of its key -- and only of its key.
A batch therefore holds at most one message per key; a burst for one key takes one call per
message. There is no coalescing: every queued write is sent (writes are whole-record
upserts, so coalescing would only save calls, and keeping each makes the audit trail exact).

Filling batches (``FillWait``)
------------------------------
Events that arrive together should cost one full batch, not one call each as they trickle
through. A sender marked ``linger=True`` therefore holds a *partial* batch back while more
is on its way -- the upstream is busy (e.g. Stripe events still waiting in the inbox) or a
lingering message was queued less than ``FillWait.quiet`` ago -- but never once its oldest
message has waited ``FillWait.longest``. Full batches (``fill_unit`` messages) go at once.
A lingering single sender is one whose message absorbs later work while it waits (the
account's balance, its credit settlement), so a burst costs one call, not one per event.
The scheduled drain waits this way; ``dealbridge sync --once`` (``timed=False``) ignores the
times and only waits for the upstream, which it drains itself; without a ``FillWait`` (the
default, and every direct caller) nothing waits.

Claims use the same lease scheme as the inbox (see ``services/inbox.py``): status
``processing`` with ``next_attempt_at`` as the lease expiry and the attempt number as the
fencing token, claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL. Delivery is therefore
at-least-once; receivers see a stable id (e.g. the subscriber event id) to deduplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, cast

from sqlalchemy import Select, Table, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from connector.runtime import Runtime
from connector.services.inbox import backoff_delay, describe_failure, first_line, redact
from connector.store import audit
from connector.store.lease import (
    DONE,
    PARKED,
    PENDING,
    PROCESSING,
    SHORT_LEASE,
    due,
    failing,
    renew_claimed,
    settle_claimed,
)
from connector.store.links import IN_CHUNK
from connector.store.models import OutboxMessage

log = logging.getLogger(__name__)

DEFAULT_LEASE = SHORT_LEASE  # renewed while the send runs (store.lease.LeaseKeeper)
#: Single sends claimed per round trip to the store (each still sent one by one).
SINGLE_CHUNK = 20


# --------------------------------------------------------------------------- protocol


class PermanentError(Exception):
    """The receiver refused the write itself; retrying the same write cannot succeed."""

    retryable = False


class RetryableError(Exception):
    """A temporary failure; ``retry_after`` (seconds) overrides a shorter backoff."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def is_retryable(exc: BaseException) -> bool:
    return getattr(exc, "retryable", True) is not False


class SendResultLike(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def error(self) -> str | None: ...
    @property
    def retryable(self) -> bool: ...


@dataclass(frozen=True)
class SendResult:
    """One item's outcome in a batched send."""

    ok: bool
    error: str | None = None
    retryable: bool = True

    @classmethod
    def sent(cls) -> SendResult:
        return cls(ok=True)

    @classmethod
    def retry(cls, error: str) -> SendResult:
        return cls(ok=False, error=error, retryable=True)

    @classmethod
    def reject(cls, error: str) -> SendResult:
        return cls(ok=False, error=error, retryable=False)


SingleFn = Callable[[Runtime, dict[str, Any]], None]
BatchFn = Callable[[Runtime, list[dict[str, Any]]], Sequence[SendResultLike]]


@dataclass(frozen=True)
class SingleSender:
    send: SingleFn
    #: Wait out a burst before sending (see "Filling batches"): for a message that absorbs
    #: later work while it waits.
    linger: bool = False


@dataclass(frozen=True)
class BatchedSender:
    send: BatchFn
    #: Largest batch per call, or a function of the runtime (the CRM adapter decides).
    max_batch: int | Callable[[Runtime], int]
    #: Hold a partial batch back while more is on its way (see "Filling batches").
    linger: bool = False
    #: A full batch, when it is smaller than ``max_batch`` (one Collection of 200 while a
    #: call may carry a whole Bulk API job); default ``max_batch``.
    fill_unit: int | Callable[[Runtime], int] | None = None

    def batch_size(self, runtime: Runtime) -> int:
        size = self.max_batch(runtime) if callable(self.max_batch) else self.max_batch
        return max(int(size), 1)

    def unit(self, runtime: Runtime) -> int:
        if self.fill_unit is None:
            return self.batch_size(runtime)
        size = self.fill_unit(runtime) if callable(self.fill_unit) else self.fill_unit
        return max(min(int(size), self.batch_size(runtime)), 1)


@dataclass(frozen=True)
class FillWait:
    """When a lingering sender's partial batch may go (see "Filling batches")."""

    #: A partial batch waits until no lingering message was queued for this long ...
    quiet: timedelta
    #: ... but goes once its oldest message has waited this long, however busy.
    longest: timedelta
    #: True while more work for the lingering senders is on its way (e.g. inbox events).
    upstream_busy: Callable[[Session, datetime], bool] | None = None
    #: False: the times count as elapsed (``sync --once`` means now); only the upstream holds.
    timed: bool = True


Sender = SingleSender | BatchedSender


class OutboxSenders(Mapping[str, Sender]):
    """Senders by message kind; one per kind, drained in the order they were added."""

    def __init__(self, senders: Mapping[str, Sender] | None = None) -> None:
        self._senders: dict[str, Sender] = {}
        for kind, sender in (senders or {}).items():
            self.add(kind, sender)

    def add(self, kind: str, sender: Sender) -> None:
        existing = self._senders.get(kind)
        if existing is not None and existing != sender:
            raise ValueError(f"outbox kind {kind!r} already has a sender")
        self._senders[kind] = sender

    def __getitem__(self, kind: str) -> Sender:
        return self._senders[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._senders)

    def __len__(self) -> int:
        return len(self._senders)


# --------------------------------------------------------------------------- enqueue


def enqueue(
    session: Session,
    kind: str,
    ordering_key: str,
    payload: Mapping[str, Any],
    dedupe_key: str | None = None,
    *,
    now: datetime | None = None,
    flush: bool = True,
) -> OutboxMessage | None:
    """Queue a write in the caller's transaction; None if ``dedupe_key`` was queued before.

    A new message is due at once whatever its timestamps say; ``now`` only dates it.
    ``flush=False`` (without a dedupe key) leaves the insert to the session's next flush, so
    a transaction queuing thousands inserts them together; the message has no id until then.
    """
    if dedupe_key is not None:
        seen = session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)
        )
        if seen is not None:
            return None
    message = OutboxMessage(
        kind=kind,
        ordering_key=ordering_key,
        dedupe_key=dedupe_key,
        payload=dict(payload),
        status=PENDING,
        attempts=0,
    )
    if now is not None:
        message.created_at = now
        message.next_attempt_at = now
    if dedupe_key is None:
        session.add(message)
        if flush:
            session.flush()
        return message
    # A racing transaction may queue the same dedupe key between our check and insert; the
    # savepoint keeps the caller's transaction usable when the unique constraint says so.
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        return None
    return message


def enqueue_many(
    session: Session, kind: str, messages: Sequence[tuple[str, Mapping[str, Any]]], now: datetime
) -> None:
    """Queue many writes of one ``kind`` (``(ordering_key, payload)`` each, in order) in the
    caller's transaction with one multi-row INSERT, not an ORM object and a flush each: an
    import queues tens of thousands. The messages are what ``enqueue`` would queue without a
    dedupe key; their ids follow the order given, so a key's messages keep their order."""
    if not messages:
        return
    rows = [
        {
            "kind": kind,
            "ordering_key": ordering_key,
            "dedupe_key": None,
            "payload": dict(payload),
            "created_at": now,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "done_at": None,
        }
        for ordering_key, payload in messages
    ]
    session.execute(insert(cast(Table, OutboxMessage.__table__)), rows)


def enqueue_unless_waiting(
    session: Session, kind: str, ordering_key: str, payload: Mapping[str, Any], now: datetime
) -> None:
    """Queue the message unless one of ``kind`` for ``ordering_key`` still waits: for work
    that recomputes from the current state (settle an account, refresh its figures), one
    waiting message covers a burst of causes. The waiting row is locked, so no worker starts
    it before the change that owes it commits."""
    waiting = session.scalars(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.ordering_key == ordering_key,
            OutboxMessage.kind == kind,
            OutboxMessage.status == PENDING,
        )
        .limit(1)
        .with_for_update()
    ).first()
    if waiting is None:
        enqueue(session, kind, ordering_key, payload, now=now)


# --------------------------------------------------------------------------- draining


@dataclass(frozen=True)
class _Claim:
    id: int
    payload: dict[str, Any]
    attempts: int


def _heads(kind: str, now: datetime) -> Select[OutboxMessage]:
    """Due messages of ``kind`` that are the first undelivered message of their key."""
    earlier = aliased(OutboxMessage)
    blocked = (
        exists()
        .where(
            earlier.ordering_key == OutboxMessage.ordering_key,
            earlier.id < OutboxMessage.id,
            earlier.status != DONE,
        )
        .correlate(OutboxMessage)
    )
    return (
        select(OutboxMessage)
        .where(
            OutboxMessage.kind == kind,
            due(OutboxMessage, now),
            ~blocked,
        )
        .order_by(OutboxMessage.id)
    )


def claim(
    session: Session, kind: str, now: datetime, limit: int, lease: timedelta = DEFAULT_LEASE
) -> list[_Claim]:
    """Lease up to ``limit`` head messages of ``kind`` in the caller's transaction.

    Read as columns and leased with one UPDATE per ``IN_CHUNK`` rows, not as ORM objects
    updated one by one: a Bulk API flush claims thousands. The rows are locked (``FOR
    UPDATE``; SQLite's write lock is held from ``BEGIN IMMEDIATE``), so the attempt numbers
    read are those the UPDATE increments."""
    rows = session.execute(
        _heads(kind, now)
        .with_only_columns(OutboxMessage.id, OutboxMessage.payload, OutboxMessage.attempts)
        .limit(limit)
        .with_for_update(skip_locked=True, of=OutboxMessage)
    ).all()
    ids = [row.id for row in rows]
    for start in range(0, len(ids), IN_CHUNK):
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids[start : start + IN_CHUNK]))
            .values(
                status=PROCESSING,
                attempts=OutboxMessage.attempts + 1,
                next_attempt_at=now + lease,
            )
            .execution_options(synchronize_session=False)
        )
    return [_Claim(row.id, dict(row.payload), row.attempts + 1) for row in rows]


#: What to do once a completion has committed (metrics, logs): run in order after commit.
_After = list[Callable[[], None]]


def _complete(session: Session, item: _Claim, **values: Any) -> bool:
    """Settle a claimed message in the caller's transaction; False if it was re-claimed."""
    won = settle_claimed(session, OutboxMessage, item.id, item.attempts, **values)
    if not won:
        log.warning("outbox message %s was re-claimed by another worker; result dropped", item.id)
    return won


def _settle(runtime: Runtime, settle: Callable[[Session, _After], None]) -> None:
    """Run ``settle`` in one transaction (one commit for a whole batch's outcomes), then
    what it left for after the commit."""
    after: _After = []
    with runtime.db.session() as session:
        settle(session, after)
    for action in after:
        action()


def _counted(runtime: Runtime, kind: str, outcome: str) -> Callable[[], None]:
    return lambda: runtime.metrics.outbox_sent.labels(kind=kind, outcome=outcome).inc()


def _succeeded(runtime: Runtime, session: Session, after: _After, kind: str, item: _Claim) -> None:
    now = runtime.clock()
    if _complete(session, item, status=DONE, done_at=now, last_error=None, next_attempt_at=now):
        after.append(_counted(runtime, kind, "done"))


def _all_succeeded(
    runtime: Runtime, session: Session, after: _After, kind: str, items: Sequence[_Claim]
) -> None:
    """``_succeeded`` for a whole batch: one UPDATE per attempt number, not one per message
    (a Bulk API job of thousands of records would otherwise take seconds to settle)."""
    now = runtime.clock()
    by_attempts: dict[int, list[int]] = {}
    for item in items:
        by_attempts.setdefault(item.attempts, []).append(item.id)
    table = cast(Table, OutboxMessage.__table__)
    won = 0
    for attempts, ids in by_attempts.items():
        for start in range(0, len(ids), IN_CHUNK):
            chosen = ids[start : start + IN_CHUNK]
            result = session.execute(
                update(table)
                .where(
                    table.c.id.in_(chosen),
                    table.c.status == PROCESSING,
                    table.c.attempts == attempts,
                )
                .values(status=DONE, done_at=now, last_error=None, next_attempt_at=now)
            )
            won += int(getattr(result, "rowcount", 0) or 0)
    if won < len(items):
        log.warning(
            "%d %s outbox message(s) were re-claimed by another worker; results dropped",
            len(items) - won,
            kind,
        )
    if won:
        after.append(lambda: runtime.metrics.outbox_sent.labels(kind=kind, outcome="done").inc(won))


def _failed(
    runtime: Runtime,
    session: Session,
    after: _After,
    kind: str,
    item: _Claim,
    error: str,
    *,
    retryable: bool,
    retry_after: float | None = None,
) -> None:
    jobs = runtime.config.section("jobs")
    now = runtime.clock()
    if not retryable or item.attempts >= int(jobs["max_attempts"]):
        if _complete(session, item, status=PARKED, last_error=error, next_attempt_at=now):
            after.append(_counted(runtime, kind, "parked"))
            after.append(
                lambda: log.error(
                    "outbox %s message %s parked after %d attempt(s): %s",
                    kind,
                    item.id,
                    item.attempts,
                    first_line(error),
                )
            )
        return
    delay = backoff_delay(int(jobs["backoff_base_seconds"]), item.attempts)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    if _complete(session, item, status=PENDING, last_error=error, next_attempt_at=now + delay):
        after.append(_counted(runtime, kind, "retry"))
        after.append(
            lambda: log.warning(
                "outbox %s message %s failed attempt %d, retrying in %s: %s",
                kind,
                item.id,
                item.attempts,
                delay,
                first_line(error),
            )
        )


def _failed_with(runtime: Runtime, kind: str, items: Sequence[_Claim], exc: Exception) -> None:
    error = describe_failure(exc, runtime.config.secrets.all_values())
    retry_after = getattr(exc, "retry_after", None)

    def settle(session: Session, after: _After) -> None:
        for item in items:
            _failed(
                runtime,
                session,
                after,
                kind,
                item,
                error,
                retryable=is_retryable(exc),
                retry_after=retry_after if isinstance(retry_after, int | float) else None,
            )

    _settle(runtime, settle)


def _send_single(runtime: Runtime, kind: str, sender: SingleSender, items: list[_Claim]) -> None:
    for item in items:
        try:
            sender.send(runtime, item.payload)
        except Exception as exc:
            _failed_with(runtime, kind, [item], exc)
        else:
            _settle(runtime, partial(_succeeded, runtime, kind=kind, item=item))


def _send_batch(runtime: Runtime, kind: str, sender: BatchedSender, items: list[_Claim]) -> None:
    """One call for the batch; its outcomes are then written in one transaction (not one
    commit per message: a Bulk API job of 10,000 records would otherwise cost 10,000)."""
    try:
        results = list(sender.send(runtime, [item.payload for item in items]))
        if len(results) != len(items):
            raise RetryableError(
                f"the {kind} sender returned {len(results)} results for {len(items)} messages"
            )
    except Exception as exc:
        _failed_with(runtime, kind, items, exc)
        return
    secrets = runtime.config.secrets.all_values()

    def settle(session: Session, after: _After) -> None:
        _all_succeeded(
            runtime, session, after, kind,
            [item for item, result in zip(items, results, strict=True) if result.ok],
        )  # fmt: skip
        for item, result in zip(items, results, strict=True):
            if not result.ok:
                error = redact(result.error or "rejected without a reason", secrets)
                _failed(
                    runtime, session, after, kind, item, error, retryable=bool(result.retryable)
                )

    _settle(runtime, settle)


def _burst_on(
    session: Session, senders: Mapping[str, Sender], fill: FillWait, now: datetime
) -> bool:
    """Whether more work for the lingering senders is on its way."""
    if fill.upstream_busy is not None and fill.upstream_busy(session, now):
        return True
    if not fill.timed:
        return False
    lingering = [kind for kind, sender in senders.items() if sender.linger]
    newest = session.scalar(
        select(func.max(OutboxMessage.created_at)).where(
            OutboxMessage.kind.in_(lingering), OutboxMessage.status == PENDING
        )
    )
    return newest is not None and _aware(newest) > now - fill.quiet


def _fill_limit(
    session: Session, kind: str, unit: int | None, wanted: int, fill: FillWait, now: datetime
) -> int:
    """How many heads of a lingering kind to claim during a burst: whole batches of ``unit``
    only (none for a single sender), unless its oldest due head has waited ``fill.longest``."""
    heads = _heads(kind, now).subquery()
    count, oldest = session.execute(select(func.count(), func.min(heads.c.created_at))).one()
    if not count:
        return 0
    if fill.timed and oldest is not None and _aware(oldest) <= now - fill.longest:
        return wanted
    return 0 if unit is None else min(wanted, (int(count) // unit) * unit)


def _aware(value: datetime | str) -> datetime:
    """An aggregate's timestamp as aware UTC (SQLite may hand it back naive or as text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _renewal(items: list[_Claim]) -> Callable[[Session, datetime], None]:
    ids = [item.id for item in items]
    attempts = {item.id: item.attempts for item in items}
    return lambda session, until: renew_claimed(session, OutboxMessage, ids, attempts, until)


def drain_outbox(
    runtime: Runtime,
    senders: Mapping[str, Sender],
    *,
    limit: int = 500,
    lease: timedelta = DEFAULT_LEASE,
    fill: FillWait | None = None,
) -> int:
    """Send up to ``limit`` due messages whose kind has a sender; returns how many were tried.

    Rounds repeat while there is work, since delivering a key's head makes its next message
    the new head. With ``fill``, lingering senders send only full batches while a burst is
    on (see "Filling batches").
    """
    attempted = 0
    while attempted < limit:
        progressed = False
        burst: bool | None = None
        with runtime.db.reading() as session:
            # One look for every kind, as a reader: a kind with nothing due costs no write
            # transaction (on SQLite each takes the write lock a webhook's insert waits for).
            due_kinds = set(
                session.scalars(
                    select(OutboxMessage.kind).where(due(OutboxMessage, runtime.clock())).distinct()
                )
            )
        for kind, sender in senders.items():
            room = limit - attempted
            if room <= 0:
                break
            if kind not in due_kinds:
                continue
            size = sender.batch_size(runtime) if isinstance(sender, BatchedSender) else SINGLE_CHUNK
            wanted = min(size, room)
            now = runtime.clock()
            if fill is not None and sender.linger:
                # Deciding how much to claim only reads; the claim below re-checks each row.
                with runtime.db.reading() as session:
                    if burst is None:
                        burst = _burst_on(session, senders, fill, now)
                    if burst:
                        unit = sender.unit(runtime) if isinstance(sender, BatchedSender) else None
                        wanted = _fill_limit(session, kind, unit, wanted, fill, now)
            if wanted <= 0:
                continue
            with runtime.db.session() as session:
                items = claim(session, kind, now, wanted, lease)
            if not items:
                continue
            progressed = True
            attempted += len(items)
            with runtime.leases.hold(_renewal(items)):
                if isinstance(sender, BatchedSender):
                    _send_batch(runtime, kind, sender, items)
                else:
                    _send_single(runtime, kind, sender, items)
        if not progressed:
            break
    return attempted


# --------------------------------------------------------------------------- operator actions


def list_messages(
    session: Session, *, failed: bool = False, kind: str | None = None, limit: int = 50
) -> list[OutboxMessage]:
    """Newest first. ``failed``: parked, or pending after at least one failed attempt."""
    stmt = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if failed:
        stmt = stmt.where(failing(OutboxMessage))
    if kind:
        stmt = stmt.where(OutboxMessage.kind == kind)
    return list(session.scalars(stmt))


class NotRetryable(Exception):
    pass


def retry_message(session: Session, message_id: int, *, actor: str, now: datetime) -> OutboxMessage:
    """Make a parked or failing message due now with a fresh attempt budget; audited."""
    row = session.get(OutboxMessage, message_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no outbox message with id {message_id}")
    if row.status == DONE:
        raise NotRetryable(f"outbox message {message_id} was delivered already")
    if row.status == PROCESSING and row.next_attempt_at > now:
        raise NotRetryable(f"outbox message {message_id} is being sent right now; try later")
    previous = {"status": row.status, "attempts": row.attempts, "last_error": row.last_error}
    row.status = PENDING
    row.attempts = 0
    row.next_attempt_at = now
    audit.record(
        session,
        actor=actor,
        action="outbox.retry",
        subject_type="outbox_message",
        subject_id=str(row.id),
        kind=row.kind,
        ordering_key=row.ordering_key,
        previous=previous,
    )
    return row
