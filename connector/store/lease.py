"""Leased rows, the inbox's and the outbox's alike: their statuses, which are due, which are
failing, and settling one only while it still carries our claim.

A row is ``pending`` until a worker claims it: the claim sets ``status`` to ``processing``,
increments ``attempts`` and sets ``next_attempt_at`` to the lease's end; the attempt number
is the fencing token. The row ends ``done`` (or goes back to ``pending`` with a backoff) or,
when it keeps failing, ``parked`` for a person. A worker that overran its lease (or died and
came back) finds the row re-claimed under a new attempt number, and its late result is
dropped instead of overwriting the new one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.orm import Session

from connector.store.models import InboxEvent, OutboxMessage

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
