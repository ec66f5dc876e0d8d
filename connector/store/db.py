"""Engine and session factory for SQLite (embedded default) and PostgreSQL (several instances)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from connector.store.intake_spool import IntakeSpool, spool_path
from connector.store.sqlite_lock import LOCK_WAIT_SECONDS, WriterGate, begin_immediate

__all__ = ["LOCK_WAIT_SECONDS", "Database", "begin_immediate", "holding_store", "is_postgres"]


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


#: Execution option of the engine behind ``Database.reading``: the transaction only reads.
READ_ONLY = "dealbridge_read_only"


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

        gate = WriterGate()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            dbapi_connection = conn.connection.dbapi_connection
            if conn.get_execution_options().get(READ_ONLY):
                # A WAL reader: sees the last commit, never waits for nor blocks a writer.
                dbapi_connection.execute("BEGIN")
                return
            # Take the write lock at BEGIN so two workers never both read-then-write the
            # same row: SQLite has no SELECT ... FOR UPDATE.
            gate.enter(dbapi_connection)
            try:
                begin_immediate(dbapi_connection)
            except BaseException:
                gate.leave(dbapi_connection)
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _sqlite_end(conn: Any) -> None:
            gate.leave(conn.connection.dbapi_connection)

        @event.listens_for(engine, "checkin")
        @event.listens_for(engine, "invalidate")
        def _sqlite_returned(dbapi_connection: Any, *_args: Any) -> None:
            gate.leave(dbapi_connection)  # a transaction that ended without COMMIT/ROLLBACK

        return engine
    engine = create_engine(url, **kwargs)
    _ping_after_idle(engine)
    return engine


#: A pooled PostgreSQL connection unused for longer than this is pinged before it is handed
#: out; one returned more recently is handed out as it is.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_after_idle(engine: Engine) -> None:
    """``pool_pre_ping``, but only for connections that sat idle in the pool.

    A server restart, a failover or an idle timeout drops connections while they wait in
    the pool, so those are pinged (the dialect's own ``do_ping``) and replaced if dead:
    SQLAlchemy's documented custom pessimistic disconnect handling, a ``DisconnectionError``
    from ``checkout``. Pinging every checkout doubled the round trips of a webhook's
    acknowledgement (one INSERT) and of the worker's short transactions. A connection that
    dies within the second after its last use fails its next statement instead; SQLAlchemy
    then invalidates the pool, and the intake insert, which is idempotent, is retried once
    (``services.inbox.store_event``).
    """

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")  # None: connected just now
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise DisconnectionError(f"pooled connection dropped while idle: {exc}") from exc
            raise


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


def _refuse_writes(session: Session, *_args: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a reading session cannot write: use Database.session()")


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
        self._reader = self.engine.execution_options(**{READ_ONLY: True})
        self._reads = sessionmaker(self._reader, expire_on_commit=False, autoflush=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any exception."""
        _held.sessions += 1
        try:
            with self._sessions() as session, session.begin():
                yield session
        finally:
            _held.sessions -= 1

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite a WAL reader, which neither takes nor
        waits for the write lock, so a look at the queues never delays a webhook's insert.
        It sees the store as of its first statement; anything decided from it must be
        re-checked under a write transaction (a claim does). Writing in it is refused."""
        _held.sessions += 1
        try:
            with self._reads() as session, session.begin():
                event.listen(session, "before_flush", _refuse_writes)
                yield session
        finally:
            _held.sessions -= 1

    @contextmanager
    def looking(self) -> Iterator[Connection]:
        """``reading``'s transaction on a Core connection, without an ORM session: for a
        hot path's one or two statements (a webhook's duplicate check costs a third of the
        CPU through a session)."""
        _held.sessions += 1
        try:
            with self._reader.connect() as connection, connection.begin():
                yield connection
        finally:
            _held.sessions -= 1

    @contextmanager
    def one_write(self) -> Iterator[Connection]:
        """A Core connection for exactly one write statement, atomic by itself (storing an
        inbound event, a webhook's acknowledgement): no ORM session.

        On PostgreSQL the statement runs in autocommit: a transaction around it cost two
        more round trips (BEGIN, COMMIT) and a third of the client's CPU per webhook. On
        SQLite it is a write transaction, as every write is there (the write lock is taken
        at BEGIN, ``store/sqlite_lock.py``)."""
        _held.sessions += 1
        try:
            if is_postgres(self.engine):
                autocommit = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                with autocommit as connection:
                    yield connection
            else:
                with self.engine.connect() as connection, connection.begin():
                    yield connection
        finally:
            _held.sessions -= 1

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    @cached_property
    def intake_spool(self) -> IntakeSpool | None:
        """Where the web process spools inbound events on a SQLite store (None on
        PostgreSQL): see ``store/intake_spool.py``."""
        path = spool_path(self.url)
        return IntakeSpool(path) if path is not None else None

    def dispose(self) -> None:
        if "intake_spool" in self.__dict__ and self.intake_spool is not None:
            self.intake_spool.close()
        self.engine.dispose()
