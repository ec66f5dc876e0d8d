"""On SQLite every transaction takes the write lock at BEGIN (``store/db.py``); a transaction
that finds it taken polls for it finely and fails clearly at its deadline."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from connector.store.db import Database, begin_immediate

PATIENCE = 10


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "lock.sqlite3"
    _raw(file).execute("CREATE TABLE t (x INTEGER)")
    return file


def test_a_waiting_transaction_takes_the_lock_once_it_is_released(path: Path) -> None:
    holder, waiter = _raw(path), _raw(path)
    holder.execute("BEGIN IMMEDIATE")
    started, took = threading.Event(), threading.Event()

    def wait_for_lock() -> None:
        started.set()
        begin_immediate(waiter, wait_seconds=PATIENCE)
        took.set()

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    assert started.wait(PATIENCE)
    assert not took.is_set()  # the lock is still held
    holder.execute("COMMIT")
    thread.join(PATIENCE)
    assert took.is_set()
    waiter.execute("INSERT INTO t VALUES (1)")
    waiter.execute("COMMIT")


def test_a_lock_held_past_the_deadline_fails_saying_so(path: Path) -> None:
    holder, waiter = _raw(path), _raw(path)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_immediate(waiter, wait_seconds=0.05)
    holder.execute("COMMIT")
    # The connection's own busy timeout is back for the statements after BEGIN.
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000


def test_every_session_begins_with_the_write_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/db.sqlite3")
    other = _raw(tmp_path / "db.sqlite3")
    with db.session() as session:
        session.execute(text("SELECT 1"))
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            begin_immediate(other, wait_seconds=0.01)
    db.dispose()
