"""Shared fixtures: a migrated store on SQLite and PostgreSQL, a runtime, the Flask app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector import runtime as runtime_module
from connector.runtime import STRICT_GUARD_ENV, Runtime
from connector.store.db import Database
from connector.store.migrate import upgrade
from tests.support import FrozenClock, make_config

# Every test (and every process a test starts) refuses a Stripe or CRM call made while a
# store session is open: a network call must never hold SQLite's write lock.
os.environ[STRICT_GUARD_ENV] = "1"

POSTGRES_URL = os.environ.get(
    "DEALBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def no_network_call_in_a_transaction() -> Iterator[None]:
    """Fails the test if any Stripe or CRM call was made inside a store session, even one
    whose error a worker caught and turned into a retry."""
    runtime_module.violations.clear()
    yield
    found = list(runtime_module.violations)
    runtime_module.violations.clear()
    assert not found, f"network calls inside a store session: {sorted(set(found))}"


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
    from connector.web.app import create_app

    flask_app = create_app(runtime=runtime)
    flask_app.testing = True
    return flask_app


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()
