"""Stripe's Unix timestamps to dealbridge's dates and back, one named function per way."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from connector.domain.timestamps import (
    date_from_unix,
    datetime_from_unix,
    unix_at_midnight,
    unix_of,
)


@pytest.mark.parametrize(
    ("day", "unix"),
    [
        (date(1970, 1, 1), 0),
        (date(2026, 11, 1), 1_793_491_200),
        (date(2028, 2, 29), 1_835_395_200),
    ],
)
def test_a_billing_date_starts_at_midnight_utc(day: date, unix: int) -> None:
    assert unix_at_midnight(day) == unix


def test_a_moment_in_another_zone_is_the_same_unix_second() -> None:
    berlin = timezone(timedelta(hours=1))
    assert unix_of(datetime(2026, 11, 1, 1, 0, 30, tzinfo=berlin)) == 1_793_491_230


@pytest.mark.parametrize("missing", [None, 0, ""])
def test_a_timestamp_stripe_left_empty_is_none(missing: object) -> None:
    assert datetime_from_unix(missing) is None
    assert date_from_unix(missing) is None


def test_a_stripe_timestamp_is_an_aware_utc_moment_and_its_utc_date() -> None:
    assert datetime_from_unix(1_793_577_599) == datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)
    assert date_from_unix("1793577599") == date(2026, 11, 1)
