"""Housekeeping: keep the inbox from growing without bound."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete

from connector.jobs.registry import Job
from connector.store.models import InboxEvent

if TYPE_CHECKING:
    from connector.runtime import Runtime

INBOX_RETENTION = timedelta(days=30)


def prune_inbox(runtime: Runtime) -> int:
    """Forget processed events after the retention period; failed and parked ones stay."""
    cutoff = runtime.clock() - INBOX_RETENTION
    with runtime.db.session() as session:
        result = session.execute(
            delete(InboxEvent).where(
                InboxEvent.status.in_(("done", "ignored")), InboxEvent.processed_at < cutoff
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


JOBS = [Job(name="prune_inbox", run=prune_inbox, role="clock", interval=lambda _rt: 86_400)]
