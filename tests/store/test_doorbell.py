"""The worker's doorbell rings when another process queues work (``store/doorbell.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from connector.store.db import Database
from connector.store.doorbell import Doorbell
from connector.store.models import InboxEvent, OutboxMessage, Plan

pytestmark = pytest.mark.postgresql(
    reason="the doorbell reads outside the ORM's transactions: PostgreSQL must see new commits"
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def doorbell(db: Database) -> Iterator[Doorbell]:
    bell = Doorbell(db.engine)
    yield bell
    bell.close()


def _event(db: Database) -> None:
    with db.session() as session:
        session.add(
            InboxEvent(
                source="stripe", event_id=f"evt_{uuid.uuid4().hex}", event_type="invoice.paid",
                payload="{}", received_at=NOW, status="pending", attempts=0, next_attempt_at=NOW,
            )
        )  # fmt: skip


def test_the_first_look_only_takes_note(db: Database, doorbell: Doorbell) -> None:
    _event(db)
    assert doorbell.rang() == set()


def test_it_rings_once_for_a_new_inbox_event(db: Database, doorbell: Doorbell) -> None:
    doorbell.rang()
    _event(db)
    assert doorbell.rang() == {"inbox"}
    assert doorbell.rang() == set()


def test_it_rings_for_a_new_outbox_message(db: Database, doorbell: Doorbell) -> None:
    doorbell.rang()
    with db.session() as session:
        session.add(
            OutboxMessage(kind="crm_invoice", ordering_key="in_1", payload={}, status="pending",
                          attempts=0)
        )  # fmt: skip
    assert doorbell.rang() == {"outbox"}


def test_it_rings_for_an_approval(db: Database, doorbell: Doorbell) -> None:
    with db.session() as session:
        session.add(Plan(id=str(uuid.uuid4()), deal_id="006A", status="in_review"))
    doorbell.rang()
    with db.session() as session:
        plan = session.query(Plan).one()
        plan.status, plan.approval_seq = "approved", 1
    assert doorbell.rang() == {"approvals"}


def test_other_writes_do_not_ring(db: Database, doorbell: Doorbell) -> None:
    _event(db)
    doorbell.rang()
    with db.session() as session:
        session.query(InboxEvent).update({"status": "done", "processed_at": NOW})
    assert doorbell.rang() == set()


def test_looking_takes_no_write_lock(db: Database, doorbell: Doorbell) -> None:
    """A look between two writes of another session never blocks them (on SQLite the
    ORM's sessions take the write lock at BEGIN)."""
    doorbell.rang()
    with db.session():
        assert doorbell.rang() == set()  # answered while a write transaction is open


def test_on_sqlite_it_rings_the_inbox_for_an_event_the_web_process_spooled(
    sqlite_db: Database,
) -> None:
    spool = sqlite_db.intake_spool
    assert spool is not None
    bell = Doorbell(sqlite_db.engine, spool)
    try:
        bell.rang()
        spool.put("stripe", "evt_1", "invoice.paid", "{}", handled=True, received_at=NOW)
        assert bell.rang() == {"inbox"}
        assert bell.rang() == set()
    finally:
        bell.close()
