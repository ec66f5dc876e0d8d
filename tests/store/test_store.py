"""The store on both back-ends: migrations, UTC round trips, unique keys for idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from connector.store import audit
from connector.store.db import Database
from connector.store.migrate import current_revision, upgrade
from connector.store.models import Base, Cursor, InboxEvent

pytestmark = pytest.mark.postgresql(
    reason="the store on both back-ends: migrations, UTC round trips, unique keys"
)


def test_migrations_reach_head_and_match_the_models(db: Database) -> None:
    assert current_revision(db.url) is not None
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrading_twice_is_harmless(db: Database) -> None:
    before = current_revision(db.url)
    upgrade(db.url)
    assert current_revision(db.url) == before


def test_datetimes_come_back_as_the_same_utc_instant(db: Database) -> None:
    at = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as session:
        session.add(Cursor(name="deals", value="x", updated_at=at))
    with db.session() as session:
        stored = session.get(Cursor, "deals")
        assert stored is not None
        assert stored.updated_at == at
        assert stored.updated_at.tzinfo == UTC


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), db.session() as session:
        session.add(Cursor(name="deals", value="x", updated_at=datetime(2026, 1, 1)))


def test_the_same_event_cannot_be_stored_twice(db: Database) -> None:
    with db.session() as session:
        session.add(
            InboxEvent(source="stripe", event_id="evt_1", event_type="invoice.paid", payload="{}")
        )
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(
            InboxEvent(source="stripe", event_id="evt_1", event_type="invoice.paid", payload="{}")
        )
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(InboxEvent)) == 1


def test_audit_entries_keep_their_details(db: Database) -> None:
    with db.session() as session:
        audit.record(
            session,
            actor="finance@example.com",
            action="credit.hold",
            subject_type="account",
            subject_id="001A",
            invoice="in_1",
            days_overdue=31,
        )
    with db.session() as session:
        entry = session.scalars(sa.select(audit.AuditEntry)).one()
        assert (entry.action, entry.details) == (
            "credit.hold",
            {"invoice": "in_1", "days_overdue": 31},
        )


def test_ping_reports_an_unreachable_store() -> None:
    unreachable = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    assert unreachable.ping() is False
