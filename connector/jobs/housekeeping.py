"""Housekeeping: keep the inbox and the outbox from growing without bound.

Only finished rows are pruned, after ``jobs.retention_days``. Failed, parked and pending rows
stay until a person or a retry settles them. Pruning a finished inbox event forgets its id,
which is safe once Stripe has stopped redelivering it (three days). Pruning a delivered
outbox message is always safe: its dedupe key is unique per emission, and no later message
of its ordering key waits on a message that is done.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete

from connector.runtime import Runtime
from connector.store.models import InboxEvent, OutboxMessage


def _cutoff(runtime: Runtime) -> datetime:
    return runtime.clock() - timedelta(days=int(runtime.config.section("jobs")["retention_days"]))


def prune_inbox(runtime: Runtime) -> int:
    """Forget processed events after the retention period; failed and parked ones stay."""
    cutoff = _cutoff(runtime)
    with runtime.db.session() as session:
        result = session.execute(
            delete(InboxEvent).where(
                InboxEvent.status.in_(("done", "ignored")), InboxEvent.processed_at < cutoff
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


def prune_outbox(runtime: Runtime) -> int:
    """Forget delivered writes after the retention period; parked and pending ones stay."""
    cutoff = _cutoff(runtime)
    with runtime.db.session() as session:
        result = session.execute(
            delete(OutboxMessage).where(
                OutboxMessage.status == "done", OutboxMessage.done_at < cutoff
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
