"""Engine and session factory for SQLite (embedded default) and PostgreSQL (several instances)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


#: How long a transaction waits for SQLite's write lock before it fails "database is locked".
LOCK_WAIT_SECONDS = 30
#: Polling interval while waiting for the lock: first and longest.
_FIRST_POLL_SECONDS = 0.0005
_LONGEST_POLL_SECONDS = 0.002


def begin_immediate(dbapi_connection: Any, wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
    """``BEGIN IMMEDIATE``, polling for the write lock every 0.5 to 2 ms instead of SQLite's
    busy handler.

    Why: the busy handler sleeps on a back-off schedule (1, 2, 5, 10, 15, 20, 25, 50, 100 ms),
    so a webhook's one-row insert that finds the worker's transaction in progress sleeps on
    long after the lock is free; measured under ``dealbridge serve`` that put the intake's p99
    at 135 ms against 39 ms for the web process alone (docs/benchmarks.md). Polling finely
    takes the lock within about a millisecond of its release, in every process alike.
    """
    deadline = time.monotonic() + wait_seconds
    poll = _FIRST_POLL_SECONDS
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(poll)
            poll = min(poll * 2, _LONGEST_POLL_SECONDS)
    finally:
        cursor.execute(f"PRAGMA busy_timeout={LOCK_WAIT_SECONDS * 1000}")
        cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite make the parent folder and turn on WAL and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": LOCK_WAIT_SECONDS},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Manage transactions ourselves (see the "begin" hook) instead of pysqlite.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={LOCK_WAIT_SECONDS * 1000}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Any) -> None:
            # Take the write lock at BEGIN so two workers never both read-then-write the
            # same row: SQLite has no SELECT ... FOR UPDATE.
            begin_immediate(conn.connection.dbapi_connection)

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


class _Held(threading.local):
    """What this thread holds of the store: open sessions and checked-out connections."""

    def __init__(self) -> None:
        self.sessions = 0
        self.connections = 0


_held = _Held()


def holding_store() -> bool:
    """True while this thread has a store session open or a connection checked out: on
    SQLite that may be the write lock, on PostgreSQL row locks. No network call may be made
    then (``connector.runtime`` guards the Stripe gateway and the CRM adapter with it)."""
    return _held.sessions > 0 or _held.connections > 0


def _track_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _checkout(*_args: Any) -> None:
        _held.connections += 1

    @event.listens_for(engine, "checkin")
    def _checkin(*_args: Any) -> None:
        _held.connections = max(_held.connections - 1, 0)


class Database:
    """Owns the engine and hands out transactional sessions."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        _track_connections(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any exception."""
        _held.sessions += 1
        try:
            with self._sessions() as session, session.begin():
                yield session
        finally:
            _held.sessions -= 1

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
