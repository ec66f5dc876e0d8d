"""Settling a leased row: the write lands only if the row still carries our claim.

The inbox and the outbox lease rows the same way: a claim sets ``status`` to
``processing`` and increments ``attempts``, and that attempt number is the fencing token.
A worker that overran its lease (or died and came back) finds the row re-claimed under a
new attempt number, and its late result is dropped instead of overwriting the new one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from connector.store.models import InboxEvent, OutboxMessage

PROCESSING = "processing"


def settle_claimed(
    session: Session,
    model: type[InboxEvent] | type[OutboxMessage],
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
