"""Things that may be used once: a launch link, a Canvas signed request, an Entra token.

A use is recorded under a digest of the credential (never the credential itself) until the
credential would have expired anyway; a second use before then is refused. The record is a
row of ``cursors`` named ``once:<sha256>`` whose value is the expiry (ISO 8601, UTC), so the
primary key makes two racing uses of one credential resolve to exactly one winner on SQLite
and PostgreSQL alike, without a table of its own. Expired records are swept on each use.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from connector.store.db import Database
from connector.store.models import Cursor

PREFIX = "once:"


def _name(kind: str, credential: str) -> str:
    digest = hashlib.sha256(f"{kind}\x00{credential}".encode("utf-8", "surrogatepass"))
    return PREFIX + digest.hexdigest()


def use_once(db: Database, kind: str, credential: str, *, now: datetime, expires: datetime) -> bool:
    """Record this use of ``credential``; False if it was already used (and is unexpired)."""
    stamp = now.isoformat(timespec="microseconds")
    with db.session() as session:
        session.execute(delete(Cursor).where(Cursor.name.startswith(PREFIX), Cursor.value < stamp))
    try:
        with db.session() as session:
            session.add(
                Cursor(
                    name=_name(kind, credential), value=expires.isoformat(timespec="microseconds")
                )
            )
    except IntegrityError:
        return False
    return True
