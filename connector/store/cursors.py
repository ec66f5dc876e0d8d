"""Named cursors: where a poll, a reconciliation, a refresh or an import left off."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from connector.store.models import Cursor


def read_cursor(session: Session, name: str) -> str | None:
    row = session.get(Cursor, name)
    return row.value if row is not None else None


def cursor_moved_at(session: Session, name: str) -> datetime | None:
    """When the cursor was last moved; None if it was never set."""
    row = session.get(Cursor, name)
    return row.updated_at if row is not None else None


def save_cursor(session: Session, name: str, value: str, now: datetime | None = None) -> None:
    """Move the cursor in the caller's transaction (``now`` dates it; default: the wall
    clock), so it moves if and only if the work it marks commits."""
    row = session.get(Cursor, name)
    if row is None:
        row = Cursor(name=name, value=value)
        session.add(row)
    row.value = value
    if now is not None:
        row.updated_at = now


def forget_cursor(session: Session, name: str) -> None:
    row = session.get(Cursor, name)
    if row is not None:
        session.delete(row)
