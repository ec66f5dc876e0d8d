"""On SQLite every writing transaction takes the write lock at BEGIN (``store/db.py``,
``store/sqlite_lock.py``); a transaction that finds it taken polls for it finely and fails
clearly at its deadline; one thread per process polls while the others queue; readers take
no lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from connector.store import sqlite_lock
from connector.store.db import Database, begin_immediate
from connector.store.models import Cursor

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


# --------------------------------------------------------------------------- one writer per process


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path}/db.sqlite3")
    with db.session() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    yield db
    db.dispose()


def test_a_second_writer_of_the_process_waits_for_the_first_then_writes(store: Database) -> None:
    first_in, second_done = threading.Event(), threading.Event()
    seen: list[int] = []

    def second() -> None:
        first_in.wait(PATIENCE)
        with store.session() as session:
            seen.append(session.execute(text("SELECT COUNT(*) FROM t")).scalar_one())
            session.execute(text("INSERT INTO t VALUES (2)"))
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    with store.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        first_in.set()
        assert not second_done.wait(0.05)  # it waits for this transaction
    thread.join(PATIENCE)
    assert seen == [1]  # and began after it committed
    with store.session() as session:
        assert session.execute(text("SELECT COUNT(*) FROM t")).scalar_one() == 2


def test_a_transaction_that_fails_lets_the_next_writer_in(store: Database) -> None:
    with pytest.raises(ZeroDivisionError), store.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        _ = 1 / 0
    with store.session() as session:  # not stuck behind the failed one
        assert session.execute(text("SELECT COUNT(*) FROM t")).scalar_one() == 0


def test_a_writer_stuck_past_the_deadline_fails_saying_so(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_lock, "LOCK_WAIT_SECONDS", 0.05)
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with store.session() as session:
                session.execute(text("SELECT 1"))
        except sqlite3.OperationalError as exc:
            failures.append(exc)

    with store.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(PATIENCE)
    assert len(failures) == 1 and "another thread of this process" in str(failures[0])


def test_a_reader_neither_waits_for_nor_blocks_a_writer(store: Database) -> None:
    with store.session() as writing:
        writing.execute(text("INSERT INTO t VALUES (1)"))
        with store.reading() as reading:  # would wait for the write lock if it took it
            assert reading.execute(text("SELECT COUNT(*) FROM t")).scalar_one() == 0
        with store.looking() as looking:
            assert looking.execute(text("SELECT COUNT(*) FROM t")).scalar_one() == 0
    with store.reading() as reading:
        assert reading.execute(text("SELECT COUNT(*) FROM t")).scalar_one() == 1


def test_a_reading_session_refuses_to_write(store: Database) -> None:
    with pytest.raises(RuntimeError, match="cannot write"), store.reading() as session:
        session.add(Cursor(name="c", value="1", updated_at=datetime.now(UTC)))
        session.flush()
