"""Runtimes and web clients on the parametrised store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.runtime import Runtime
from connector.store.db import Database
from connector.store.migrate import upgrade
from connector.web.app import create_app
from tests.support import FrozenClock, make_config


@pytest.fixture
def store_runtime(db: Database, clock: FrozenClock) -> Runtime:
    """A runtime on the ``db`` fixture, so the test runs on SQLite and on PostgreSQL."""
    return Runtime(make_config(db.url), db=db, clock=clock)


@pytest.fixture
def store_client(store_runtime: Runtime) -> Any:
    app = create_app(runtime=store_runtime)
    app.testing = True
    return app.test_client()


@pytest.fixture
def postgres_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A migrated PostgreSQL store, for behaviour only PostgreSQL has (SKIP LOCKED)."""
    from tests.conftest import _fresh_postgres_url

    url = _fresh_postgres_url(request.getfixturevalue("postgres_schema"))
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()
