"""The inbox: inbound events stored raw at intake, processed once by the worker.

Intake (``web/stripe_webhooks.py``, ``web/crm_webhooks.py``, the CRM poll, reconciliation)
only verifies and stores; the worker decides what an event means by handing it to the
handler registered for its type. A handler is a service's public function::

    def on_invoice_event(runtime: Runtime, event: dict[str, Any]) -> str | None:
        ...  # returns a short outcome note, or None

and the worker's dispatch tables (``jobs/dispatch.py``) name it for its event types. A type
Stripe does not have, a type dealbridge does not subscribe to, or a second handler for one
type is refused when the table is built, i.e. at start-up.

Claiming (why a lease)
----------------------
Handlers receive the runtime and open their own transactions (they may also call Stripe or
the CRM), so an event cannot be processed inside the transaction that claims it: on SQLite
the claim holds the only write lock, and the handler's own transaction would wait for it.
Instead each event is *leased*:

1. a short claim transaction picks the oldest due row -- ``status`` ``pending`` (or a
   ``processing`` row whose lease ran out) with ``next_attempt_at <= now`` -- using
   ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers never pick the
   same row and never wait for each other; on SQLite ``BEGIN IMMEDIATE`` serialises claims.
   It sets ``status = 'processing'``, ``attempts += 1`` and ``next_attempt_at = now + lease``
   and commits;
2. the handler runs outside any claim transaction;
3. a completion transaction records the result *only if the row still carries our claim*
   (``status = 'processing'`` and the same ``attempts`` -- the attempt number is the fencing
   token). A worker that crashed or overran its lease finds the row re-claimed and writes
   nothing.

A crashed worker's lease expires and the event is claimed again; that claim counts as an
attempt, so an event that keeps killing its worker is parked too. Delivery to handlers is
therefore at-least-once: a handler must be idempotent (dealbridge's tables have natural
unique keys for exactly this), and within a lease no second worker can run it.

Statuses: ``pending`` -> ``processing`` -> ``done``; a failure goes back to ``pending`` with
exponential backoff, and after ``jobs.max_attempts`` attempts to ``parked`` (kept, visible
in ``dealbridge events list --failed``, re-queued only by ``dealbridge events replay``).
Events that arrive together are handled together where a *batch handler* is registered for
their type (``EventHandlers.register_batch``; Stripe's invoice events): the claim that finds
such an event leases the other due events of the batch handler's types with it (up to
``jobs.event_batch_size``), the handler gets them all at once -- so it can coalesce several
events of one invoice, resolve accounts and deals in one query and write one transaction --
and returns one outcome per event, in order: a note, or the exception that event failed
with (it alone is retried). The results are settled in one transaction. A batch handler
raising fails every event of the batch, as one handler call would.

Types dealbridge does not handle are stored ``ignored`` at intake and never processed.
A handled type that has no handler registered is parked, so it waits for a replay instead of
being lost.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Select, Table, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from connector.domain.untrusted_json import UntrustedJsonError, parse_object
from connector.runtime import Runtime
from connector.store import audit
from connector.store.cursors import save_cursor
from connector.store.intake_spool import MOVED_CURSOR, moved_through
from connector.store.lease import (
    DONE,
    PARKED,
    PENDING,
    PROCESSING,
    RENEW_CHUNK,
    SHORT_LEASE,
    due,
    failing,
    renew_claimed,
    settle_claimed,
)
from connector.store.models import Cursor, InboxEvent

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_LEASE",
    "BatchHandler",
    "EventHandlers",
    "Handler",
    "backoff_delay",
    "describe_failure",
    "process_due_events",
    "replay_event",
]

Handler = Callable[[Runtime, dict[str, Any]], "str | None"]
#: Several events at once: one outcome per event, in order (a note, None, or the exception
#: that event failed with).
BatchHandler = Callable[[Runtime, list[dict[str, Any]]], Sequence["str | BaseException | None"]]

#: How long a claim lasts unless renewed: the worker renews it while the handler runs
#: (``store.lease.LeaseKeeper``), so a dead worker's event is taken over within this.
DEFAULT_LEASE = SHORT_LEASE
#: Longest wait between two attempts, however many attempts failed.
MAX_BACKOFF = timedelta(hours=6)
MAX_ERROR_CHARS = 4000
TRACEBACK_FRAMES = 5

#: An inbox row of a type dealbridge does not handle: stored for the record, never processed.
IGNORED = "ignored"


# --------------------------------------------------------------------------- retry helpers


def backoff_delay(base_seconds: int, attempts: int, *, cap: timedelta = MAX_BACKOFF) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: base, 2*base, 4*base ... up to ``cap``.

    Deterministic on purpose (no jitter): tests can predict the schedule exactly, and rows
    fail at different times anyway, so workers do not retry in lockstep.
    """
    exponent = max(attempts - 1, 0)
    if exponent >= 32:  # 2**32 * base is beyond any cap; avoid building huge timedeltas
        return cap
    return min(timedelta(seconds=base_seconds * 2**exponent), cap)


