"""Dates in seed files, relative to the sandbox's clock (shared by the Salesforce and
Dataverse sandboxes)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from sandboxes._seed import SeedError, relative

NOW = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today", date(2026, 1, 31)),
        ("today+14d", date(2026, 2, 14)),
        ("today-1w", date(2026, 1, 24)),
        ("today+1m", date(2026, 2, 28)),  # the month's last day, not March 3rd
        ("today+1y", date(2027, 1, 31)),
        ("now-2h", datetime(2026, 1, 31, 7, 30, tzinfo=UTC)),
        ("now+1m", datetime(2026, 2, 28, 9, 30, tzinfo=UTC)),
        ("2026-01-01", None),
    ],
)
def test_relative_dates_follow_the_clock(text: str, expected: date | datetime | None) -> None:
    assert relative(text, NOW) == expected


def test_hours_from_today_are_refused_rather_than_dropped() -> None:
    with pytest.raises(SeedError, match="hours only apply to 'now'"):
        relative("today+2h", NOW)
