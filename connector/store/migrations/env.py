"""Alembic environment: uses dealbridge's engine factory so SQLite gets the same pragmas."""

from __future__ import annotations

from alembic import context

from connector.store.db import make_engine
from connector.store.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set by connector.store.migrate"

engine = make_engine(url)
try:
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
finally:
    engine.dispose()
