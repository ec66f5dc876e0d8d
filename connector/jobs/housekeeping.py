"""Housekeeping: keep the inbox and the outbox from growing without bound.

Only finished rows are pruned, after ``jobs.retention_days``. Failed, parked and pending rows
stay until a person or a retry settles them. Pruning a finished inbox event forgets its id,
which is safe once Stripe has stopped redelivering it (three days). Pruning a delivered
outbox message is always safe: its dedupe key is unique per emission, and no later message
of its ordering key waits on a message that is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select

from connector.runtime import Runtime
from connector.store.models import InboxEvent, OutboxMessage


def _cutoff(runtime: Runtime) -> datetime:
    return runtime.clock() - timedelta(days=int(runtime.config.section("jobs")["retention_days"]))


def _prunable_inbox(cutoff: datetime) -> ColumnElement[bool]:
    return (InboxEvent.status.in_(("done", "ignored"))) & (InboxEvent.processed_at < cutoff)


def _prunable_outbox(cutoff: datetime) -> ColumnElement[bool]:
    return (OutboxMessage.status == "done") & (OutboxMessage.done_at < cutoff)


@dataclass(frozen=True)
class Retention:
    """The retention setting, and what pruning now would remove (admins see it first)."""

    days: int
    cutoff: datetime
    inbox_prunable: int
    outbox_prunable: int


def retention(runtime: Runtime) -> Retention:
    cutoff = _cutoff(runtime)
    with runtime.db.session() as session:
        inbox = session.scalar(
            select(func.count()).select_from(InboxEvent).where(_prunable_inbox(cutoff))
        )
        outbox = session.scalar(
            select(func.count()).select_from(OutboxMessage).where(_prunable_outbox(cutoff))
        )
    return Retention(
        days=int(runtime.config.section("jobs")["retention_days"]),
        cutoff=cutoff,
        inbox_prunable=int(inbox or 0),
        outbox_prunable=int(outbox or 0),
    )


def prune_inbox(runtime: Runtime) -> int:
    """Forget processed events after the retention period; failed and parked ones stay."""
    cutoff = _cutoff(runtime)
    with runtime.db.session() as session:
        result = session.execute(delete(InboxEvent).where(_prunable_inbox(cutoff)))
        return int(getattr(result, "rowcount", 0) or 0)


def prune_outbox(runtime: Runtime) -> int:
    """Forget delivered writes after the retention period; parked and pending ones stay."""
    cutoff = _cutoff(runtime)
    with runtime.db.session() as session:
        result = session.execute(delete(OutboxMessage).where(_prunable_outbox(cutoff)))
        return int(getattr(result, "rowcount", 0) or 0)
