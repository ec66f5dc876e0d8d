"""Leased rows, the inbox's and the outbox's alike: their statuses, which are due, which are
failing, and settling one only while it still carries our claim.

A row is ``pending`` until a worker claims it: the claim sets ``status`` to ``processing``,
increments ``attempts`` and sets ``next_attempt_at`` to the lease's end; the attempt number
is the fencing token. The row ends ``done`` (or goes back to ``pending`` with a backoff) or,
when it keeps failing, ``parked`` for a person. A worker that overran its lease (or died and
came back) finds the row re-claimed under a new attempt number, and its late result is
dropped instead of overwriting the new one.

Leases are short (``SHORT_LEASE``, 30 s) and renewed while the work runs: the process that
holds a claim registers it with its ``LeaseKeeper``, whose thread pushes the lease's end
forward every ``RENEW_EVERY`` (10 s), each renewal in its own short transaction. A process
that dies (kill -9, lost machine) stops renewing, and its claims are taken over by the next
worker within 30 s instead of waiting out a long lease; a live one keeps its claim however
long a Stripe or CRM call takes.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.orm import Session

from connector.store.db import Database
from connector.store.models import InboxEvent, OutboxMessage

log = logging.getLogger(__name__)

#: How long a claim lasts without renewal: how soon a dead process's work is taken over.
SHORT_LEASE = timedelta(seconds=30)
#: How often a live process renews the claims it holds (a third of the lease).
RENEW_EVERY = timedelta(seconds=10)

PENDING, PROCESSING, DONE, PARKED = "pending", "processing", "done", "parked"

Leased = type[InboxEvent] | type[OutboxMessage]


def due(model: Leased, now: datetime) -> ColumnElement[bool]:
    """Rows a worker may claim now: pending ones whose retry time came, expired leases, and
    pending rows never tried, whatever their timestamp (a row stored with the wall clock
    must not wait for a test's frozen clock)."""
    return and_(
        model.status.in_((PENDING, PROCESSING)),
        or_(
            model.next_attempt_at <= now,
            (model.status == PENDING) & (model.attempts == 0),
        ),
    )


def failing(model: Leased) -> ColumnElement[bool]:
    """Rows a person should look at: parked, or pending after at least one failed attempt."""
    return or_(model.status == PARKED, (model.status == PENDING) & (model.attempts > 0))


def settle_claimed(
    session: Session,
    model: Leased,
    row_id: int,
    attempts: int,
    **values: Any,
) -> bool:
    """Write ``values`` if the row is still ours; False if another worker re-claimed it."""
    result = session.execute(
        update(model)
        .where(model.id == row_id, model.status == PROCESSING, model.attempts == attempts)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


#: Rows per renewal UPDATE: well under SQLite's bound on query parameters.
RENEW_CHUNK = 500


def renew_claimed(
    session: Session, model: Leased, row_ids: list[int], attempts: dict[int, int], until: datetime
) -> None:
    """Push the lease of rows we still hold (same attempt number) to ``until``: one UPDATE
    per attempt number and ``RENEW_CHUNK`` rows (a batch claims a thousand at once)."""
    by_attempts: dict[int, list[int]] = {}
    for row_id in row_ids:
        by_attempts.setdefault(attempts[row_id], []).append(row_id)
    for attempt, ids in by_attempts.items():
        for start in range(0, len(ids), RENEW_CHUNK):
            session.execute(
                update(model)
                .where(
                    model.id.in_(ids[start : start + RENEW_CHUNK]),
                    model.status == PROCESSING,
                    model.attempts == attempt,
                )
                .values(next_attempt_at=until)
                .execution_options(synchronize_session=False)
            )


#: Renews one claim: given a session and the lease's new end, extend it if still ours.
Renewal = Callable[[Session, datetime], None]


class LeaseKeeper:
    """Renews, from one background thread, the leases of every claim this process holds.

    ``hold(renewal)`` registers a claim for the duration of a ``with`` block; the thread
    calls every registered renewal each ``every`` with ``clock() + lease``. ``renew_now()``
    is the thread's tick, callable directly (tests drive it instead of waiting).
    """

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        *,
        lease: timedelta = SHORT_LEASE,
        every: timedelta = RENEW_EVERY,
    ) -> None:
        self.db = db
        self.clock = clock
        self.lease = lease
        self.every = every
        self._held: dict[int, Renewal] = {}
        self._ids = itertools.count()
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def hold(self, renewal: Renewal) -> Iterator[None]:
        with self._mutex:
            token = next(self._ids)
            self._held[token] = renewal
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="dealbridge-lease-keeper", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._mutex:
                self._held.pop(token, None)

    def renew_now(self) -> int:
        """Renew every held claim now; returns how many renewals ran."""
        with self._mutex:
            renewals = list(self._held.values())
        if not renewals:
            return 0
        until = self.clock() + self.lease
        with self.db.session() as session:
            for renewal in renewals:
                renewal(session, until)
        return len(renewals)

    def _run(self) -> None:
        while not self._wake.wait(self.every.total_seconds()):
            try:
                self.renew_now()
            except Exception:
                log.exception("renewing leases failed; trying again in %s", self.every)

    def stop(self) -> None:
        self._wake.set()
