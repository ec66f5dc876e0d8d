"""Shared fixtures: a migrated store on SQLite and PostgreSQL, a runtime, the Flask app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.runtime import Runtime
from connector.store.db import Database
from connector.store.migrate import upgrade
from connector.web.app import create_app
from tests.support import FrozenClock, make_config

POSTGRES_URL = os.environ.get(
    "DEALBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A private schema in the shared `test` database, dropped at the end of the run."""
    schema = f"dealbridge_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _fresh_postgres_url(base_schema: str) -> str:
    schema = f"{base_schema}_{uuid.uuid4().hex[:6]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs once on SQLite and once on PostgreSQL, on an empty schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dealbridge.sqlite3'}"
    return _fresh_postgres_url(request.getfixturevalue("postgres_schema"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'dealbridge.sqlite3'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def runtime(sqlite_db: Database, clock: FrozenClock) -> Iterator[Runtime]:
    rt = Runtime(make_config(sqlite_db.url), db=sqlite_db, clock=clock)
    yield rt


@pytest.fixture
def app(runtime: Runtime) -> Any:
    flask_app = create_app(runtime=runtime)
    flask_app.testing = True
    return flask_app


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


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
    url = _fresh_postgres_url(request.getfixturevalue("postgres_schema"))
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()
