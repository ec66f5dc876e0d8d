"""Billing-period arithmetic (anchor-preserving month ends) and money formatting."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

DAY = 86_400

_FIXED = {"day": timedelta(days=1), "week": timedelta(weeks=1)}
_ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$", "jpy": "¥"}


def add_interval(anchor: int, interval: str, count: int) -> int:
    """``anchor`` + ``count`` intervals; month/year keep the anchor's day, clamped to month end."""
    start = datetime.fromtimestamp(anchor, UTC)
    if interval in _FIXED:
        return int((start + _FIXED[interval] * count).timestamp())
    months = count * (12 if interval == "year" else 1)
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())


def period_boundary(anchor: int, interval: str, count: int, n: int) -> int:
    """The n-th period boundary after ``anchor`` (computed from the anchor, never chained)."""
    return add_interval(anchor, interval, count * n)


def next_boundary_after(anchor: int, interval: str, count: int, moment: int) -> int:
    """The first period boundary of a cycle anchored at ``anchor`` strictly after ``moment``."""
    n = 1
    while True:
        boundary = period_boundary(anchor, interval, count, n)
        if boundary > moment:
            return boundary
        n += 1


def prorate(amount: int, part: int, whole: int) -> int:
    """Integer proration, rounded half up, in minor units."""
    if whole <= 0 or part >= whole:
        return amount
    return (amount * part * 2 + whole) // (whole * 2)


def format_money(amount: int, currency: str) -> str:
    currency = currency.lower()
    symbol = _SYMBOLS.get(currency, currency.upper() + " ")
    if currency in _ZERO_DECIMAL:
        return f"{symbol}{amount:,}"
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 100)
    return f"{sign}{symbol}{major:,}.{minor:02d}"


def interval_text(interval: str, count: int) -> str:
    return interval if count == 1 else f"{count} {interval}s"
