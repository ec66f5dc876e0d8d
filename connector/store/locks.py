"""Transaction-scoped locks on a name, for writers of a row that may not exist yet."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock(session: Session, key: str) -> None:
    """Serialise writers of one key (``invoice:<id>``, ``account:<id>``...) until the
    transaction ends.

    PostgreSQL: a transaction-scoped advisory lock, which also covers a row that does not
    exist yet (two first events of a new invoice). SQLite: every write transaction already
    holds the database's write lock from BEGIN IMMEDIATE.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
        )
