"""The intake spool (``store/intake_spool.py``): where the web process puts inbound events on
SQLite, once per source and event id, and deletes those the worker has moved."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.store.cursors import save_cursor
from connector.store.db import Database
from connector.store.intake_spool import (
    MOVED_CURSOR,
    PRUNE_PER_PUT,
    IntakeSpool,
    spool_path,
)
from connector.store.migrate import upgrade

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[IntakeSpool]:
    opened = IntakeSpool(tmp_path / "store.intake.sqlite3")
    yield opened
    opened.close()


def _put(spool: IntakeSpool, event_id: str, moved_through: int = 0, source: str = "stripe") -> bool:
    return spool.put(
        source,
        event_id,
        "invoice.paid",
        f'{{"id": "{event_id}"}}',
        handled=True,
        received_at=NOW,
        moved_through=moved_through,
    )


def _ids(spool: IntakeSpool) -> list[int]:
    return [event.id for event in spool.after(0, 1_000)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////data/dealbridge.sqlite3", "/data/dealbridge.intake.sqlite3"),
        ("sqlite:////data/store.db", "/data/store.intake.db"),
        ("sqlite:////data/store", "/data/store.intake.sqlite3"),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("postgresql+psycopg://dealbridge@db/dealbridge", None),
    ],
)
def test_the_spool_lives_beside_a_sqlite_file_and_nowhere_else(
    url: str, expected: str | None
) -> None:
    path = spool_path(url)
    assert (str(path) if path is not None else None) == expected


def test_an_event_is_spooled_once_per_source_and_event_id(spool: IntakeSpool) -> None:
    assert _put(spool, "evt_1") is True
    assert _put(spool, "evt_1") is False
    assert _put(spool, "evt_1", source="crm") is True
    assert [(e.source, e.event_id) for e in spool.after(0, 10)] == [
        ("stripe", "evt_1"),
        ("crm", "evt_1"),
    ]


def test_spooled_events_read_back_as_they_were_received_oldest_first(spool: IntakeSpool) -> None:
    spool.put(
        "stripe", "evt_a", "plan.created", "{}", handled=False, received_at=NOW
    )  # fmt: skip
    _put(spool, "evt_b")
    first, second = spool.after(0, 10)
    assert (first.event_id, first.event_type, first.handled) == ("evt_a", "plan.created", False)
    assert first.received_at == NOW and first.received_at.tzinfo is not None
    assert (second.event_id, second.handled) == ("evt_b", True)
    assert [e.event_id for e in spool.after(first.id, 10)] == ["evt_b"]
    assert [e.event_id for e in spool.after(0, 1)] == ["evt_a"]


def test_a_naive_receipt_time_is_refused(spool: IntakeSpool) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        spool.put(
            "stripe",
            "evt_1",
            "invoice.paid",
            "{}",
            handled=True,
            received_at=NOW.replace(tzinfo=None),
        )
    assert _ids(spool) == []


def test_a_put_deletes_a_few_moved_events_and_never_one_not_moved(spool: IntakeSpool) -> None:
    for n in range(10):
        _put(spool, f"evt_{n}")
    ids = _ids(spool)
    moved = ids[6]  # the worker has moved the first seven
    _put(spool, "evt_new", moved_through=moved)
    assert _ids(spool)[0] == ids[PRUNE_PER_PUT]  # the oldest PRUNE_PER_PUT went
    _put(spool, "evt_newer", moved_through=moved)
    assert _ids(spool)[0] == ids[7]  # the rest of the moved ones; unmoved ones stay
    assert len(_ids(spool)) == 3 + 2


def test_ids_are_never_reused_after_a_delete(spool: IntakeSpool) -> None:
    _put(spool, "evt_1")
    _put(spool, "evt_2")
    newest = spool.newest_id()
    _put(spool, "evt_3", moved_through=newest)  # deletes both
    assert spool.newest_id() == newest + 1
    assert _ids(spool) == [newest + 1]


def test_waiting_counts_what_the_worker_has_not_moved(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/store.sqlite3")
    upgrade(db.url)
    spool = db.intake_spool
    assert spool is not None
    for n in range(3):
        _put(spool, f"evt_{n}")
    with db.session() as session:
        assert spool.waiting(session) == 3
        save_cursor(session, MOVED_CURSOR, str(_ids(spool)[1]), NOW)
    with db.session() as session:
        assert spool.waiting(session) == 1
    db.dispose()


def test_a_spool_of_another_layout_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "store.intake.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="has layout 99"):
        IntakeSpool(path)


def test_an_acknowledged_event_is_in_the_file_for_any_other_connection(
    spool: IntakeSpool,
) -> None:
    _put(spool, "evt_1")
    with sqlite3.connect(spool.path) as other:
        rows = other.execute("SELECT event_id FROM spooled_events").fetchall()
    assert rows == [("evt_1",)]


def test_the_web_process_commits_do_not_checkpoint_the_log(spool: IntakeSpool) -> None:
    """The worker checkpoints (``checkpoint``); a commit that did would hold its answer."""
    _put(spool, "evt_1")
    pages = spool._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    assert pages >= 10_000
    spool.checkpoint()  # and the worker's checkpoint neither fails nor loses anything
    assert [e.event_id for e in spool.after(0, 10)] == ["evt_1"]


def test_a_receipt_time_in_another_zone_reads_back_as_the_same_moment_in_utc(
    spool: IntakeSpool,
) -> None:
    elsewhere = NOW.astimezone(timezone(timedelta(hours=2)))
    spool.put("stripe", "evt_1", "invoice.paid", "{}", handled=True, received_at=elsewhere)
    (event,) = spool.after(0, 1)
    assert event.received_at == NOW
    assert event.received_at.utcoffset() == timedelta(0)
