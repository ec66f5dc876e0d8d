"""PostgreSQL connections that the server dropped: pinged and replaced when they sat idle in
the pool, failed once and replaced when they died within a second of their last use, and a
webhook's insert survives either (``store/db.py``'s ping after idle)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from connector.runtime import Runtime
from connector.services.inbox import store_event
from connector.store import db as db_module
from connector.store.db import Database
from connector.store.models import InboxEvent
from tests.conftest import POSTGRES_URL, migrated_postgres_url
from tests.support import make_config


@pytest.fixture
def pg(postgres_schema: str) -> Iterator[Database]:
    database = Database(migrated_postgres_url(postgres_schema))
    yield database
    database.dispose()


def _pooled_backend(database: Database) -> int:
    """Use one connection and return it to the pool; its server process id."""
    with database.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def _kill(backend: int) -> None:
    """What a restart or failover does to a pooled connection: its server process ends."""
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.connect() as conn:
            assert conn.execute(
                sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": backend}
            ).scalar_one()
    finally:
        admin.dispose()


def test_a_connection_that_died_while_idle_in_the_pool_is_replaced_unseen(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _pooled_backend(pg)
    _kill(dead)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle long enough

    assert _pooled_backend(pg) != dead


def test_a_connection_returned_moments_ago_is_used_without_a_ping(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No round trip before a webhook's one INSERT: a connection that died within the second
    after its last use fails its next statement, and the pool then replaces it."""
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    dead = _pooled_backend(pg)
    _kill(dead)

    with pytest.raises(DBAPIError) as failed:
        _pooled_backend(pg)

    assert failed.value.connection_invalidated
    assert _pooled_backend(pg) != dead


def test_a_webhook_stored_on_a_connection_dropped_since_its_last_use_is_stored_once(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    runtime = Runtime(make_config(pg.url), db=pg)
    _kill(_pooled_backend(pg))

    outcome = store_event(runtime, "stripe", "evt_after_failover", "invoice.paid", json.dumps({}))

    assert outcome == "stored"
    with pg.session() as session:
        assert session.scalars(sa.select(InboxEvent.event_id)).all() == ["evt_after_failover"]
