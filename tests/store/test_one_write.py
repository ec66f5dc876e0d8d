"""``Database.one_write``: one statement, atomic by itself. On PostgreSQL it runs in
autocommit (no BEGIN/COMMIT round trips), and the pooled connection goes back to the pool
transactional, so the next session can still roll back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from connector.services.inbox import _INSERT_ONCE_RETURNING, event_values
from connector.store.db import Database
from connector.store.models import InboxEvent
from tests.conftest import migrated_postgres_url

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def pg(postgres_schema: str) -> Iterator[Database]:
    database = Database(migrated_postgres_url(postgres_schema), pool_size=1, max_overflow=0)
    yield database
    database.dispose()


def _store(database: Database, event_id: str) -> bool:
    values = event_values("stripe", event_id, "invoice.paid", "{}", NOW)
    with database.one_write() as connection:
        autocommit = connection.connection.dbapi_connection.autocommit  # type: ignore[union-attr]
        connection.execute(_INSERT_ONCE_RETURNING["postgresql"], values).first()
    return bool(autocommit)


def _event_ids(database: Database) -> list[str]:
    with database.reading() as session:
        return list(session.scalars(sa.select(InboxEvent.event_id).order_by(InboxEvent.id)))


def test_on_postgresql_the_one_statement_runs_in_autocommit(pg: Database) -> None:
    assert _store(pg, "evt_autocommit") is True
    assert _event_ids(pg) == ["evt_autocommit"]


def test_the_pooled_connection_comes_back_transactional(pg: Database) -> None:
    _store(pg, "evt_first")

    with pytest.raises(RuntimeError), pg.session() as session:  # the same, only connection
        session.add(
            InboxEvent(**event_values("stripe", "evt_rolled_back", "invoice.paid", "{}", NOW))
        )
        session.flush()
        raise RuntimeError("the unit of work fails after its write")

    assert _event_ids(pg) == ["evt_first"]