def describe_failure(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``Type: message`` plus the last few frames (file, line, function), secrets redacted.

    No local variables and no request bodies, only what the code says, so an operator can
    find the failing line without the error column becoming a place where data leaks.
    """
    frames = traceback.extract_tb(exc.__traceback__)[-TRACEBACK_FRAMES:]
    lines = [f"{type(exc).__name__}: {exc}".strip()]
    lines.extend(f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames)
    return redact("\n".join(lines), secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every secret in ``text`` and cut it to a size the error column keeps."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 16] + "\n... (truncated)"
    return text


def first_line(text: str | None) -> str:
    return (text or "").splitlines()[0] if text else ""


# --------------------------------------------------------------------------- registry


class EventHandlers:
    """Handlers of one event source, by event type; one handler per type.

    ``known_types`` is every type the source can send (a typo is refused); ``handled_types``
    is the subset dealbridge subscribes to (a handler for any other type would never run).
    """

    def __init__(
        self,
        source: str,
        *,
        known_types: Collection[str],
        handled_types: Collection[str] | None = None,
    ) -> None:
        self.source = source
        self.known_types = frozenset(known_types)
        self.handled_types = frozenset(handled_types) if handled_types is not None else None
        self._handlers: dict[str, Handler] = {}
        self._batch: dict[str, tuple[BatchHandler, frozenset[str]]] = {}

    def on(self, *event_types: str) -> Callable[[Handler], Handler]:
        """Decorator: ``@handlers.on("invoice.paid", "invoice.voided")``."""
        if not event_types:
            raise ValueError("name at least one event type")
        for event_type in event_types:
            self._check(event_type)

        def decorate(func: Handler) -> Handler:
            for event_type in event_types:
                self.register(event_type, func)
            return func

        return decorate

    def register(self, event_type: str, func: Handler) -> None:
        self._check(event_type)
        existing = self._handlers.get(event_type)
        if existing is not None and existing is not func:
            raise ValueError(
                f"{self.source} event type {event_type!r} already has a handler "
                f"({existing.__module__}.{existing.__qualname__}); one handler per type"
            )
        self._handlers[event_type] = func

    def _check(self, event_type: str) -> None:
        if event_type not in self.known_types:
            raise ValueError(
                f"{event_type!r} is not a {self.source} event type; check its spelling "
                f"(e.g. against connector/billing/event_types.py)"
            )
        if self.handled_types is not None and event_type not in self.handled_types:
            raise ValueError(
                f"{event_type!r} is a {self.source} event type dealbridge does not subscribe "
                "to, so its handler would never run; add it to HANDLED_STRIPE_EVENTS first"
            )

    def handler_for(self, event_type: str) -> Handler | None:
        return self._handlers.get(event_type)

    def register_batch(self, event_types: Iterable[str], func: BatchHandler) -> None:
        """Handle due events of these types together (see the module docstring). Each type
        keeps its single handler (``register``), which the batch handler must agree with."""
        types = frozenset(event_types)
        for event_type in types:
            if event_type not in self._handlers:
                raise ValueError(f"register a handler for {event_type!r} before its batch handler")
            existing = self._batch.get(event_type)
            if existing is not None and existing[0] is not func:
                raise ValueError(
                    f"{self.source} event type {event_type!r} already has a batch handler"
                )
        for event_type in types:
            self._batch[event_type] = (func, types)

    def batch_handler_for(self, event_type: str) -> tuple[BatchHandler, frozenset[str]] | None:
        """The batch handler of this type and every type it takes, if it has one."""
        return self._batch.get(event_type)

    def types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def missing(self) -> frozenset[str]:
        """Handled types that have no handler yet (their events would be parked)."""
        return (self.handled_types or frozenset()) - self.types()


# --------------------------------------------------------------------------- intake


#: The inbox's event id column is 255 characters.
MAX_EVENT_ID = 255


def stored_event_id(event_id: str) -> str:
    """``event_id`` as the inbox stores it: as is when it fits the column, else its digest,
    so an oversize id neither overflows the column (PostgreSQL) nor loses its dedupe."""
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


def event_values(
    source: str,
    event_id: str,
    event_type: str,
    payload: str,
    now: datetime,
    *,
    handled: bool = True,
) -> dict[str, Any]:
    """An inbox row's columns (all but its id), due at once."""
    return {
        "source": source,
        "event_id": stored_event_id(event_id),
        "event_type": event_type,
        "payload": payload,
        "received_at": now,
        "status": "pending" if handled else "ignored",
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "processed_at": None if handled else now,
        "outcome": None if handled else "not an event type dealbridge handles",
    }


def new_event(
    source: str,
    event_id: str,
    event_type: str,
    payload: str,
    now: datetime,
    *,
    handled: bool = True,
) -> InboxEvent:
    """An inbox row, due at once; for a caller that stores it in its own transaction."""
    return InboxEvent(**event_values(source, event_id, event_type, payload, now, handled=handled))


def _insert_once(dialect: str) -> Insert:
    """``INSERT ... ON CONFLICT (source, event_id) DO NOTHING`` for the store's dialect: a
    second delivery inserts nothing, and says so by returning no id."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return cast(
        Insert,
        insert(InboxEvent).on_conflict_do_nothing(index_elements=["source", "event_id"]),
    )


#: Built once per dialect; SQLAlchemy caches their compiled forms.
_INSERT_ONCE = {dialect: _insert_once(dialect) for dialect in ("sqlite", "postgresql")}
_INSERT_ONCE_RETURNING = {
    dialect: statement.returning(InboxEvent.id) for dialect, statement in _INSERT_ONCE.items()
}


def store_event(
    runtime: Runtime,
    source: str,
    event_id: str,
    event_type: str,
    payload: str,
    *,
    handled: bool = True,
) -> str:
    """Put an inbound event in the inbox once: ``stored``, ``ignored`` or ``duplicate``.

    Every way in (webhook, CRM push, poll, reconciliation) comes through here, so a second
    delivery -- even one racing the first -- is recognised by the unique (source, event id)
    and treated as already received, never processed twice (the dj-stripe pattern).
    """
    values = event_values(source, event_id, event_type, payload, runtime.clock(), handled=handled)
    # One Core statement, not an ORM row that fails on the unique key and is looked up
    # again: a webhook's acknowledgement on PostgreSQL is this, and the ORM path cost half
    # its CPU (bench/serve_intake.py, --procfile).
    try:
        inserted = _stored_id(runtime, values)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        # The pooled connection had died since its last use (a PostgreSQL restart or
        # failover: store/db.py pings only idle ones). The pool has dropped it; the insert
        # is idempotent, so once more on a fresh connection.
        inserted = _stored_id(runtime, values)
    if inserted is None:
        return "duplicate"
    return "stored" if handled else "ignored"


def _stored_id(runtime: Runtime, values: dict[str, Any]) -> Row[Any] | None:
    """The new row's id, or None when the event was there already."""
    with runtime.db.one_write() as connection:
        return connection.execute(_INSERT_ONCE_RETURNING[connection.dialect.name], values).first()


def receive_event(
    runtime: Runtime,
    source: str,
    event_id: str,
    event_type: str,
    payload: str,
    *,
    handled: bool = True,
) -> str:
    """The web process's way in: ``store_event``'s outcomes, but on a SQLite store the event
    goes to the intake spool (``store/intake_spool.py``), so the acknowledgement never waits
    for the worker's write lock; the worker moves it into the inbox (``move_spooled``).

    An event the inbox or the spool holds already is a ``duplicate``. One that arrives again
    while its first delivery is being moved may be spooled twice; the move stores it once.
    The same transaction deletes the spooled events the worker has moved: only this
    process writes the spool, so the worker (at a lower CPU priority under ``serve``) never
    holds the spool's lock while a webhook waits for it.
    """
    spool = runtime.db.intake_spool
    if spool is None:
        return store_event(runtime, source, event_id, event_type, payload, handled=handled)
    stored_id = stored_event_id(event_id)
    with runtime.db.looking() as connection:
        known, moved = connection.execute(
            _RECEIVED_LOOK, {"source": source, "event_id": stored_id, "cursor": MOVED_CURSOR}
        ).one()
    if known is not None:
        return "duplicate"
    spooled = spool.put(
        source,
        stored_id,
        event_type,
        payload,
        handled=handled,
        received_at=runtime.clock(),
        moved_through=int(moved or 0),
    )
    if not spooled:
        return "duplicate"
    return "stored" if handled else "ignored"


#: ``receive_event``'s one look at the store: is the event in the inbox already, and how far
#: has the worker moved the spool. Built once; SQLAlchemy caches its compiled form.
_RECEIVED_LOOK = select(
    select(InboxEvent.id)
    .where(InboxEvent.source == bindparam("source"), InboxEvent.event_id == bindparam("event_id"))
    .scalar_subquery(),
    select(Cursor.value).where(Cursor.name == bindparam("cursor")).scalar_subquery(),
)
#: Spooled events moved per store transaction: short enough that the web process's
#: other writes (an approval, a CRM push) do not wait long behind it.
MOVE_CHUNK = 200


def move_spooled(runtime: Runtime) -> int:
    """Move the events the web process spooled into the inbox, oldest first; how many.

    Each chunk is one store transaction that inserts the events (an event already in the
    inbox is skipped: it was redelivered while its first copy was being moved) and advances
    the store's ``MOVED_CURSOR`` to the last one, so a crash moves a chunk wholly or not at
    all, and two workers never move one twice (the cursor is read under the write lock).
    The worker only reads the spool; the web process deletes the moved rows
    (``receive_event``). A no-op on PostgreSQL.
    """
    spool = runtime.db.intake_spool
    if spool is None:
        return 0
    moved = 0
    while True:
        with runtime.db.session() as session:
            chunk = spool.after(moved_through(session), MOVE_CHUNK)
            if not chunk:
                break
            session.execute(
                _INSERT_ONCE[session.get_bind().dialect.name],
                [
                    event_values(
                        event.source,
                        event.event_id,
                        event.event_type,
                        event.payload,
                        event.received_at,
                        handled=event.handled,
                    )
                    for event in chunk
                ],
            )
            save_cursor(session, MOVED_CURSOR, str(chunk[-1].id), runtime.clock())
        moved += len(chunk)
        if len(chunk) < MOVE_CHUNK:
            break
    if moved:
        spool.checkpoint()  # here, not in a commit of the web process (``intake_spool``)
    return moved


def spooled_waiting(runtime: Runtime, session: Session) -> int:
    """Events received by the web process that the worker has not moved into the inbox yet
    (0 on PostgreSQL): waiting work, shown with the inbox's."""
    spool = runtime.db.intake_spool
    return spool.waiting(session) if spool is not None else 0


# --------------------------------------------------------------------------- processing


@dataclass(frozen=True)
class _Claim:
    id: int
    event_type: str
    payload: str
    attempts: int
    expired_lease: bool


def _due(source: str, now: datetime) -> Select[InboxEvent]:
    """Pending rows never tried (whatever their timestamp: a row stored with the wall clock
    must not wait for a test's frozen clock) or whose retry time came, and expired leases."""
    return (
        select(InboxEvent)
        .where(InboxEvent.source == source, due(InboxEvent, now))
        .order_by(InboxEvent.id)
    )


def claim_next(
    session: Session, source: str, now: datetime, lease: timedelta, through: int | None = None
) -> _Claim | None:
    """Lease the oldest due event of ``source`` in the caller's transaction (see module doc);
    ``through``: only events stored up to this inbox id."""
    query = _due(source, now)
    if through is not None:
        query = query.where(InboxEvent.id <= through)
    row = session.scalars(query.limit(1).with_for_update(skip_locked=True)).first()
    if row is None:
        return None
    expired = row.status == PROCESSING
    row.status = PROCESSING
    row.attempts += 1
    row.next_attempt_at = now + lease
    return _Claim(row.id, row.event_type, row.payload, row.attempts, expired)


def claim_more(
    session: Session,
    source: str,
    types: Collection[str],
    now: datetime,
    lease: timedelta,
    limit: int,
    through: int | None = None,
) -> list[_Claim]:
    """Lease up to ``limit`` more due events of these types (a batch handler's), oldest first;
    ``through``: only events stored up to this inbox id."""
    if limit <= 0:
        return []
    query = _due(source, now).where(InboxEvent.event_type.in_(sorted(types)))
    if through is not None:
        query = query.where(InboxEvent.id <= through)
    rows = session.scalars(query.limit(limit).with_for_update(skip_locked=True)).all()
    claims = []
    for row in rows:
        expired = row.status == PROCESSING
        row.status = PROCESSING
        row.attempts += 1
        row.next_attempt_at = now + lease
        claims.append(_Claim(row.id, row.event_type, row.payload, row.attempts, expired))
    return claims


def _complete(runtime: Runtime, claim: _Claim, **values: Any) -> bool:
    """Write the result if the row still carries our claim; False if another worker took it."""
    with runtime.db.session() as session:
        won = settle_claimed(session, InboxEvent, claim.id, claim.attempts, **values)
    if not won:
        log.warning("inbox event %s was re-claimed by another worker; result dropped", claim.id)
    return won


def _renewal(claim: _Claim) -> Callable[[Session, datetime], None]:
    return lambda session, until: renew_claimed(
        session, InboxEvent, [claim.id], {claim.id: claim.attempts}, until
    )


def _batch_renewal(claims: list[_Claim]) -> Callable[[Session, datetime], None]:
    ids = [claim.id for claim in claims]
    attempts = {claim.id: claim.attempts for claim in claims}
    return lambda session, until: renew_claimed(session, InboxEvent, ids, attempts, until)


def _process_one(runtime: Runtime, registry: EventHandlers, claim: _Claim) -> None:
    jobs = runtime.config.section("jobs")
    max_attempts = int(jobs["max_attempts"])
    metric = runtime.metrics.events

    def fail(error: str) -> None:
        now = runtime.clock()
        if claim.attempts >= max_attempts:
            if _complete(runtime, claim, status=PARKED, last_error=error, next_attempt_at=now):
                metric.labels(source=registry.source, type=claim.event_type, outcome="parked").inc()
                log.error(
                    "inbox event %s (%s) parked after %d attempts: %s",
                    claim.id,
                    claim.event_type,
                    claim.attempts,
                    first_line(error),
                )
            return
        delay = backoff_delay(int(jobs["backoff_base_seconds"]), claim.attempts)
        if _complete(runtime, claim, status=PENDING, last_error=error, next_attempt_at=now + delay):
            metric.labels(source=registry.source, type=claim.event_type, outcome="retry").inc()
            log.warning(
                "inbox event %s (%s) failed attempt %d, retrying in %s: %s",
                claim.id,
                claim.event_type,
                claim.attempts,
                delay,
                first_line(error),
            )

    if claim.expired_lease and claim.attempts > max_attempts:
        fail(
            f"the worker processing attempt {claim.attempts - 1} was lost (lease expired) "
            "and no attempts are left"
        )
        return
    handler = registry.handler_for(claim.event_type)
    if handler is None:
        now = runtime.clock()
        if _complete(
            runtime,
            claim,
            status=PARKED,
            last_error=f"no handler registered for {registry.source} {claim.event_type}",
            next_attempt_at=now,
        ):
            metric.labels(source=registry.source, type=claim.event_type, outcome="parked").inc()
            log.error("inbox event %s parked: no handler for %s", claim.id, claim.event_type)
        return
    try:
        event = parse_object(claim.payload)
        with runtime.leases.hold(_renewal(claim)):
            outcome = handler(runtime, event)
    except UntrustedJsonError as malformed:
        # Retrying cannot make a malformed event well-formed: park it now, saying why.
        reason = redact(f"malformed event: {malformed.reason}", runtime.config.secrets.all_values())
        if _complete(
            runtime, claim, status=PARKED, last_error=reason, next_attempt_at=runtime.clock()
        ):
            metric.labels(source=registry.source, type=claim.event_type, outcome="parked").inc()
            log.error("inbox event %s (%s) parked: %s", claim.id, claim.event_type, reason)
        return
    except Exception as exc:
        fail(describe_failure(exc, runtime.config.secrets.all_values()))
        return
    now = runtime.clock()
    if _complete(
        runtime,
        claim,
        status=DONE,
        outcome=(outcome or "ok")[:200],
        processed_at=now,
        next_attempt_at=now,
    ):
        metric.labels(source=registry.source, type=claim.event_type, outcome="done").inc()


#: What to do once the batch's results committed (metrics, logs).
_After = list[Callable[[], None]]


def _settle_result(
    runtime: Runtime,
    session: Session,
    registry: EventHandlers,
    claim: _Claim,
    result: str | BaseException | None,
    after: _After,
) -> None:
    """Record one event's result of a batch in the caller's transaction (as ``_process_one``
    would: done, or a failure retried with backoff or parked)."""
    jobs = runtime.config.section("jobs")
    now = runtime.clock()
    metric = runtime.metrics.events
    source, event_type = registry.source, claim.event_type
    if not isinstance(result, BaseException):
        values: dict[str, Any] = {
            "status": DONE,
            "outcome": (result or "ok")[:200],
            "processed_at": now,
            "next_attempt_at": now,
        }
        if settle_claimed(session, InboxEvent, claim.id, claim.attempts, **values):
            after.append(
                lambda: metric.labels(source=source, type=event_type, outcome="done").inc()
            )
        return
    if isinstance(result, UntrustedJsonError):
        # Retrying cannot make a malformed event well-formed: park it now, saying why.
        reason = redact(f"malformed event: {result.reason}", runtime.config.secrets.all_values())
        if settle_claimed(
            session, InboxEvent, claim.id, claim.attempts,
            status=PARKED, last_error=reason, next_attempt_at=now,
        ):  # fmt: skip
            after.append(
                lambda: metric.labels(source=source, type=event_type, outcome="parked").inc()
            )
            after.append(
                lambda: log.error("inbox event %s (%s) parked: %s", claim.id, event_type, reason)
            )
        return
    error = describe_failure(result, runtime.config.secrets.all_values())
    if claim.attempts >= int(jobs["max_attempts"]):
        if settle_claimed(
            session, InboxEvent, claim.id, claim.attempts,
            status=PARKED, last_error=error, next_attempt_at=now,
        ):  # fmt: skip
            after.append(
                lambda: metric.labels(source=source, type=event_type, outcome="parked").inc()
            )
            after.append(
                lambda: log.error(
                    "inbox event %s (%s) parked after %d attempts: %s",
                    claim.id,
                    event_type,
                    claim.attempts,
                    first_line(error),
                )
            )
        return
    delay = backoff_delay(int(jobs["backoff_base_seconds"]), claim.attempts)
    if settle_claimed(
        session, InboxEvent, claim.id, claim.attempts,
        status=PENDING, last_error=error, next_attempt_at=now + delay,
    ):  # fmt: skip
        after.append(lambda: metric.labels(source=source, type=event_type, outcome="retry").inc())
        after.append(
            lambda: log.warning(
                "inbox event %s (%s) failed attempt %d, retrying in %s: %s",
                claim.id,
                event_type,
                claim.attempts,
                delay,
                first_line(error),
            )
        )


def _process_batch(
    runtime: Runtime, registry: EventHandlers, handler: BatchHandler, claims: list[_Claim]
) -> None:
    max_attempts = int(runtime.config.section("jobs")["max_attempts"])
    results: list[tuple[_Claim, str | BaseException | None]] = []
    ready: list[tuple[_Claim, dict[str, Any]]] = []
    for claim in claims:
        if claim.expired_lease and claim.attempts > max_attempts:
            _process_one(runtime, registry, claim)  # out of attempts: parked there
            continue
        try:
            event = parse_object(claim.payload)
        except UntrustedJsonError as exc:
            results.append((claim, exc))
            continue
        ready.append((claim, event))
    if ready:
        try:
            with runtime.leases.hold(_batch_renewal([claim for claim, _ in ready])):
                outcomes = list(handler(runtime, [event for _, event in ready]))
            if len(outcomes) != len(ready):
                raise RuntimeError(
                    f"the batch handler returned {len(outcomes)} results for {len(ready)} events"
                )
        except Exception as exc:
            outcomes = [exc] * len(ready)
        results.extend(
            (claim, outcome) for (claim, _), outcome in zip(ready, outcomes, strict=True)
        )
    after: _After = []
    with runtime.db.session() as session:
        done = [(c, r) for c, r in results if not isinstance(r, BaseException)]
        _settle_done(runtime, session, registry, done, after)
        for claim, result in results:
            if isinstance(result, BaseException):
                _settle_result(runtime, session, registry, claim, result, after)
    for action in after:
        action()


def _settle_done(
    runtime: Runtime,
    session: Session,
    registry: EventHandlers,
    done: list[tuple[_Claim, str | None]],
    after: _After,
) -> None:
    """Mark a batch's handled events done: one UPDATE per (attempt number, outcome) and
    ``RENEW_CHUNK`` rows, fenced like ``settle_claimed``, not one statement per event."""
    now = runtime.clock()
    groups: dict[tuple[int, str], list[_Claim]] = {}
    for claim, result in done:
        outcome = (str(result) if result else "ok")[:200]
        groups.setdefault((claim.attempts, outcome), []).append(claim)
    table = cast(Table, InboxEvent.__table__)
    for (attempts, outcome), claims in groups.items():
        for start in range(0, len(claims), RENEW_CHUNK):
            chosen = claims[start : start + RENEW_CHUNK]
            answer = session.execute(
                update(table)
                .where(
                    table.c.id.in_([c.id for c in chosen]),
                    table.c.status == PROCESSING,
                    table.c.attempts == attempts,
                )
                .values(status=DONE, outcome=outcome, processed_at=now, next_attempt_at=now)
            )
            won = int(getattr(answer, "rowcount", 0) or 0)
            if won < len(chosen):
                log.warning(
                    "%d inbox event(s) were re-claimed by another worker; results dropped",
                    len(chosen) - won,
                )
                continue  # which ones is unknown: not counted
            by_type: dict[str, int] = {}
            for claim in chosen:
                by_type[claim.event_type] = by_type.get(claim.event_type, 0) + 1
            for event_type, count in by_type.items():
                after.append(_count_done(runtime, registry.source, event_type, count))


def _count_done(runtime: Runtime, source: str, event_type: str, count: int) -> Callable[[], None]:
    return lambda: runtime.metrics.events.labels(
        source=source, type=event_type, outcome="done"
    ).inc(count)


def process_due_events(
    runtime: Runtime,
    registry: EventHandlers,
    *,
    limit: int = 100,
    lease: timedelta = DEFAULT_LEASE,
) -> int:
    """Process up to ``limit`` due events of ``registry.source``, each once; returns how many.

    One event per claim, so a lease only has to cover one handler call -- except events with
    a batch handler, leased together with up to ``jobs.event_batch_size`` others of its
    types (the count may then pass ``limit``). Safe to run in several workers at once (see
    the module docstring).
    """
    batch_size = int(runtime.config.section("jobs")["event_batch_size"])
    move_spooled(runtime)
    # This pass handles what had arrived when it started. Events that arrive meanwhile wait
    # for the next pass (``worker_loop.MIN_GAP_SECONDS`` later) and go in its batch: a pass
    # that took each new event the moment it was stored never ended under a stream of
    # webhooks, and handled them a few at a time, which cost the worker two thirds of a core
    # at any rate from 100 to 400 events/s (bench/serve_intake.py, docs/benchmarks.md).
    with runtime.db.reading() as session:  # the newest id of any source: the primary key
        through = session.scalar(select(func.max(InboxEvent.id)))
    handled = 0
    while handled < limit and through is not None:
        with runtime.db.session() as session:
            now = runtime.clock()
            claim = claim_next(session, registry.source, now, lease, through)
            batch = registry.batch_handler_for(claim.event_type) if claim is not None else None
            more = (
                claim_more(session, registry.source, batch[1], now, lease, batch_size - 1, through)
                if batch is not None
                else []
            )
        if claim is None:
            break
        if batch is None:
            _process_one(runtime, registry, claim)
            handled += 1
            continue
        _process_batch(runtime, registry, batch[0], [claim, *more])
        handled += 1 + len(more)
    return handled


def busy(session: Session, source: str, now: datetime) -> bool:
    """Whether events of ``source`` are due or being handled right now (more work is on its
    way to the outbox: see the outbox's "Filling batches"). Events waiting out a backoff
    do not count."""
    # ``due`` or being handled, written so the (status, next_attempt_at) index answers it:
    # the drain asks this while a burst arrives, holding SQLite's write lock meanwhile.
    waiting = session.scalar(
        select(InboxEvent.id)
        .where(
            InboxEvent.status.in_((PENDING, PROCESSING)),
            InboxEvent.source == source,
            or_(
                InboxEvent.status == PROCESSING,
                InboxEvent.next_attempt_at <= now,
                InboxEvent.attempts == 0,
            ),
        )
        .limit(1)
    )
    return waiting is not None


def received_since(session: Session, source: str, since: datetime) -> bool:
    """Whether the newest event of ``source`` arrived after ``since``: events are still
    arriving, so more work is on its way even when the worker has caught up with the inbox.
    One look at the newest row by id (the primary key), whatever the inbox's size."""
    newest = session.scalar(
        select(InboxEvent.received_at)
        .where(InboxEvent.source == source)
        .order_by(InboxEvent.id.desc())
        .limit(1)
    )
    if newest is None:
        return False
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    return newest > since


# --------------------------------------------------------------------------- operator actions


class NotReplayable(Exception):
    pass


def replay_event(session: Session, event_id: int, *, actor: str, now: datetime) -> InboxEvent:
    """Re-queue an event (parked, failed, done or ignored) to be processed again, audited."""
    row = session.get(InboxEvent, event_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no inbox event with id {event_id}")
    if row.status == PROCESSING and row.next_attempt_at > now:
        raise NotReplayable(f"inbox event {event_id} is being processed right now; try later")
    previous = {"status": row.status, "attempts": row.attempts, "outcome": row.outcome}
    row.status = PENDING
    row.attempts = 0
    row.next_attempt_at = now
    row.processed_at = None
    row.outcome = None
    audit.record(
        session,
        actor=actor,
        action="inbox.replay",
        subject_type="inbox_event",
        subject_id=str(row.id),
        source=row.source,
        event_id=row.event_id,
        event_type=row.event_type,
        previous=previous,
    )
    return row


def list_events(
    session: Session,
    *,
    failed: bool = False,
    source: str | None = None,
    limit: int = 50,
) -> list[InboxEvent]:
    """Newest first. ``failed``: parked, or pending after at least one failed attempt."""
    stmt = select(InboxEvent).order_by(InboxEvent.id.desc()).limit(limit)
    if failed:
        stmt = stmt.where(failing(InboxEvent))
    if source:
        stmt = stmt.where(InboxEvent.source == source)
    return list(session.scalars(stmt))
