"""Stripe's Unix timestamps and dealbridge's dates and datetimes, converted one way each.

Stripe sends and takes moments as Unix timestamps (whole seconds, UTC); dealbridge keeps
aware UTC datetimes and ``datetime.date`` billing dates. Each direction has one function with
a name that says which way it goes, so a reader never has to guess what a ``_ts`` returns.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any


def unix_at_midnight(day: date) -> int:
    """The Unix timestamp of midnight UTC starting ``day``: billing dates start at 00:00 UTC."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def unix_of(moment: datetime) -> int:
    """An aware datetime as a Unix timestamp (whole seconds)."""
    return int(moment.astimezone(UTC).timestamp())


def datetime_from_unix(value: Any) -> datetime | None:
    """A Stripe timestamp field as an aware UTC datetime; None when Stripe sent none (or 0)."""
    return datetime.fromtimestamp(int(value), UTC) if value else None


def date_from_unix(value: Any) -> date | None:
    """A Stripe timestamp field as its UTC calendar date; None when Stripe sent none."""
    moment = datetime_from_unix(value)
    return moment.date() if moment else None
