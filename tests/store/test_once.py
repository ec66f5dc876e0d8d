"""Single-use credentials: the first use wins, a second is refused until the record expires."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector.store.db import Database
from connector.store.once import use_once
from tests.support import FrozenClock

pytestmark = pytest.mark.postgresql(
    reason="the first use wins by a unique key: the dialect's integrity error"
)


def test_a_credential_is_used_once_until_it_expires(db: Database, clock: FrozenClock) -> None:
    now = clock()
    expires = now + timedelta(minutes=10)
    assert use_once(db, "launch", "sig-1", now=now, expires=expires)
    assert not use_once(db, "launch", "sig-1", now=now + timedelta(minutes=5), expires=expires)
    assert use_once(db, "canvas", "sig-1", now=now, expires=expires)  # kinds are apart
    later = now + timedelta(minutes=11)
    assert use_once(db, "launch", "sig-1", now=later, expires=later + timedelta(minutes=10))
