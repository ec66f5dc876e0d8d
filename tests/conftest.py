"""Shared fixtures: a migrated store (SQLite by default, PostgreSQL where marked), a runtime,
the Flask app.

Migrations run once per test session (per xdist worker): SQLite tests get a copy of a
migrated template file; PostgreSQL tests share one migrated schema per worker, truncated
before each test. A store test runs on SQLite only unless it is marked
``@pytest.mark.postgresql(reason=...)`` (locking or SQL dialect matters): then it runs on
both stores, with ids ``[sqlite]`` and ``[postgresql]``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import Pool

from connector import runtime as runtime_module
from connector.runtime import STRICT_GUARD_ENV, Runtime
from connector.store.db import Database
from connector.store.migrate import upgrade
from connector.store.models import Base
from connector.web.app import create_app
from tests.support import FrozenClock, make_config

# Every test (and every process a test starts) refuses a Stripe or CRM call made while a
# store session is open: a network call must never hold SQLite's write lock.
os.environ[STRICT_GUARD_ENV] = "1"

POSTGRES_URL = os.environ.get(
    "DEALBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STORES = ("sqlite", "postgresql")
E2E = Path(__file__).parent / "e2e"


@event.listens_for(Pool, "connect")
def _sqlite_without_fsync(dbapi_connection: Any, _record: Any) -> None:
    """Tests never need a store that survives a power cut: SQLite skips its fsyncs."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=OFF")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A store test runs on SQLite; marked ``postgresql`` it runs on PostgreSQL as well."""
    if "database_url" not in metafunc.fixturenames or E2E in metafunc.definition.path.parents:
        return
    marker = metafunc.definition.get_closest_marker("postgresql")
    if marker is None:
        return
    assert marker.kwargs.get("reason"), "@pytest.mark.postgresql needs reason=... (why)"
    metafunc.parametrize("database_url", STORES, indirect=True, ids=STORES)


#: Folders (and files) slowest first: with ``--dist worksteal`` the long tests start at once
#: on every worker and the quick ones fill the gaps, so no worker ends on a long test alone.
SLOW_FIRST = ("browser", "e2e", "scenarios", "test_processes.py", "sandboxes", "crm")


def _slowness(item: pytest.Item) -> int:
    parts = item.path.parts
    for rank, name in enumerate(SLOW_FIRST):
        if name in parts:
            return rank
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_slowness)  # stable: the order within a folder stays as written


# -- SQLite: one migrated template per session, copied per test ------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; every test gets its own copy."""
    path = tmp_path_factory.mktemp("template") / "dealbridge.sqlite3"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # fold the WAL into the file before it is copied
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def migrated_sqlite_url(template: Path, folder: Path) -> str:
    """A migrated SQLite store of its own in ``folder``: a copy of the template."""
    path = folder / "dealbridge.sqlite3"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


# -- PostgreSQL: one migrated schema per session (xdist worker), truncated per test ---------


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
    """A private schema in the shared `test` database, migrated once, dropped at the end."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    schema = f"dealbridge_test_{worker}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    upgrade(_schema_url(schema))
    yield schema
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _schema_url(schema: str) -> str:
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def migrated_postgres_url(schema: str) -> str:
    """The worker's migrated schema, emptied: every row deleted and every sequence restarted,
    as a fresh schema would be (the Alembic revision stays). DELETE, not TRUNCATE: on tables
    this small it is several times faster. A lock left by an earlier test fails this at once
    instead of hanging."""
    engine = _admin_engine().execution_options(schema_translate_map={None: schema})
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        sequences = conn.execute(
            sa.text("SELECT sequencename FROM pg_sequences WHERE schemaname = :schema"),
            {"schema": schema},
        ).scalars()
        for sequence in sequences:
            conn.execute(sa.text(f'ALTER SEQUENCE "{schema}"."{sequence}" RESTART'))
    return _schema_url(schema)


_ADMIN: list[sa.Engine] = []


def _admin_engine() -> sa.Engine:
    """One engine per session for emptying the schema between tests."""
    if not _ADMIN:
        _ADMIN.append(sa.create_engine(POSTGRES_URL))
    return _ADMIN[0]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store: SQLite unless the test is marked ``postgresql``."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return migrated_sqlite_url(request.getfixturevalue("sqlite_template"), tmp_path)
    return migrated_postgres_url(request.getfixturevalue("postgres_schema"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    database = Database(migrated_sqlite_url(sqlite_template, tmp_path))
    yield database
    database.dispose()


@pytest.fixture
def postgres_db(postgres_schema: str) -> Iterator[Database]:
    """A migrated PostgreSQL store, for behaviour only PostgreSQL has (SKIP LOCKED)."""
    database = Database(migrated_postgres_url(postgres_schema))
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
    """A runtime on the ``db`` fixture: SQLite, and PostgreSQL too when the test is marked."""
    return Runtime(make_config(db.url), db=db, clock=clock)


@pytest.fixture
def store_client(store_runtime: Runtime) -> Any:
    app = create_app(runtime=store_runtime)
    app.testing = True
    return app.test_client()
