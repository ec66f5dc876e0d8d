"""SQLite's write lock: taken at ``BEGIN IMMEDIATE``, polled for finely, one thread per
process at a time. Shared by the store (``store/db.py``) and the intake spool
(``store/intake_spool.py``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

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


class WriterGate:
    """One writer at a time per process, queued on a Python lock, before ``BEGIN IMMEDIATE``.

    Why: SQLite's write lock is one per file, and a thread that waits for it polls (see
    ``begin_immediate``). With eight web threads all polling, the thread that finally gets
    the lock competes for the interpreter with seven others waking every millisecond, so
    a one-row insert held the lock for 4 ms on average and up to 110 ms (measured under
    ``bench.serve_intake`` at 200 events/s, docs/benchmarks.md). Behind the gate only one
    thread per process polls; the others sleep on the lock until it is their turn, and the
    holder runs its short transaction at full speed. The gate is released when the
    transaction ends (commit, rollback, or its connection returned or invalidated), by
    whichever thread ends it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None  # id() of the DB-API connection in the transaction

    def enter(self, dbapi_connection: Any) -> None:
        wait_seconds = LOCK_WAIT_SECONDS
        if not self._lock.acquire(timeout=wait_seconds):
            raise sqlite3.OperationalError(
                f"database is locked: another thread of this process kept the write lock "
                f"for over {wait_seconds:g} s"
            )
        self._holder = id(dbapi_connection)

    def leave(self, dbapi_connection: Any) -> None:
        if self._holder is not None and self._holder == id(dbapi_connection):
            self._holder = None
            self._lock.release()
