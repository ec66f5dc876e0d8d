"""The worker's doorbell: has new work been queued in the store since the last look?

Why: the worker's jobs used to look for work every ``jobs.worker_seconds`` (2 s), and a
Stripe event waited for one tick to be handled and another for its CRM write to be sent:
about 4 s from a change in Stripe to the CRM record (bench/freshness.py). Another process (the
web process storing a webhook or a CRM push, an approval on the review page, a CLI command)
cannot call into the worker, but it writes rows the worker can see. The doorbell looks,
several times a second, at the newest row of each queue: inbox events, outbox messages and
plan approvals (``plans.approval_seq``), and on SQLite the intake spool where the web process
puts webhooks (``store/intake_spool.py``; it rings as the inbox). Each look is one index
lookup per queue on a plain connection outside any transaction the ORM opens, so on SQLite it
never takes the write lock (a WAL reader) and on PostgreSQL it takes no row lock.

A ring only says "look now"; the jobs still claim their work under leases, so a ring that a
job misses (or one that rings for nothing) costs time, never correctness.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import Engine

from connector.store.intake_spool import IntakeSpool

#: The queues the doorbell watches, in the order of ``_NEWEST``'s columns.
QUEUES = ("inbox", "outbox", "approvals")
_NEWEST = (
    "SELECT (SELECT MAX(id) FROM inbox_events), (SELECT MAX(id) FROM outbox_messages), "
    "(SELECT MAX(approval_seq) FROM plans)"
)


class Doorbell:
    """``rang()`` names the queues with a row newer than at the previous call."""

    def __init__(self, engine: Engine, spool: IntakeSpool | None = None) -> None:
        self._engine = engine
        self._spool = spool
        self._queues = QUEUES + (("inbox",) if spool is not None else ())
        self._connection: Any = None
        self._seen: tuple[Any, ...] | None = None

    def rang(self) -> frozenset[str]:
        newest = self._newest()
        seen, self._seen = self._seen, newest
        if seen is None:
            return frozenset()
        return frozenset(
            q for q, now, before in zip(self._queues, newest, seen, strict=True) if now != before
        )

    def _newest(self) -> tuple[Any, ...]:
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        try:
            cursor = self._connection.cursor()
            try:
                cursor.execute(_NEWEST)
                row = cursor.fetchone()
            finally:
                cursor.close()
            # End the read transaction (PostgreSQL opens one per statement batch) so the
            # next look sees rows committed since.
            self._connection.rollback()
        except Exception:
            self.close()  # a broken connection is replaced at the next look
            raise
        if self._spool is not None:
            return (*row, self._spool.newest_id())
        return tuple(row)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # closing a connection that already failed
                self._connection.close()
            self._connection = None
