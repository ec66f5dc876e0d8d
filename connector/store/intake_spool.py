"""The intake spool: where the web process puts inbound events on SQLite, so that
acknowledging a webhook never waits for the worker's write lock.

Why: SQLite has one write lock per file. Under ``dealbridge serve`` the web process's
one-row inserts and the worker's transactions (claims, a batch of invoices written with
their CRM records) queued for the same lock, and a webhook's acknowledgement waited for the
worker: p50 330-430 ms and p99 0.7-1.0 s at 200 events/s, against p99 33-58 ms for the web
process alone (docs/benchmarks.md, "serve intake"). Stripe counts a slow acknowledgement as
a failure and retries, which adds load when it is highest.

How: a second SQLite file beside the store (``<name>.intake<suffix>``) holds one table of
received events. The web process inserts an event (once per source and event id) and
commits -- ``synchronous=FULL``, so an acknowledged event is on disk -- before it answers.
Only the web process writes it, so its inserts wait for nothing but each other: the worker
moves spooled events into the inbox (``services/inbox.py``, ``move_spooled``) in one store
transaction that also advances the store's cursor ``intake_spool``, so each is moved once
whatever crashes, and the web process deletes moved rows a few at a time in its own inserts.
(A worker that deleted them itself would hold the spool's lock at its lower CPU priority
under ``serve``, and could be preempted while a webhook waits.) Ids are ``AUTOINCREMENT``
(never reused after a delete) and SQLite commits one writer at a time, so a reader sees the
spool's ids as a gapless prefix: the cursor never skips a row.

PostgreSQL needs no spool (row locks let the web process insert beside the worker), nor
does an in-memory SQLite store (one process).

The spool is a queue, not part of the schema that migrations manage: it creates its one
table when it first opens, and ``PRAGMA user_version`` names its layout.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from connector.store.cursors import read_cursor
from connector.store.sqlite_lock import LOCK_WAIT_SECONDS, begin_immediate

#: The store's cursor naming the newest spooled event moved into the inbox.
MOVED_CURSOR = "intake_spool"
#: The write-ahead log's size, in pages, at which a commit checkpoints it itself. Far above
#: SQLite's 1,000: the worker checkpoints after each move (``checkpoint``), so the web
#: process's commits do not (a checkpoint in a commit held a webhook's answer for about
#: 90 ms); this only bounds the log if no worker runs.
AUTOCHECKPOINT_PAGES = 20_000
#: Moved events an insert deletes at most: the spool keeps up with any intake rate (one
#: event in, up to this many out), and no acknowledgement pays for a large delete (one of
#: 50 rows at a time put the p99 at 26-42 ms instead of 18 ms at 200 events/s).
PRUNE_PER_PUT = 4
#: The spool's layout; a file of another version is refused rather than misread.
LAYOUT_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    handled INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (source, event_id)
)
"""


@dataclass(frozen=True)
class SpooledEvent:
    id: int
    source: str
    event_id: str
    event_type: str
    payload: str
    handled: bool
    received_at: datetime


def spool_path(database_url: str) -> Path | None:
    """Where the spool of a store lives: beside a SQLite file; None for PostgreSQL and for
    an in-memory SQLite store."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    store = Path(url.database)
    return store.with_name(f"{store.stem}.intake{store.suffix or '.sqlite3'}")


class IntakeSpool:
    """One spool file, shared by this process's threads (a connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._registry = threading.Lock()
        # One writer of this process at a time polls for the file's lock (see store/sqlite_lock.py's
        # ``WriterGate`` for why); the others sleep on this lock meanwhile.
        self._writer = threading.Lock()
        #: The newest id this process deleted through (under ``_writer``; after a rollback,
        #: those rows go with the next delete, once the worker has moved more).
        self._pruned_through = 0
        self._ensure_layout()

    # ----------------------------------------------------------------------- connections

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT_SECONDS
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            self._local.conn = conn
            with self._registry:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        if not self._writer.acquire(timeout=LOCK_WAIT_SECONDS):
            raise sqlite3.OperationalError("database is locked: the intake spool's writer is stuck")
        try:
            begin_immediate(conn)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            self._writer.release()

    def _ensure_layout(self) -> None:
        with self._writing() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, LAYOUT_VERSION):
                raise RuntimeError(
                    f"the intake spool {self.path} has layout {version}, this dealbridge "
                    f"reads {LAYOUT_VERSION}: move its events with that version first"
                )
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version={LAYOUT_VERSION}")

    # ----------------------------------------------------------------------- the web's side

    def put(
        self,
        source: str,
        event_id: str,
        event_type: str,
        payload: str,
        *,
        handled: bool,
        received_at: datetime,
        moved_through: int = 0,
    ) -> bool:
        """Spool an event, committed to disk; False if this source's event is spooled already.

        ``moved_through``: the store's ``MOVED_CURSOR``; the oldest events up to it, which the
        worker has moved into the inbox, are deleted in the same transaction, at most
        ``PRUNE_PER_PUT`` at a time.
        """
        with self._writing() as conn:
            if moved_through > self._pruned_through and not __import__("os").environ.get("NOPRUNE"):
                deleted = conn.execute(
                    "DELETE FROM spooled_events WHERE id IN (SELECT id FROM spooled_events "
                    "WHERE id <= ? ORDER BY id LIMIT ?)",
                    (moved_through, PRUNE_PER_PUT),
                ).rowcount
                if deleted < PRUNE_PER_PUT:
                    self._pruned_through = moved_through
            cursor = conn.execute(
                "INSERT OR IGNORE INTO spooled_events "
                "(source, event_id, event_type, payload, handled, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (source, event_id, event_type, payload, int(handled), _text(received_at)),
            )
            return cursor.rowcount == 1

    # ----------------------------------------------------------------------- the worker's side

    def after(self, after_id: int, limit: int) -> list[SpooledEvent]:
        """Up to ``limit`` spooled events with an id above ``after_id``, oldest first. A read:
        it neither takes nor waits for the spool's write lock."""
        rows = self._connection().execute(
            "SELECT id, source, event_id, event_type, payload, handled, received_at "
            "FROM spooled_events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [SpooledEvent(r[0], r[1], r[2], r[3], r[4], bool(r[5]), _time(r[6])) for r in rows]

    def newest_id(self) -> int:
        """The id of the newest event ever spooled (0 for none): the doorbell's look."""
        row = (
            self._connection()
            .execute("SELECT seq FROM sqlite_sequence WHERE name = 'spooled_events'")
            .fetchone()
        )
        return int(row[0]) if row is not None else 0

    def waiting(self, session: Session) -> int:
        """Events spooled and not moved into the inbox yet (the store's ``MOVED_CURSOR``)."""
        return max(self.newest_id() - moved_through(session), 0)

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the spool file without waiting for its writers
        (``PASSIVE``), so that the next writer can start the log again from its beginning."""
        self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def close(self) -> None:
        with self._registry:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


def moved_through(session: Session) -> int:
    """The id of the newest spooled event moved into the inbox (0 before the first move)."""
    return int(read_cursor(session, MOVED_CURSOR) or 0)


def _text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text))
